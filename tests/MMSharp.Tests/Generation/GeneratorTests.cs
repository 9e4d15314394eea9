using MMSharp.Engine;
using MMSharp.Generation;
using MMSharp.Models.InternVL;
using MMSharp.Tests.Cli;
using MMSharp.Tests.Models;
using MMSharp.Text;
using MMSharp.Vision;

namespace MMSharp.Tests.Generation;

public class GeneratorTests
{
    static (Generator Gen, InternVLChatModel Model) Open(string dir)
    {
        var tok = Qwen2Tokenizer.FromDirectory(dir);
        var model = InternVLChatModel.FromPretrained(dir);
        return (new Generator(model, tok, ChatTemplate.InternVL2_5), model);
    }

    [Fact]
    public void GenerateBatch_LeftPadded_EqualsPerSampleGreedy()
    {
        using var dir = CliFixtures.ModelDir();
        var (gen, model) = Open(dir.Path);
        using var _ = model;
        var cfg = model.Config;
        using var img1 = InternVLImagePreprocessor.LoadImage(CliFixtures.Image("opt_64x48.jpg"), cfg.ImageSize, 2);
        using var img2 = InternVLImagePreprocessor.LoadImage(CliFixtures.Image("opt_130x97.jpg"), cfg.ImageSize, 6);
        var rows = new (string Q, Tensor? Pv)[] { ("What is this?", img1), ("Write a long answer about the weather today, please.", null), ("Hm?", img2) };
        var prompts = rows.Select(r => (IReadOnlyList<int>)gen.Tokenizer.Encode(InternVLPrompt.BuildChatQuery(gen.Template, r.Q,
            r.Pv == null ? null : [r.Pv.Shape[0]], cfg.NumImageToken))).ToList();
        Assert.True(prompts.Select(p => p.Count).Distinct().Count() == 3, "rows must differ in length to exercise padding");

        var single = rows.Select((r, i) => gen.Generate(prompts[i], r.Pv, 7)).ToArray();
        Assert.Contains(single, s => s.Tokens.Length > 3);   // rows keep decoding next to padded ones
        using var all = Ops.Concat([img1, img2], 0);
        var batch = gen.GenerateBatch(prompts, all, 7, CliFixtures.EndOfText);
        for (int i = 0; i < rows.Length; i++)
        {
            Assert.Equal(single[i].Tokens, batch[i].Tokens);
            Assert.Equal(single[i].Text, batch[i].Text);
        }
    }

    [Fact]
    public void Generate_StreamsTheSameTextAsTheFinalDecode_AndStopsAtMaxNewTokens()
    {
        using var dir = CliFixtures.ModelDir();
        var (gen, model) = Open(dir.Path);
        using var _ = model;
        var ids = gen.Tokenizer.Encode(InternVLPrompt.BuildChatQuery(gen.Template, "Tell me a story.", null, model.Config.NumImageToken));
        var pieces = new List<string>();
        var r = gen.Generate(ids, null, 12, onText: pieces.Add);
        Assert.InRange(r.Tokens.Length, 1, 12);
        Assert.Equal(r.Stopped, r.Tokens[^1] == InternVLFixtures.Eos);
        if (!r.Stopped) Assert.Equal(12, r.Tokens.Length);
        Assert.Equal(r.Text, string.Concat(pieces).Trim());
        using var idsT = Tensor.FromArray(ids.Select(i => (long)i).ToArray(), 1, ids.Length);
        Assert.Equal(model.GenerateGreedy(idsT, null, 12, InternVLFixtures.Eos).Select(i => (int)i), r.Tokens);
    }

    [Fact]
    public void Generate_Throws_WhenPromptExceedsContext()
    {
        using var dir = CliFixtures.ModelDir("vit6b");
        var (gen, model) = Open(dir.Path);
        using var _ = model;
        var e = Assert.Throws<ContextLengthException>(() => gen.Generate(Enumerable.Repeat(5, 17).ToArray(), null, 2));
        Assert.Equal("prompt of 17 tokens is longer than the model's context (16)", e.Message);
    }
}
