namespace MMSharp.Generation;

/// <summary>An <see cref="ITokenChooser"/> that asks a <see cref="Sampler"/> (HF's logits processors, seeded sampling).</summary>
public sealed class SamplerChooser(Sampler sampler) : ITokenChooser
{
    public Sampler Sampler { get; } = sampler;

    public int Choose(ReadOnlySpan<float> logits, ReadOnlySpan<int> generated) => Sampler.Next(logits, generated);

    /// <summary>The chooser for <paramref name="config"/>: plain argmax when greedy without a repetition penalty, a sampler
    /// seeded with <paramref name="seed"/> otherwise.</summary>
    public static ITokenChooser For(GenerationConfig config, int vocabSize, ulong seed = 0) =>
        config.IsGreedy && config.RepetitionPenalty == 1.0
            ? GreedyChooser.Instance
            : new SamplerChooser(new Sampler(vocabSize, config.Validate(), new Engine.Rng(seed)));
}
