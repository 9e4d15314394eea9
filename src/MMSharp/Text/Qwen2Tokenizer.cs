using System.Text;
using System.Text.Json;

namespace MMSharp.Text;

/// <summary>
/// Qwen2 / Qwen2.5 byte-level BPE tokenizer (the tokenizer of InternVL3's language model), loaded from the checkpoint's
/// own files: either HF's fast <c>tokenizer.json</c> or the slow set <c>vocab.json</c> + <c>merges.txt</c> +
/// <c>added_tokens.json</c> + <c>tokenizer_config.json</c> (+ <c>special_tokens_map.json</c>).
/// </summary>
/// <remarks>
/// Encode = split out added tokens (leftmost-longest) -> NFC -> <see cref="Qwen2PreTokenizer"/> -> BPE per piece.
/// No BOS/EOS is added (Qwen2 has no post-processor template). Decode = concatenate each token's bytes (added tokens:
/// their UTF-8 content) and decode UTF-8 with U+FFFD replacement (<c>errors="replace"</c>).
/// Encoding is thread-safe.
/// </remarks>
public sealed class Qwen2Tokenizer
{
    private readonly BpeModel _bpe;
    private readonly AddedTokenSplitter _splitter;
    private readonly Dictionary<string, int> _tokenToId;     // BPE vocabulary + added tokens
    private readonly string?[] _idToToken;
    private readonly byte[]?[] _idToBytes;
    private readonly bool[] _skipWhenDecoding;
    private readonly Dictionary<int, AddedToken> _addedById;

    /// <summary>Whether text is NFC-normalised before pre-tokenization (Qwen2: always).</summary>
    public bool NormalizeNfc { get; }

    /// <summary>Added tokens (special and not), by id.</summary>
    public IReadOnlyDictionary<int, AddedToken> AddedTokens => _addedById;

    /// <summary>End-of-sequence token id from the config files (<c>eos_token</c>; Qwen2.5 chat: <c>&lt;|im_end|&gt;</c>).</summary>
    public int? EosTokenId { get; }

    /// <summary>Padding token id from the config files (<c>pad_token</c>; Qwen2: <c>&lt;|endoftext|&gt;</c>).</summary>
    public int? PadTokenId { get; }

    /// <summary>BOS id if the config names one (Qwen2: none; never prepended by <see cref="Encode"/>).</summary>
    public int? BosTokenId { get; }

    /// <summary>Ids listed as special by the config files (eos, pad, bos, additional_special_tokens) or flagged special.</summary>
    public IReadOnlySet<int> SpecialIds { get; }

    /// <summary><c>model_max_length</c> from tokenizer_config.json, if present.</summary>
    public long? ModelMaxLength { get; }

    /// <summary><c>len(tokenizer)</c>: largest id + 1 (base vocabulary plus added tokens).</summary>
    public int Count => _idToToken.Length;

