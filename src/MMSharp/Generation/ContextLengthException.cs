namespace MMSharp.Generation;

/// <summary>The prompt does not fit the model's context (<c>max_position_embeddings</c> of the LLM config).</summary>
public sealed class ContextLengthException(int promptTokens, int contextLength)
    : Exception($"prompt of {promptTokens} tokens is longer than the model's context ({contextLength})")
{
    public int PromptTokens { get; } = promptTokens;
    public int ContextLength { get; } = contextLength;
}
