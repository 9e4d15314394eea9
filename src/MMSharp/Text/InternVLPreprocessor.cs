namespace MMSharp.Text;

/// <summary>One turn of a training record (<c>{"from": "human"|"gpt"|"system", "value": ...}</c>).</summary>
public sealed record ConversationTurn(string From, string Value);

/// <summary>Token ids and labels of one training sample; labels are -100 where no loss is taken.</summary>
public sealed record SupervisedSample(int[] InputIds, int[] Labels)
{
    /// <summary><c>IGNORE_TOKEN_ID</c> (<c>LabelSmoother.ignore_index</c>).</summary>
    public const int IgnoreIndex = -100;

    /// <summary><c>input_ids != pad_token_id</c>.</summary>
    public bool[] AttentionMask(int padTokenId) => InputIds.Select(id => id != padTokenId).ToArray();
}

/// <summary>
/// <c>preprocess_internvl2_5</c> (InternVL2.5/3 fine-tuning, template <c>internvl2_5</c>): builds one segment per turn,
/// tokenizes each segment separately, and keeps the loss only on assistant replies plus their <c>&lt;|im_end|&gt;</c>.
/// </summary>
/// <remarks>
/// Segments: <c>&lt;|im_start|&gt;system\n{system}&lt;|im_end|&gt;\n</c>, <c>&lt;|im_start|&gt;user\n{value}&lt;|im_end|&gt;\n</c>,
/// <c>&lt;|im_start|&gt;assistant\n{value}&lt;|im_end|&gt;\n</c>. System and user segments are fully masked; in an
/// assistant segment the first <c>len(tok("&lt;|im_start|&gt;assistant\n"))</c> ids and the last id (the trailing
/// <c>\n</c>) are masked. The k-th <c>&lt;image&gt;</c> of the human turns becomes
/// <c>&lt;img&gt;</c> + <c>&lt;IMG_CONTEXT&gt;</c> x numImageTokenList[k] + <c>&lt;/img&gt;</c>.
/// Qwen2 tokenizers add no BOS, so the InternLM2 BOS handling of the reference is not needed here.
/// </remarks>
public static class InternVLPreprocessor
{
    /// <param name="conversations">Turns; a leading "system" turn replaces the template's system message.</param>
    /// <param name="tokenizer">The checkpoint's tokenizer.</param>
    /// <param name="numImageTokenList">Context tokens per image (256 x tiles).</param>
    /// <param name="numImage">Number of images in the sample (<c>num_image</c>); must equal the placeholders consumed.</param>
    /// <param name="textOnly">Pure-text sample: placeholders are not expanded.</param>
    /// <param name="modelMaxLength">Truncation length (<c>tokenizer.model_max_length</c>); null = no truncation.</param>
    /// <param name="padToMaxLength">Right-pad to <paramref name="modelMaxLength"/> with the pad id / -100 (the reference
    /// pads unless group_by_length or packed training).</param>
    /// <param name="template">Supplies the default system message.</param>
    public static SupervisedSample Preprocess(IReadOnlyList<ConversationTurn> conversations, Qwen2Tokenizer tokenizer,
        IReadOnlyList<int> numImageTokenList, int numImage = 1, bool textOnly = false, int? modelMaxLength = null,
        bool padToMaxLength = false, ChatTemplate? template = null)
    {
        template ??= ChatTemplate.InternVL2_5;
        var turns = conversations.ToList();
        string systemPrompt;
        if (turns.Count > 0 && turns[0].From == "system") { systemPrompt = turns[0].Value; turns.RemoveAt(0); }
        else systemPrompt = template.SystemMessage;

        if (!textOnly)
        {
            int imageIndex = 0;
            for (int t = 0; t < turns.Count; t++)
            {
                if (turns[t].From != "human") continue;
                string value = turns[t].Value;
                int count = CountOccurrences(value, InternVLPrompt.ImagePlaceholder);
                for (int i = 0; i < count && imageIndex != numImage; i++)
                {
                    if (imageIndex >= numImageTokenList.Count)
                        throw new ArgumentException(
                            $"preprocess_internvl2_5: image {imageIndex} has no entry in num_image_token_list (length {numImageTokenList.Count}).");
                    int at = value.IndexOf(InternVLPrompt.ImagePlaceholder, StringComparison.Ordinal);
                    value = string.Concat(value.AsSpan(0, at), InternVLPrompt.ImageTokens(numImageTokenList[imageIndex]),
                                          value.AsSpan(at + InternVLPrompt.ImagePlaceholder.Length));
                    imageIndex++;
                }
                turns[t] = turns[t] with { Value = value };
            }
            if (imageIndex != numImage)
                throw new ArgumentException($"preprocess_internvl2_5: {imageIndex} <image> placeholders expanded, but num_image = {numImage}.");
        }

        int ignoreLen = tokenizer.Encode("<|im_start|>assistant\n").Length;
        var inputIds = new List<int>();
        var labels = new List<int>();
        void Add(string segment, bool supervised)
        {
            int[] ids = tokenizer.Encode(segment);
            inputIds.AddRange(ids);
            for (int k = 0; k < ids.Length; k++)
                labels.Add(supervised && k >= ignoreLen && k < ids.Length - 1 ? ids[k] : SupervisedSample.IgnoreIndex);
        }
        Add($"<|im_start|>system\n{systemPrompt}<|im_end|>\n", false);
        foreach (var turn in turns)
        {
            switch (turn.From)
            {
                case "human": Add($"<|im_start|>user\n{turn.Value}<|im_end|>\n", false); break;
                case "gpt": Add($"<|im_start|>assistant\n{turn.Value}<|im_end|>\n", true); break;
                default: throw new NotSupportedException($"preprocess_internvl2_5: unknown turn role '{turn.From}'.");
            }
        }

        if (modelMaxLength is int max)
        {
            if (inputIds.Count > max) { inputIds.RemoveRange(max, inputIds.Count - max); labels.RemoveRange(max, labels.Count - max); }
            if (padToMaxLength)
            {
                int pad = tokenizer.PadTokenId ?? throw new InvalidOperationException("Padding requested but the tokenizer has no pad token.");
                while (inputIds.Count < max) { inputIds.Add(pad); labels.Add(SupervisedSample.IgnoreIndex); }
            }
        }
        return new SupervisedSample(inputIds.ToArray(), labels.ToArray());
    }

    private static int CountOccurrences(string s, string what)
    {
        int count = 0;
        for (int at = s.IndexOf(what, StringComparison.Ordinal); at >= 0; at = s.IndexOf(what, at + what.Length, StringComparison.Ordinal)) count++;
        return count;
    }
}
