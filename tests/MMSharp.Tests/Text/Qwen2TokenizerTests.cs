using System.Diagnostics;
using System.Text;
using MMSharp.Text;
using Xunit.Abstractions;

namespace MMSharp.Tests.Text;

public class Qwen2TokenizerTests(ITestOutputHelper output)
{
    [Theory]
    [MemberData(nameof(TokenizerFixtures.ItemNames), MemberType = typeof(TokenizerFixtures))]
    public void Encode_MatchesReferenceIds_FromTokenizerJson(string name)
    {
        var item = TokenizerFixtures.Items[name];
        Assert.Equal(item.Ids, TokenizerFixtures.Fast.Encode(item.Text));
    }

    [Theory]
    [MemberData(nameof(TokenizerFixtures.ItemNames), MemberType = typeof(TokenizerFixtures))]
    public void Encode_MatchesReferenceIds_FromSlowFiles(string name)
    {
        var item = TokenizerFixtures.Items[name];
        Assert.Equal(item.Ids, TokenizerFixtures.Slow.Encode(item.Text));
    }

    [Theory]
    [MemberData(nameof(TokenizerFixtures.ItemNames), MemberType = typeof(TokenizerFixtures))]
    public void Decode_MatchesReference_WithAndWithoutSpecialTokens(string name)
    {
        var item = TokenizerFixtures.Items[name];
        foreach (var tok in new[] { TokenizerFixtures.Fast, TokenizerFixtures.Slow })
        {
            Assert.Equal(item.Decoded, tok.Decode(item.Ids));
            Assert.Equal(item.DecodedSkipSpecial, tok.Decode(item.Ids, skipSpecial: true));
        }
    }

    [Theory]
    [MemberData(nameof(TokenizerFixtures.ItemNames), MemberType = typeof(TokenizerFixtures))]
    public void Decode_OfEncode_ReturnsNfcText(string name)
    {
        var item = TokenizerFixtures.Items[name];
        var tok = TokenizerFixtures.Fast;
        Assert.Equal(Nfc.Normalize(item.Text), tok.Decode(tok.Encode(item.Text)));
    }

    [Fact]
    public void SpecialTokenIds_AreResolvedFromTheFiles()
    {
        foreach (var tok in new[] { TokenizerFixtures.Fast, TokenizerFixtures.Slow })
        {
            Assert.Equal(151674, tok.Count);
            Assert.Equal(151645, tok.EosTokenId);           // <|im_end|>
            Assert.Equal(151643, tok.PadTokenId);           // <|endoftext|>
            Assert.Null(tok.BosTokenId);
            Assert.Equal(151665, tok.RequireTokenId("<img>"));
            Assert.Equal(151666, tok.RequireTokenId("</img>"));
            Assert.Equal(151667, tok.RequireTokenId("<IMG_CONTEXT>"));
            Assert.Equal(151644, tok.RequireTokenId("<|im_start|>"));
            Assert.Equal(12288, tok.ModelMaxLength);
            Assert.True(tok.IsSpecial(151667));
            Assert.True(tok.IsSpecial(151645));
            Assert.False(tok.IsSpecial(151657));            // <tool_call> is an added but not special token
            Assert.Null(tok.TokenToId("<not a token>"));
        }
    }

    [Fact]
    public void RequireTokenId_ThrowsNamingToken_WhenMissing()
    {
        var ex = Assert.Throws<KeyNotFoundException>(() => TokenizerFixtures.Fast.RequireTokenId("<nope>"));
        Assert.Contains("<nope>", ex.Message);
    }

    [Fact]
    public void Encode_ImageContextRun_GivesOneIdPerToken()
    {
        var tok = TokenizerFixtures.Fast;
        int[] ids = tok.Encode(InternVLPrompt.ImageTokens(1000));
        Assert.Equal(1002, ids.Length);
        Assert.Equal(151665, ids[0]);
        Assert.Equal(151666, ids[^1]);
        Assert.All(ids[1..^1], id => Assert.Equal(151667, id));
    }

