using MMSharp.Generation;

namespace MMSharp.Cli;

/// <summary>
/// How the next token is picked, from the command line: temperature 0 is greedy (argmax); a positive temperature samples
/// with top-k (default 50, HF's) and top-p, seeded.
/// </summary>
internal sealed record Decoding(int MaxNewTokens, double Temperature, double TopP, int? TopK, ulong? Seed, double RepetitionPenalty = 1.0)
{
    public GenerationConfig ToGenerationConfig() => new GenerationConfig
    {
        MaxNewTokens = MaxNewTokens,
        DoSample = Temperature > 0,
        Temperature = Temperature,
        TopK = TopK ?? 50,
        TopP = TopP,
        RepetitionPenalty = RepetitionPenalty,
    }.Validate();

    public ITokenChooser CreateChooser(int vocabSize) => SamplerChooser.For(ToGenerationConfig(), vocabSize, Seed ?? 0);
}
