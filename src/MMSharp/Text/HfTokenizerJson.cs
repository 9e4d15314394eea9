using System.Text.Json;

namespace MMSharp.Text;

/// <summary>
/// Streaming reader for HF tokenizer files. The vocabulary and merge list (150k entries each for Qwen2) are read with
/// <see cref="Utf8JsonReader"/> straight into their tables; everything else becomes small <see cref="JsonElement"/>s.
/// Building a <see cref="JsonDocument"/> of the whole 7 MB file first roughly doubled the load time.
/// </summary>
internal static class HfTokenizerJson
{
    public sealed class FastFile
    {
        public Dictionary<string, int> Vocab { get; } = new(StringComparer.Ordinal);
        public List<(string, string)> Merges { get; } = new();
        public Dictionary<string, JsonElement> ModelFields { get; } = new(StringComparer.Ordinal);
        public Dictionary<string, JsonElement> TopLevel { get; } = new(StringComparer.Ordinal);
    }

    /// <summary>Reads <c>tokenizer.json</c>: model.vocab and model.merges streamed, other fields as elements.</summary>
    public static FastFile ReadFast(byte[] json, string source)
    {
        var file = new FastFile();
        var r = new Utf8JsonReader(json, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip });
        Expect(ref r, JsonTokenType.StartObject, source);
        while (r.Read() && r.TokenType == JsonTokenType.PropertyName)
        {
            string name = r.GetString()!;
            r.Read();
            if (name == "model" && r.TokenType == JsonTokenType.StartObject)
            {
                while (r.Read() && r.TokenType == JsonTokenType.PropertyName)
                {
                    string field = r.GetString()!;
                    r.Read();
                    if (field == "vocab") ReadVocab(ref r, file.Vocab, source);
                    else if (field == "merges") ReadMerges(ref r, file.Merges, source);
                    else file.ModelFields[field] = JsonElement.ParseValue(ref r);
                }
            }
            else file.TopLevel[name] = JsonElement.ParseValue(ref r);
        }
        return file;
    }

    /// <summary>Reads a <c>{"token": id, ...}</c> object (vocab.json, or model.vocab positioned at its start).</summary>
    public static Dictionary<string, int> ReadVocabFile(byte[] json, string source)
    {
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        var r = new Utf8JsonReader(json);
        r.Read();
        ReadVocab(ref r, vocab, source);
        return vocab;
    }

    private static void ReadVocab(ref Utf8JsonReader r, Dictionary<string, int> vocab, string source)
    {
        if (r.TokenType != JsonTokenType.StartObject) throw new InvalidDataException($"{source}: vocab is not a JSON object.");
        vocab.EnsureCapacity(160_000);
        while (r.Read() && r.TokenType == JsonTokenType.PropertyName)
        {
            string token = r.GetString()!;
            r.Read();
            vocab[token] = r.GetInt32();
        }
    }

    /// <summary>Merges as <c>"a b"</c> strings (older files) or <c>["a", "b"]</c> pairs (newer files).</summary>
    private static void ReadMerges(ref Utf8JsonReader r, List<(string, string)> merges, string source)
    {
        if (r.TokenType != JsonTokenType.StartArray) throw new InvalidDataException($"{source}: merges is not a JSON array.");
        merges.EnsureCapacity(160_000);
        while (r.Read() && r.TokenType != JsonTokenType.EndArray)
        {
            if (r.TokenType == JsonTokenType.String) { merges.Add(SplitMerge(r.GetString()!, source)); continue; }
            if (r.TokenType != JsonTokenType.StartArray) throw new InvalidDataException($"{source}: merge #{merges.Count} is neither \"a b\" nor [a, b].");
            r.Read(); string a = r.GetString()!;
            r.Read(); string b = r.GetString()!;
            if (!r.Read() || r.TokenType != JsonTokenType.EndArray)
                throw new InvalidDataException($"{source}: merge #{merges.Count} has more than two parts.");
            merges.Add((a, b));
        }
    }

    /// <summary>Splits a <c>"a b"</c> merge line; byte-level tokens never contain a space.</summary>
    public static (string, string) SplitMerge(string line, string source)
    {
        int sp = line.IndexOf(' ');
        if (sp <= 0 || sp == line.Length - 1 || line.IndexOf(' ', sp + 1) >= 0)
            throw new InvalidDataException($"{source}: malformed merge '{line}' (expected two tokens separated by one space).");
        return (line[..sp], line[(sp + 1)..]);
    }

    private static void Expect(ref Utf8JsonReader r, JsonTokenType type, string source)
    {
        if (!r.Read() || r.TokenType != type) throw new InvalidDataException($"{source}: expected {type} at the start.");
    }
}
