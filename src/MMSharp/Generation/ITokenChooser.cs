namespace MMSharp.Generation;

/// <summary>
/// Picks the next token from one row of logits. <see cref="Generator"/> calls it once per row and step with the
/// tokens generated so far for that row: InternVL's chat() calls generate() with inputs_embeds only, so that is what a
/// repetition penalty sees there (not the prompt).
/// </summary>
public interface ITokenChooser
{
    int Choose(ReadOnlySpan<float> logits, ReadOnlySpan<int> generated);
}

/// <summary>argmax of the logits (lowest id on ties, as torch.argmax; <see cref="Sampler.ArgMax"/>): HF's greedy search,
/// <c>do_sample=False</c>.</summary>
public sealed class GreedyChooser : ITokenChooser
{
    public static GreedyChooser Instance { get; } = new();

    public int Choose(ReadOnlySpan<float> logits, ReadOnlySpan<int> generated) => Sampler.ArgMax(logits);
}