    private Qwen2Tokenizer(BpeModel bpe, List<AddedToken> added, bool nfc, JsonElement? config, JsonElement? specialMap)
    {
        _bpe = bpe;
        NormalizeNfc = nfc;
        _addedById = added.ToDictionary(t => t.Id);
        _splitter = new AddedTokenSplitter(added);
        _tokenToId = new Dictionary<string, int>(bpe.Vocab, StringComparer.Ordinal);
        foreach (var t in added) _tokenToId[t.Content] = t.Id;
        int count = _tokenToId.Values.Max() + 1;
        _idToToken = new string?[count];
        foreach (var (tok, id) in bpe.Vocab) _idToToken[id] = tok;
        foreach (var t in added) _idToToken[t.Id] = t.Content;

        _idToBytes = new byte[]?[count];
        for (int id = 0; id < count; id++)
        {
            string? tok = _idToToken[id];
            if (tok == null) continue;
            _idToBytes[id] = _addedById.ContainsKey(id)
                ? Encoding.UTF8.GetBytes(tok)
                : ByteLevel.TryDecode(tok) ?? Encoding.UTF8.GetBytes(tok);
        }

        string? Named(string key) => ReadTokenName(config, key) ?? ReadTokenName(specialMap, key);
        EosTokenId = TokenToId(Named("eos_token"));
        PadTokenId = TokenToId(Named("pad_token"));
        BosTokenId = TokenToId(Named("bos_token"));
        if (config is { } c && c.TryGetProperty("model_max_length", out var mml) && mml.ValueKind == JsonValueKind.Number
            && mml.TryGetDouble(out double mmlValue))
            ModelMaxLength = mmlValue >= long.MaxValue ? long.MaxValue : (long)mmlValue;

        // Special for skip_special_tokens: HF fast skips added tokens flagged special; the slow tokenizer skips
        // all_special_ids (eos/pad/bos/unk + additional_special_tokens). We skip the union.
        var special = new HashSet<int>(added.Where(t => t.Special).Select(t => t.Id));
        foreach (int? id in new[] { EosTokenId, PadTokenId, BosTokenId }) if (id is int v) special.Add(v);
        foreach (var src in new[] { config, specialMap })
            if (src is { } e && e.TryGetProperty("additional_special_tokens", out var list) && list.ValueKind == JsonValueKind.Array)
                foreach (var item in list.EnumerateArray())
                    if (TokenToId(TokenName(item)) is int v) special.Add(v);
        SpecialIds = special;
        _skipWhenDecoding = new bool[count];
        foreach (int id in special) _skipWhenDecoding[id] = true;
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Loading

    /// <summary>
    /// Loads from a checkpoint directory: <c>tokenizer.json</c> when present (unless <paramref name="preferSlowFiles"/>),
    /// else the slow files. <c>tokenizer_config.json</c> and <c>special_tokens_map.json</c> are read in both cases.
    /// </summary>
    public static Qwen2Tokenizer FromDirectory(string directory, bool preferSlowFiles = false)
    {
        string fast = Path.Combine(directory, "tokenizer.json");
        bool hasSlow = File.Exists(Path.Combine(directory, "vocab.json")) && File.Exists(Path.Combine(directory, "merges.txt"));
        if (File.Exists(fast) && !(preferSlowFiles && hasSlow)) return FromTokenizerJson(fast);
        if (hasSlow) return FromSlowFiles(directory);
        throw new FileNotFoundException(
            $"No Qwen2 tokenizer in '{directory}': expected tokenizer.json or vocab.json + merges.txt.");
    }

    /// <summary>Loads HF's fast-tokenizer file; sibling config files, if present, supply eos/pad names.</summary>
    public static Qwen2Tokenizer FromTokenizerJson(string path)
    {
        var file = HfTokenizerJson.ReadFast(File.ReadAllBytes(path), path);
        var model = file.ModelFields;
        if (model.TryGetValue("type", out var type) && type.GetString() != "BPE")
            throw new NotSupportedException($"{path}: model.type '{type.GetString()}' is not BPE.");
        if (model.TryGetValue("byte_fallback", out var bf) && bf.ValueKind == JsonValueKind.True)
            throw new NotSupportedException($"{path}: byte_fallback BPE is not a byte-level (Qwen2) tokenizer.");
        if (file.Vocab.Count == 0) throw new InvalidDataException($"{path}: model.vocab is missing or empty.");
        file.TopLevel.TryGetValue("pre_tokenizer", out var preTokenizer);
        CheckPreTokenizer(preTokenizer, path);
        bool ignoreMerges = model.TryGetValue("ignore_merges", out var im) && im.ValueKind == JsonValueKind.True;

        var added = new List<AddedToken>();
        if (file.TopLevel.TryGetValue("added_tokens", out var at))
            foreach (var t in at.EnumerateArray())
                added.Add(new AddedToken(t.GetProperty("id").GetInt32(), t.GetProperty("content").GetString()!,
                    Flag(t, "special"), Flag(t, "lstrip"), Flag(t, "rstrip"), Flag(t, "single_word"), Flag(t, "normalized")));

        bool nfc = file.TopLevel.TryGetValue("normalizer", out var normalizer) && HasNfc(normalizer);
        string dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        var (config, specialMap) = ReadConfigs(dir);
        return new Qwen2Tokenizer(new BpeModel(file.Vocab, file.Merges, ignoreMerges), added, nfc, config, specialMap);
    }

    /// <summary>
    /// Loads the slow-tokenizer files (what InternVL3 ships): <c>vocab.json</c>, <c>merges.txt</c>, and the added tokens
    /// from <c>tokenizer_config.json</c>'s <c>added_tokens_decoder</c> (flags) and <c>added_tokens.json</c> (ids).
    /// </summary>
    public static Qwen2Tokenizer FromSlowFiles(string directory)
    {
        string vocabPath = Path.Combine(directory, "vocab.json");
        var vocab = HfTokenizerJson.ReadVocabFile(File.ReadAllBytes(vocabPath), vocabPath);

        var merges = new List<(string, string)>();
        string mergesPath = Path.Combine(directory, "merges.txt");
        foreach (string line in File.ReadLines(mergesPath, Encoding.UTF8))
        {
            if (line.Length == 0 || line.StartsWith("#version", StringComparison.Ordinal)) continue;
            merges.Add(HfTokenizerJson.SplitMerge(line, mergesPath));
        }

        var (config, specialMap) = ReadConfigs(directory);
        var added = new Dictionary<int, AddedToken>();
        if (config is { } c && c.TryGetProperty("added_tokens_decoder", out var dec))
            foreach (var p in dec.EnumerateObject())
            {
                int id = int.Parse(p.Name, System.Globalization.CultureInfo.InvariantCulture);
                var t = p.Value;
                added[id] = new AddedToken(id, t.GetProperty("content").GetString()!, Flag(t, "special"),
                    Flag(t, "lstrip"), Flag(t, "rstrip"), Flag(t, "single_word"), Flag(t, "normalized"));
            }
        string addedPath = Path.Combine(directory, "added_tokens.json");
        if (File.Exists(addedPath))
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(addedPath));
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                int id = p.Value.GetInt32();
                if (added.TryGetValue(id, out var known))
                {
                    if (known.Content != p.Name)
                        throw new InvalidDataException(
                            $"{addedPath}: id {id} is '{p.Name}' but tokenizer_config.json's added_tokens_decoder says '{known.Content}'.");
                    continue;
                }
                // Not in added_tokens_decoder: transformers treats entries of added_tokens.json as special only if
                // the special-token map names them.
                added[id] = new AddedToken(id, p.Name, Special: false);
            }
        }
        // Tokens named by the special-token map are special even when only added_tokens.json lists them.
        var specialNames = new HashSet<string>(StringComparer.Ordinal);
        foreach (var src in new[] { config, specialMap })
        {
            if (src is not { } e) continue;
            foreach (string key in new[] { "eos_token", "pad_token", "bos_token", "unk_token" })
                if (ReadTokenName(e, key) is string name) specialNames.Add(name);
            if (e.TryGetProperty("additional_special_tokens", out var list) && list.ValueKind == JsonValueKind.Array)
                foreach (var item in list.EnumerateArray()) if (TokenName(item) is string name) specialNames.Add(name);
        }
        foreach (var (id, t) in added.ToList())
            if (!t.Special && specialNames.Contains(t.Content) && !vocab.ContainsKey(t.Content)) added[id] = t with { Special = true };

        // Qwen2Tokenizer (slow) always applies NFC in prepare_for_tokenization.
        return new Qwen2Tokenizer(new BpeModel(vocab, merges), added.Values.OrderBy(t => t.Id).ToList(), nfc: true, config, specialMap);
    }

    private static (JsonElement? Config, JsonElement? SpecialMap) ReadConfigs(string dir)
    {
        static JsonElement? Read(string p) => File.Exists(p) ? JsonDocument.Parse(File.ReadAllBytes(p)).RootElement.Clone() : null;
        return (Read(Path.Combine(dir, "tokenizer_config.json")), Read(Path.Combine(dir, "special_tokens_map.json")));
    }

    private static bool Flag(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.True;

    private static string? TokenName(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.String => e.GetString(),
        JsonValueKind.Object when e.TryGetProperty("content", out var c) => c.GetString(),
        _ => null,
    };

    private static string? ReadTokenName(JsonElement? e, string key) =>
        e is { } v && v.ValueKind == JsonValueKind.Object && v.TryGetProperty(key, out var t) ? TokenName(t) : null;

    private static bool HasNfc(JsonElement n)
    {
        if (n.ValueKind == JsonValueKind.Null) return false;
        string type = n.GetProperty("type").GetString()!;
        if (type == "NFC") return true;
        if (type == "Sequence")
        {
            bool nfc = false;
            foreach (var inner in n.GetProperty("normalizers").EnumerateArray())
            {
                string t = inner.GetProperty("type").GetString()!;
                if (t == "NFC") nfc = true;
                else throw new NotSupportedException($"Normalizer '{t}' is not supported (Qwen2 uses NFC only).");
            }
            return nfc;
        }
        throw new NotSupportedException($"Normalizer '{type}' is not supported (Qwen2 uses NFC only).");
    }

    // Refuse tokenizers whose pre-tokenization differs from Qwen2's, instead of silently producing other ids.
    private static void CheckPreTokenizer(JsonElement pre, string path)
    {
        if (pre.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null)
            throw new NotSupportedException($"{path}: no pre_tokenizer; expected Qwen2's Split + ByteLevel.");
        var steps = pre.GetProperty("type").GetString() == "Sequence"
            ? pre.GetProperty("pretokenizers").EnumerateArray().ToList()
            : [pre];
        bool sawSplit = false;
        foreach (var s in steps)
        {
            string type = s.GetProperty("type").GetString()!;
            if (type == "Split")
            {
                string? pattern = s.GetProperty("pattern").TryGetProperty("Regex", out var r) ? r.GetString() : null;
                string behavior = s.TryGetProperty("behavior", out var b) ? b.GetString()! : "Isolated";
                if (pattern != Qwen2PreTokenizer.Pattern || behavior != "Isolated" || Flag(s, "invert"))
                    throw new NotSupportedException($"{path}: Split pre-tokenizer pattern '{pattern}' ({behavior}) is not Qwen2's.");
                sawSplit = true;
            }
            else if (type == "ByteLevel")
            {
                if (Flag(s, "add_prefix_space") || (s.TryGetProperty("use_regex", out var ur) && ur.ValueKind != JsonValueKind.False))
                    throw new NotSupportedException($"{path}: ByteLevel pre-tokenizer with add_prefix_space/use_regex is not Qwen2's.");
            }
            else throw new NotSupportedException($"{path}: pre-tokenizer '{type}' is not supported.");
        }
        if (!sawSplit) throw new NotSupportedException($"{path}: expected Qwen2's Split pre-tokenizer.");
    }

    // ---------------------------------------------------------------------------------------------------------------
    // Vocabulary

    /// <summary>Id of a token string (added token or byte-level vocabulary spelling), or null (<c>convert_tokens_to_ids</c>).</summary>
    public int? TokenToId(string? token) => token != null && _tokenToId.TryGetValue(token, out int id) ? id : null;

    /// <summary>Id of a token that must exist; throws naming the token otherwise.</summary>
    public int RequireTokenId(string token) =>
        TokenToId(token) ?? throw new KeyNotFoundException($"Token '{token}' is not in the tokenizer's vocabulary or added tokens.");

    /// <summary>Token string of an id (byte-level spelling for BPE tokens), or null if the id is unused.</summary>
    public string? IdToToken(int id) => (uint)id < (uint)_idToToken.Length ? _idToToken[id] : null;

    /// <summary>Whether <paramref name="id"/> is dropped by <c>Decode(..., skipSpecial: true)</c>.</summary>
    public bool IsSpecial(int id) => (uint)id < (uint)_skipWhenDecoding.Length && _skipWhenDecoding[id];

    // ---------------------------------------------------------------------------------------------------------------
    // Encode / decode

    /// <summary>Token ids of <paramref name="text"/> (<c>tokenizer(text).input_ids</c>; nothing is prepended).</summary>
    public int[] Encode(string text)
    {
        var ids = new List<int>(text.Length / 3 + 8);
        EncodeInto(text, ids);
        return ids.ToArray();
    }

    /// <summary>Appends the ids of <paramref name="text"/> to <paramref name="ids"/>.</summary>
    public void EncodeInto(string text, List<int> ids)
    {
        foreach (var (start, length, token) in _splitter.Split(text))
        {
            if (token != null) { ids.Add(token.Id); continue; }
            string segment = text.Substring(start, length);
            if (NormalizeNfc) segment = Nfc.Normalize(segment);
            foreach (var (ps, pl) in Qwen2PreTokenizer.Split(segment))
                _bpe.EncodeWord(segment.Substring(ps, pl), ids);
        }
    }

    /// <summary>
    /// Text of <paramref name="ids"/>: token bytes concatenated and decoded as UTF-8 (invalid sequences -> U+FFFD).
    /// With <paramref name="skipSpecial"/> the ids in <see cref="SpecialIds"/> are dropped.
    /// </summary>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecial = false)
    {
        var buffer = new List<byte>(ids.Length * 4);
        foreach (int id in ids) AppendBytes(id, skipSpecial, buffer);
        return Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(buffer));
    }

    /// <summary>Raw bytes of one token (added tokens: UTF-8 of their content).</summary>
    public ReadOnlySpan<byte> TokenBytes(int id) =>
        (uint)id < (uint)_idToBytes.Length && _idToBytes[id] is { } b ? b
            : throw new ArgumentOutOfRangeException(nameof(id), $"Token id {id} is not in the vocabulary (size {Count}).");

    internal void AppendBytes(int id, bool skipSpecial, List<byte> buffer)
    {
        if (skipSpecial && IsSpecial(id)) return;
        buffer.AddRange(TokenBytes(id));
    }

    /// <summary>A decoder that turns a stream of generated ids into text, holding back incomplete UTF-8 characters.</summary>
    public StreamingDecoder CreateStreamingDecoder(bool skipSpecial = true) => new(this, skipSpecial);
}