    [Fact]
    public void StreamingDecoder_HoldsBackEmojiSplitAcrossTokens()
    {
        var tok = TokenizerFixtures.Fast;
        var item = TokenizerFixtures.Items["emoji"];
        // The fixture really splits some emoji into byte tokens: a lone token decodes to U+FFFD.
        Assert.Contains(item.Ids, id => tok.Decode([id]).Contains('\uFFFD'));

        var stream = tok.CreateStreamingDecoder(skipSpecial: false);
        var pieces = item.Ids.Select(stream.Push).ToList();
        pieces.Add(stream.Flush());
        Assert.All(pieces, p => Assert.DoesNotContain('\uFFFD', p));
        Assert.Contains(pieces, p => p.Length == 0);     // some tokens completed no character
        Assert.Equal(item.Text, string.Concat(pieces));
    }

    [Fact]
    public void StreamingDecoder_ConcatenationEqualsDecode_ForEveryFixture()
    {
        var tok = TokenizerFixtures.Fast;
        foreach (var item in TokenizerFixtures.Items.Values)
            foreach (bool skip in new[] { false, true })
            {
                var stream = tok.CreateStreamingDecoder(skip);
                string streamed = string.Concat(item.Ids.Select(stream.Push)) + stream.Flush();
                Assert.Equal(skip ? item.DecodedSkipSpecial : item.Decoded, streamed);
            }
    }

    [Fact]
    public void StreamingDecoder_Flush_ReplacesUnfinishedCharacter()
    {
        var tok = TokenizerFixtures.Fast;
        int[] ids = tok.Encode("🫠");                     // 3 tokens for 4 bytes
        Assert.True(ids.Length > 1);
        var stream = tok.CreateStreamingDecoder();
        Assert.Equal("", stream.Push(ids[0]));
        Assert.Equal("\uFFFD", stream.Flush());
        Assert.Equal("\uFFFD", tok.Decode(ids[..1]));
    }

    [Fact]
    public void Decode_SkipSpecial_KeepsNonSpecialAddedTokens()
    {
        var tok = TokenizerFixtures.Fast;
        int[] ids = tok.Encode("<|im_start|>user\n<tool_call>x</tool_call><img><IMG_CONTEXT></img><|im_end|>");
        Assert.Equal("user\n<tool_call>x</tool_call>", tok.Decode(ids, skipSpecial: true));
    }

    [Fact]
    public void Encode_100KB_IsFast()
    {
        var tok = TokenizerFixtures.Fast;
        var sb = new StringBuilder();
        var texts = TokenizerFixtures.Items.Values.Select(i => i.Text).ToArray();
        for (int k = 0; sb.Length < 100_000; k++) sb.Append(texts[k % texts.Length]).Append('\n');
        string text = sb.ToString();
        tok.Encode(text);                                 // warm up (JIT, BPE cache)
        var fresh = Qwen2Tokenizer.FromDirectory(TokenizerFixtures.TrimmedDir);
        var sw = Stopwatch.StartNew();
        int[] cold = fresh.Encode(text);                  // empty BPE cache
        double coldMs = sw.Elapsed.TotalMilliseconds;
        sw.Restart();
        int[] warm = fresh.Encode(text);
        double warmMs = sw.Elapsed.TotalMilliseconds;
        output.WriteLine($"encode {text.Length} chars -> {cold.Length} ids: cold cache {coldMs:F1} ms, warm {warmMs:F1} ms");
        Assert.Equal(cold, warm);
        Assert.True(coldMs < 1000, $"encoding 100 KB took {coldMs:F0} ms");
    }

