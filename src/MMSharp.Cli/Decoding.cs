using MMSharp.Generation;

namespace MMSharp.Cli;

/// <summary>How the next token is picked: temperature 0 is greedy (argmax); otherwise sampling with top-k / top-p.</summary>
internal sealed record Decoding(int MaxNewTokens, double Temperature, double TopP, int TopK, ulong? Seed, double RepetitionPenalty = 1.0)
{
    public ITokenChooser CreateChooser()
    {
        if (MaxNewTokens < 0) throw new CliException($"--max-new-tokens must be >= 0, got {MaxNewTokens}");
        if (Temperature < 0) throw new CliException($"--temperature must be >= 0, got {Temperature}");
        if (TopP <= 0 || TopP > 1) throw new CliException($"--top-p must be in (0, 1], got {TopP}");
        if (TopK < 0) throw new CliException($"--top-k must be >= 0, got {TopK}");
        if (Temperature == 0 && RepetitionPenalty == 1.0) return GreedyChooser.Instance;
        throw new CliException("sampling (--temperature > 0 or a repetition penalty) is not available in this build; use --temperature 0");
    }
}
