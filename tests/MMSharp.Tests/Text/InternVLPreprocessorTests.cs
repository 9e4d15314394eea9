using MMSharp.Text;

namespace MMSharp.Tests.Text;

/// <summary>preprocess_internvl2_5 label masking (spec internvl.md §6.3), expectations derived by hand from the code.</summary>
public class InternVLPreprocessorTests
{
    private const int Ignore = SupervisedSample.IgnoreIndex;
    private static Qwen2Tokenizer Tok => TokenizerFixtures.Fast;

    private static List<int[]> Supervised(SupervisedSample s)
    {
        // Maximal runs of supervised positions.
        var runs = new List<int[]>();
        var cur = new List<int>();
        for (int i = 0; i < s.Labels.Length; i++)
        {
            if (s.Labels[i] != Ignore) { Assert.Equal(s.InputIds[i], s.Labels[i]); cur.Add(s.Labels[i]); }
            else if (cur.Count > 0) { runs.Add(cur.ToArray()); cur.Clear(); }
        }
        if (cur.Count > 0) runs.Add(cur.ToArray());
        return runs;
    }

    [Fact]
    public void Preprocess_SingleImage_LossOnlyOnReplyAndImEnd()
    {
        var conv = new[] { new ConversationTurn("human", "<image>\nWhat is this?"), new ConversationTurn("gpt", "It is a red panda.") };
        var s = InternVLPreprocessor.Preprocess(conv, Tok, numImageTokenList: [3]);

        string expectedText = "<|im_start|>system\n" + ChatTemplate.InternVLSystemMessage + "<|im_end|>\n" +
                              "<|im_start|>user\n<img><IMG_CONTEXT><IMG_CONTEXT><IMG_CONTEXT></img>\nWhat is this?<|im_end|>\n" +
                              "<|im_start|>assistant\nIt is a red panda.<|im_end|>\n";
        Assert.Equal(Tok.Encode(expectedText), s.InputIds);   // segment-wise tokenization equals whole-text here
        Assert.Equal(3, s.InputIds.Count(id => id == 151667));

        var runs = Supervised(s);
        Assert.Single(runs);
        Assert.Equal("It is a red panda.<|im_end|>", Tok.Decode(runs[0]));
        Assert.Equal(Ignore, s.Labels[^1]);                   // trailing "\n"
        Assert.Equal(198, s.InputIds[^1]);
        // "<|im_start|>assistant\n" is 3 ids: <|im_start|>, "assistant", "\n" — all masked.
        Assert.Equal(3, Tok.Encode("<|im_start|>assistant\n").Length);
        int replyStart = s.Labels.ToList().FindIndex(l => l != Ignore);
        Assert.Equal([151644, Tok.Encode("assistant")[0], 198], s.InputIds[(replyStart - 3)..replyStart]);
    }

    [Fact]
    public void Preprocess_MultiTurn_SystemOverride_EachReplySupervised()
    {
        var conv = new[]
        {
            new ConversationTurn("system", "Be brief."),
            new ConversationTurn("human", "Hello, who are you?"),
            new ConversationTurn("gpt", "I am InternVL."),
            new ConversationTurn("human", "Tell me a story"),
            new ConversationTurn("gpt", "Once upon a time."),
        };
        var s = InternVLPreprocessor.Preprocess(conv, Tok, [], numImage: 0, textOnly: true);
        Assert.StartsWith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n", Tok.Decode(s.InputIds));
        var runs = Supervised(s);
        Assert.Equal(2, runs.Count);
        Assert.Equal("I am InternVL.<|im_end|>", Tok.Decode(runs[0]));
        Assert.Equal("Once upon a time.<|im_end|>", Tok.Decode(runs[1]));
    }

    [Fact]
    public void Preprocess_TextOnly_LeavesPlaceholderLiteral()
    {
        var conv = new[] { new ConversationTurn("human", "<image> text"), new ConversationTurn("gpt", "ok") };
        var s = InternVLPreprocessor.Preprocess(conv, Tok, [], numImage: 0, textOnly: true);
        Assert.Contains("<image> text", Tok.Decode(s.InputIds));
        Assert.DoesNotContain(151667, s.InputIds);
    }

    [Fact]
    public void Preprocess_MultiImage_UsesRunningImageIndex_AcrossTurns()
    {
        var conv = new[]
        {
            new ConversationTurn("human", "Image-1: <image>\nx"), new ConversationTurn("gpt", "a"),
            new ConversationTurn("human", "Image-2: <image>\ny"), new ConversationTurn("gpt", "b"),
        };
        var s = InternVLPreprocessor.Preprocess(conv, Tok, [1, 2], numImage: 2);
        string text = Tok.Decode(s.InputIds);
        Assert.Contains("Image-1: <img><IMG_CONTEXT></img>\nx", text);
        Assert.Contains("Image-2: <img><IMG_CONTEXT><IMG_CONTEXT></img>\ny", text);
    }

    [Fact]
    public void Preprocess_Throws_WhenPlaceholderCountDiffersFromNumImage()
    {
        var conv = new[] { new ConversationTurn("human", "no image here"), new ConversationTurn("gpt", "ok") };
        var ex = Assert.Throws<ArgumentException>(() => InternVLPreprocessor.Preprocess(conv, Tok, [256]));
        Assert.Contains("num_image = 1", ex.Message);
    }

    [Fact]
    public void Preprocess_SurplusPlaceholders_StayLiteral_AfterNumImageReached()
    {
        var conv = new[] { new ConversationTurn("human", "<image><image>"), new ConversationTurn("gpt", "ok") };
        var s = InternVLPreprocessor.Preprocess(conv, Tok, [1], numImage: 1);
        Assert.Contains("<img><IMG_CONTEXT></img><image>", Tok.Decode(s.InputIds));
    }

    [Fact]
    public void Preprocess_TruncatesAndPads_ToModelMaxLength()
    {
        var conv = new[] { new ConversationTurn("human", "hi"), new ConversationTurn("gpt", "ok") };
        var full = InternVLPreprocessor.Preprocess(conv, Tok, [], 0, textOnly: true);
        var cut = InternVLPreprocessor.Preprocess(conv, Tok, [], 0, textOnly: true, modelMaxLength: 10);
        Assert.Equal(full.InputIds[..10], cut.InputIds);
        Assert.Equal(full.Labels[..10], cut.Labels);

        int len = full.InputIds.Length + 5;
        var padded = InternVLPreprocessor.Preprocess(conv, Tok, [], 0, textOnly: true, modelMaxLength: len, padToMaxLength: true);
        Assert.Equal(len, padded.InputIds.Length);
        Assert.All(padded.InputIds[^5..], id => Assert.Equal(151643, id));
        Assert.All(padded.Labels[^5..], l => Assert.Equal(Ignore, l));
        Assert.Equal(full.InputIds.Length, padded.AttentionMask(151643).Count(m => m));
    }
}