    [Fact]
    public void FromTokenizerJson_AcceptsStringMerges_AndIgnoresConfigAbsence()
    {
        string dir = Directory.CreateTempSubdirectory("mmsharp-tok").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "tokenizer.json"), TinyTokenizerJson("[\"a b\", \"ab c\"]"));
            var tok = Qwen2Tokenizer.FromDirectory(dir);
            Assert.Equal([259, 258], tok.Encode("abcab"));   // a+b (rank 0) twice, then ab+c (rank 1)
            Assert.Equal([260, 259], tok.Encode("<s>abc"));
            Assert.Equal("<s>abc", tok.Decode([260, 259]));
            Assert.Equal("abc", tok.Decode([260, 259], skipSpecial: true));
            Assert.Null(tok.EosTokenId);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void FromTokenizerJson_Throws_WhenMergeProducesUnknownToken()
    {
        string dir = Directory.CreateTempSubdirectory("mmsharp-tok").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "tokenizer.json"), TinyTokenizerJson("[[\"a\", \"c\"]]"));
            var ex = Assert.Throws<ArgumentException>(() => Qwen2Tokenizer.FromDirectory(dir));
            Assert.Contains("'a c'", ex.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void FromTokenizerJson_Throws_WhenPreTokenizerIsNotQwen2()
    {
        string dir = Directory.CreateTempSubdirectory("mmsharp-tok").FullName;
        try
        {
            string json = TinyTokenizerJson("[]", pattern: Qwen2PreTokenizer.Pattern.Replace(@"\s+(?!\S)|", ""));
            File.WriteAllText(Path.Combine(dir, "tokenizer.json"), json);
            var ex = Assert.Throws<NotSupportedException>(() => Qwen2Tokenizer.FromDirectory(dir));
            Assert.Contains("pattern", ex.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void FromDirectory_Throws_WhenNoTokenizerFiles()
    {
        string dir = Directory.CreateTempSubdirectory("mmsharp-tok").FullName;
        try { Assert.Throws<FileNotFoundException>(() => Qwen2Tokenizer.FromDirectory(dir)); }
        finally { Directory.Delete(dir, true); }
    }

    /// <summary>
    /// Optional check against a complete Qwen2.5/InternVL3 tokenizer: set MMSHARP_QWEN2_TOKENIZER_DIR to a checkpoint
    /// directory (e.g. a downloaded InternVL3-1B). Skipped (passes) when unset.
    /// </summary>
    [Fact]
    public void Encode_WithFullVocabulary_MatchesReferenceIds_WhenAvailable()
    {
        string? dir = Environment.GetEnvironmentVariable("MMSHARP_QWEN2_TOKENIZER_DIR");
        if (string.IsNullOrEmpty(dir)) return;
        var sw = Stopwatch.StartNew();
        var tok = Qwen2Tokenizer.FromDirectory(dir);
        output.WriteLine($"full tokenizer from {dir}: {tok.Count} ids, loaded in {sw.Elapsed.TotalMilliseconds:F0} ms");
        foreach (var item in TokenizerFixtures.Items.Values)
            Assert.True(item.Ids.SequenceEqual(tok.Encode(item.Text)), $"ids differ on '{item.Name}'");
    }

    // A 261-id byte-level BPE: 256 byte symbols (ids 0..255 in byte order), 'ab' (258), 'abc' (259) and an added <s>.
    private static string TinyTokenizerJson(string merges, string pattern = Qwen2PreTokenizer.Pattern)
    {
        var vocab = new SortedDictionary<string, int>(StringComparer.Ordinal);
        for (int b = 0; b < 256; b++) vocab[ByteLevel.ByteToChar[b].ToString()] = b;
        vocab["ab"] = 258;
        vocab["abc"] = 259;
        string vocabJson = System.Text.Json.JsonSerializer.Serialize(vocab);
        string patternJson = System.Text.Json.JsonSerializer.Serialize(pattern);
        return $$$"""
            {"version":"1.0","added_tokens":[{"id":260,"content":"<s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
             "normalizer":{"type":"NFC"},
             "pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":{{{patternJson}}}},"behavior":"Isolated","invert":false},
                {"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false}]},
             "model":{"type":"BPE","dropout":null,"unk_token":null,"byte_fallback":false,"vocab":{{{vocabJson}}},"merges":{{{merges}}}}}
            """;
    }
}
