using System.Text;

namespace MMSharp.Text;

/// <summary>
/// Builds the text that InternVL's <c>chat()</c> / <c>batch_chat()</c> tokenize: conversation template, history,
/// and the expansion of each <c>&lt;image&gt;</c> placeholder into <c>&lt;img&gt;</c> + <c>&lt;IMG_CONTEXT&gt;</c> x
/// (num_image_token x tiles) + <c>&lt;/img&gt;</c>.
/// </summary>
public static class InternVLPrompt
{
    /// <summary>Placeholder the user writes where an image goes.</summary>
    public const string ImagePlaceholder = "<image>";
    /// <summary><c>IMG_START_TOKEN</c>.</summary>
    public const string ImageStartToken = "<img>";
    /// <summary><c>IMG_END_TOKEN</c>.</summary>
    public const string ImageEndToken = "</img>";
    /// <summary><c>IMG_CONTEXT_TOKEN</c>: one per visual embedding; its positions receive the ViT features.</summary>
    public const string ImageContextToken = "<IMG_CONTEXT>";

    /// <summary><c>'&lt;img&gt;' + '&lt;IMG_CONTEXT&gt;' * count + '&lt;/img&gt;'</c>.</summary>
    public static string ImageTokens(int contextTokenCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(contextTokenCount);
        var sb = new StringBuilder(ImageStartToken.Length + ImageEndToken.Length + contextTokenCount * ImageContextToken.Length);
        sb.Append(ImageStartToken);
        for (int i = 0; i < contextTokenCount; i++) sb.Append(ImageContextToken);
        return sb.Append(ImageEndToken).ToString();
    }

    /// <summary>
    /// Replaces the first <c>&lt;image&gt;</c> once per entry of <paramref name="numPatchesList"/>, left to right, with
    /// that image's tokens (<c>num_image_token * num_patches</c> context tokens). A missing placeholder is a no-op,
    /// as Python's <c>str.replace(old, new, 1)</c>.
    /// </summary>
    public static string ExpandImages(string query, IReadOnlyList<int> numPatchesList, int numImageToken)
    {
        foreach (int numPatches in numPatchesList)
        {
            int at = query.IndexOf(ImagePlaceholder, StringComparison.Ordinal);
            if (at < 0) continue;
            query = string.Concat(query.AsSpan(0, at), ImageTokens(numImageToken * numPatches),
                                  query.AsSpan(at + ImagePlaceholder.Length));
        }
        return query;
    }

    /// <summary>Multi-image question prefix of the model card: <c>"Image-1: &lt;image&gt;\nImage-2: &lt;image&gt;\n"</c>.</summary>
    public static string MultiImagePrefix(int imageCount) =>
        string.Concat(Enumerable.Range(1, imageCount).Select(i => $"Image-{i}: {ImagePlaceholder}\n"));

    /// <summary>Video question prefix of the InternVL3 model card: <c>"Frame1: &lt;image&gt;\nFrame2: &lt;image&gt;\n"</c>.</summary>
    public static string VideoPrefix(int frameCount) =>
        string.Concat(Enumerable.Range(1, frameCount).Select(i => $"Frame{i}: {ImagePlaceholder}\n"));

    /// <summary>
    /// The question as <c>chat()</c> stores it: <c>"&lt;image&gt;\n"</c> is prepended when images are given, there is
    /// no history (null, not empty) and the question has no placeholder.
    /// </summary>
    public static string PrepareQuestion(string question, bool hasImages, bool historyIsNull) =>
        historyIsNull && hasImages && !question.Contains(ImagePlaceholder, StringComparison.Ordinal)
            ? ImagePlaceholder + "\n" + question
            : question;

    /// <summary>
    /// The full prompt of <c>model.chat(tokenizer, pixel_values, question, generation_config, history,
    /// num_patches_list)</c>, ready to tokenize.
    /// </summary>
    /// <param name="template">Conversation template (InternVL3: <see cref="ChatTemplate.InternVL2_5"/>).</param>
    /// <param name="question">User question, possibly with <c>&lt;image&gt;</c> placeholders.</param>
    /// <param name="numPatchesList">Tiles per image (<c>num_patches_list</c>); null or empty = no images.
    /// For a single image of n tiles pass [n].</param>
    /// <param name="numImageToken">Visual tokens per tile (256 for 448px tiles with pixel shuffle 0.5).</param>
    /// <param name="history">Previous (question, answer) pairs, or null for a fresh chat (only then is
    /// <c>"&lt;image&gt;\n"</c> prepended automatically).</param>
    /// <param name="systemMessage">Overrides the template's system message (null = template default; see spec §5.6).</param>
    public static string BuildChatQuery(ChatTemplate template, string question, IReadOnlyList<int>? numPatchesList,
                                        int numImageToken, IReadOnlyList<(string Question, string Answer)>? history = null,
                                        string? systemMessage = null)
    {
        bool hasImages = numPatchesList is { Count: > 0 };
        question = PrepareQuestion(question, hasImages, history == null);
        var conv = new Conversation(template, systemMessage);
        if (history != null)
            foreach (var (q, a) in history) conv.AppendUser(q).AppendAssistant(a);
        conv.AppendUser(question).AppendAssistant(null);
        // The replacement runs over the whole prompt, history included (as in the reference code).
        return ExpandImages(conv.GetPrompt(), numPatchesList ?? [], numImageToken);
    }

    /// <summary>
    /// The prompts of <c>batch_chat()</c>: one image (of <c>numPatchesList[i]</c> tiles) per question, no history,
    /// <c>"&lt;image&gt;\n"</c> prepended when missing. Tokenize them with left padding using the pad id.
    /// </summary>
    public static string[] BuildBatchQueries(ChatTemplate template, IReadOnlyList<string> questions,
                                             IReadOnlyList<int> numPatchesList, int numImageToken, string? systemMessage = null)
    {
        if (questions.Count != numPatchesList.Count)
            throw new ArgumentException(
                $"batch_chat: {questions.Count} questions but {numPatchesList.Count} entries in num_patches_list.");
        var queries = new string[questions.Count];
        for (int i = 0; i < queries.Length; i++)
        {
            string q = PrepareQuestion(questions[i], hasImages: true, historyIsNull: true);
            var conv = new Conversation(template, systemMessage).AppendUser(q).AppendAssistant(null);
            queries[i] = ExpandImages(conv.GetPrompt(), [numPatchesList[i]], numImageToken);
        }
        return queries;
    }

    /// <summary>
    /// Stop ids for generation: the id of the template's <see cref="ChatTemplate.StopToken"/> (what <c>chat()</c> uses),
    /// plus any extra end ids (e.g. the LLM config's <c>eos_token_id</c>), without duplicates.
    /// </summary>
    public static int[] StopTokenIds(Qwen2Tokenizer tokenizer, ChatTemplate template, params int[] extraEosIds) =>
        new[] { tokenizer.RequireTokenId(template.StopToken) }.Concat(extraEosIds).Distinct().ToArray();

    /// <summary><c>response.split(sep.strip())[0].strip()</c>: the reply text of a decoded generation.</summary>
    public static string ExtractResponse(string decoded, ChatTemplate template)
    {
        int at = decoded.IndexOf(template.StopToken, StringComparison.Ordinal);
        return (at >= 0 ? decoded[..at] : decoded).Trim();
    }
}
