using System.Globalization;
using MMSharp.Engine;
using MMSharp.Engine.Kernels;
using MMSharp.Generation;

namespace MMSharp.Cli;

/// <summary>
/// The timing lines that <c>chat --stats</c> and infer's <c>"stats": true</c> print on stderr (stdout keeps only the
/// answers): how long the model took to load, then per answer the prompt's prefill (vision encoder included) and the
/// answer's decoding in tokens per second.
/// </summary>
internal static class StatsLine
{
    public static string Load(LoadedModel m)
    {
        long b = m.WeightBytes;
        string size = b >= 1e9 ? Invariant($"{b / 1e9:F2} GB") : Invariant($"{b / 1e6:F1} MB");
        return Invariant($"stats: loaded {m.Directory} in {m.LoadSeconds:F2} s ({size} of weights, {(m.Mapped ? "memory-mapped" : "copied into memory")}, {Par.Threads} threads)");
    }

    /// <summary>The first answer token comes from the prefill's logits; each further one is one decode step.</summary>
    public static string Answer(GenerationResult r)
    {
        int steps = r.Tokens.Length - 1;
        string decode = steps > 0 && r.DecodeSeconds > 0 ? Invariant($", {steps / r.DecodeSeconds:F1} tokens/s") : "";
        int prefilled = r.PromptTokens - r.ReusedPromptTokens;
        string reused = r.ReusedPromptTokens > 0 ? Invariant($", {r.ReusedPromptTokens} of them kept from the previous turn") : "";
        double prefillRate = prefilled / Math.Max(r.PrefillSeconds, 1e-9);
        return Invariant($"stats: prompt {r.PromptTokens} tokens{reused}; {prefilled} prefilled in {r.PrefillSeconds:F2} s ({prefillRate:F1} tokens/s, vision encoder included); answer {r.Tokens.Length} tokens in {r.DecodeSeconds:F2} s{decode}");
    }

    static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
