using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using MMSharp.Text;

namespace MMSharp.Data;

/// <summary>
/// Writes a small byte-level BPE tokenizer in the Qwen2 slow-file layout (<c>vocab.json</c>, <c>merges.txt</c>,
/// <c>added_tokens.json</c>, <c>tokenizer_config.json</c>, <c>special_tokens_map.json</c>) that
/// <see cref="Qwen2Tokenizer.FromDirectory"/> loads: the 256 byte symbols, then every Qwen2 pre-token of the given corpus as
/// one whole token (merges built left to right and repaired until each piece encodes to a single id), then the InternVL
/// special tokens. Any text still encodes (byte fallback through the 256 byte symbols); corpus text encodes short.
/// </summary>
public static class TinyTokenizer
{
    /// <summary>The added tokens in id order (Qwen2.5 / InternVL3 order).</summary>
    public static readonly string[] SpecialTokens =
    [
        "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>",
        "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>",
    ];

    /// <summary>Text of the chat template that every sample contains (roles, default system message).</summary>
    public static IEnumerable<string> TemplateTexts() =>
        ["system\n", "user\n", "assistant\n", ChatTemplate.InternVLSystemMessage, "\n", "<image>\n"];

    /// <summary>Writes the tokenizer for <paramref name="corpus"/> (plus <see cref="TemplateTexts"/>) into <paramref name="directory"/>.</summary>
    /// <returns>Vocabulary size including the added tokens.</returns>
    public static int Write(string directory, IEnumerable<string> corpus, int modelMaxLength = 4096)
    {
        Directory.CreateDirectory(directory);
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        var order = new List<string>();
        void AddToken(string t) { if (vocab.TryAdd(t, order.Count)) order.Add(t); }
        for (int b = 0; b < 256; b++) AddToken(ByteLevel.ByteToChar[b].ToString());

        // Qwen2 pre-tokens of the corpus, special tokens cut out first (they never reach BPE).
        var pieces = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (string text in TemplateTexts().Concat(corpus))
            foreach (string part in SplitSpecial(text.Normalize(NormalizationForm.FormC)))
                foreach (string piece in Qwen2PreTokenizer.SplitToStrings(part))
                    if (seen.Add(piece)) pieces.Add(piece);

        var merges = new List<(string, string)>();
        var mergeSet = new HashSet<(string, string)>();
        void AddMergeChain(IReadOnlyList<string> parts)
        {
            string acc = parts[0];
            for (int i = 1; i < parts.Count; i++)
            {
                if (mergeSet.Add((acc, parts[i]))) merges.Add((acc, parts[i]));
                acc += parts[i];
                AddToken(acc);
            }
        }
        foreach (string piece in pieces)
        {
            string bl = ByteLevel.Encode(Encoding.UTF8.GetBytes(piece));
            if (bl.Length > 1) AddMergeChain(bl.Select(c => c.ToString()).ToList());
        }
        // A later merge can pre-empt an earlier chain inside another piece; join whatever pieces BPE leaves, until stable.
        for (int round = 0; round < 20; round++)
        {
            var bpe = new BpeModel(new Dictionary<string, int>(vocab), merges);
            bool changed = false;
            foreach (string piece in pieces)
            {
                var ids = new List<int>();
                bpe.EncodeWord(piece, ids);
                if (ids.Count <= 1) continue;
                AddMergeChain(ids.Select(id => order[id]).ToList());
                changed = true;
            }
            if (!changed) break;
        }

        var options = new JsonSerializerOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping, WriteIndented = false };
        File.WriteAllText(Path.Combine(directory, "vocab.json"), JsonSerializer.Serialize(vocab, options), new UTF8Encoding(false));
        File.WriteAllText(Path.Combine(directory, "merges.txt"),
            "#version: 0.2\n" + string.Concat(merges.Select(m => m.Item1 + " " + m.Item2 + "\n")), new UTF8Encoding(false));
        var added = new Dictionary<string, int>();
        var decoder = new Dictionary<string, object>();
        for (int i = 0; i < SpecialTokens.Length; i++)
        {
            int id = order.Count + i;
            added[SpecialTokens[i]] = id;
            decoder[id.ToString(System.Globalization.CultureInfo.InvariantCulture)] = new Dictionary<string, object>
            {
                ["content"] = SpecialTokens[i], ["lstrip"] = false, ["normalized"] = false, ["rstrip"] = false,
                ["single_word"] = false, ["special"] = true,
            };
        }
        File.WriteAllText(Path.Combine(directory, "added_tokens.json"), JsonSerializer.Serialize(added, options), new UTF8Encoding(false));
        var config = new Dictionary<string, object>
        {
            ["added_tokens_decoder"] = decoder,
            ["additional_special_tokens"] = SpecialTokens.Skip(1).ToArray(),
            ["bos_token"] = null!, ["eos_token"] = "<|im_end|>", ["pad_token"] = "<|endoftext|>",
            ["clean_up_tokenization_spaces"] = false, ["errors"] = "replace", ["model_max_length"] = modelMaxLength,
            ["split_special_tokens"] = false, ["tokenizer_class"] = "Qwen2Tokenizer", ["unk_token"] = null!,
        };
        File.WriteAllText(Path.Combine(directory, "tokenizer_config.json"),
            JsonSerializer.Serialize(config, new JsonSerializerOptions(options) { WriteIndented = true }), new UTF8Encoding(false));
        var map = new Dictionary<string, object>
        {
            ["additional_special_tokens"] = SpecialTokens.Skip(1).ToArray(), ["eos_token"] = "<|im_end|>", ["pad_token"] = "<|endoftext|>",
        };
        File.WriteAllText(Path.Combine(directory, "special_tokens_map.json"), JsonSerializer.Serialize(map, options), new UTF8Encoding(false));
        return order.Count + SpecialTokens.Length;
    }

    private static IEnumerable<string> SplitSpecial(string text)
    {
        int start = 0;
        while (start < text.Length)
        {
            int best = -1, bestLen = 0;
            foreach (string s in SpecialTokens)
            {
                int at = text.IndexOf(s, start, StringComparison.Ordinal);
                if (at >= 0 && (best < 0 || at < best)) { best = at; bestLen = s.Length; }
            }
            if (best < 0) { yield return text[start..]; yield break; }
            if (best > start) yield return text[start..best];
            start = best + bestLen;
        }
    }
}
