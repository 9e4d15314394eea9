namespace MMSharp.Generation;

/// <summary>
/// One generated answer: the new ids (including the stop token when one ended the answer), the reply text
/// (<c>batch_decode(skip_special_tokens=True)</c> then <c>split('&lt;|im_end|&gt;')[0].strip()</c>) and timings.
/// <see cref="ReusedPromptTokens"/> of the prompt's tokens came from a <see cref="PromptCache"/> instead of the prefill.
/// </summary>
public sealed record GenerationResult(int[] Tokens, string Text, int PromptTokens, bool Stopped,
    double PrefillSeconds, double DecodeSeconds, int ReusedPromptTokens = 0);
