using MMSharp.Engine;
using MMSharp.Engine.IO;
using MMSharp.Models.InternVL;
using MMSharp.Text;
using MMSharp.Tests.Models;
using MMSharp.Vision;

namespace MMSharp.Tests.Cli;

public class ChatCommandTests
{
    const int MaxNew = 8;

    /// <summary>What chat() computes for the same inputs, through the model's own GenerateGreedy: (new ids, reply text).</summary>
    static (long[] Ids, string Text) Reference(string modelDir, string question, string[] images)
    {
        var tok = Qwen2Tokenizer.FromDirectory(modelDir);
        using var model = InternVLChatModel.FromPretrained(modelDir);
        var cfg = model.Config;
        Tensor? pv = null;
        int[] patches = [];
        if (images.Length > 0)
        {
            using var raw = InternVLImagePreprocessor.LoadImages(images, out patches, cfg.ImageSize, cfg.MaxDynamicPatch);
            using var bf = Ops.To(raw, DType.BF16);
            pv = Ops.To(bf, DType.F32);
            if (images.Length > 1) question = InternVLPrompt.MultiImagePrefix(images.Length) + question;
        }
        string prompt = InternVLPrompt.BuildChatQuery(ChatTemplate.InternVL2_5, question, patches, cfg.NumImageToken);
        var ids = tok.Encode(prompt).Select(i => (long)i).ToArray();
        using var idsT = Tensor.FromArray(ids, 1, ids.Length);
        var got = model.GenerateGreedy(idsT, pv, MaxNew, eosTokenId: InternVLFixtures.Eos);
        pv?.Dispose();
        var text = InternVLPrompt.ExtractResponse(tok.Decode(got.Where(i => i != InternVLFixtures.Eos).Select(i => (int)i).ToArray(), skipSpecial: true), ChatTemplate.InternVL2_5);
        return (got, text);
    }

    static string[] ImageArgs(string[] images) => images.SelectMany(i => new[] { "--image", i }).ToArray();

    [Theory]
    [InlineData("opt_64x48.jpg")]
    [InlineData("opt_37x23.jpg,opt_130x97.jpg")]
    [InlineData("")]
    public void Chat_WithPrompt_GreedyEqualsGenerateGreedy(string imageList)
    {
        var imageNames = imageList.Split(',', StringSplitOptions.RemoveEmptyEntries);
        using var dir = CliFixtures.ModelDir();
        using var dump = new IO.TempDir();
        var images = imageNames.Select(CliFixtures.Image).ToArray();
        var (code, stdout, stderr) = CliFixtures.Run(["chat", .. ImageArgs(images), "--model", dir.Path, "--prompt", "What is shown?",
            "--max-new-tokens", MaxNew.ToString(), "--dump-tensors", dump.Path]);
        Assert.True(code == 0, stderr);
        var (ids, text) = Reference(dir.Path, "What is shown?", images);
        using var generated = Npy.Read(dump.File("generated_ids.npy"));
        Assert.Equal(ids, generated.ToLongArray());
        Assert.Equal(text, stdout.Trim());
    }

    /// <summary>chat about one image with <paramref name="flag"/>, dumping the tensors into <paramref name="dump"/>: the
    /// answer (ids and printed text) must be GenerateGreedy's; returns stderr and the reference ids.</summary>
    static (string Stderr, long[] Ids) AskAboutAnImage(string modelDir, string flag, IO.TempDir dump)
    {
        var image = CliFixtures.Image("opt_64x48.jpg");
        var (code, stdout, stderr) = CliFixtures.Run(["chat", "--image", image, "--model", modelDir, "--prompt", "What is shown?",
            "--max-new-tokens", MaxNew.ToString(), flag, "--dump-tensors", dump.Path]);
        Assert.True(code == 0, stderr);
        var (ids, text) = Reference(modelDir, "What is shown?", [image]);
        using var generated = Npy.Read(dump.File("generated_ids.npy"));
        Assert.Equal(ids, generated.ToLongArray());
        Assert.Equal(text, stdout.Trim());
        return (stderr, ids);
    }

    [Fact]
    public void Chat_NoMmap_AnswersAsTheMappedLoadDoes()
    {
        using var dir = CliFixtures.ModelDir();
        using var dump = new IO.TempDir();
        AskAboutAnImage(dir.Path, "--no-mmap", dump);
    }

    [Fact]
    public void Chat_Stats_PrintsTheLoadAndEachAnswersTimingsOnStderr_AndLeavesStdoutAsItWas()
    {
        using var dir = CliFixtures.ModelDir();
        using var dump = new IO.TempDir();
        var (stderr, ids) = AskAboutAnImage(dir.Path, "--stats", dump);
        using var prompt = Npy.Read(dump.File("input_ids.npy"));
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        long weightBytes;
        using (var model = InternVLChatModel.FromPretrained(dir.Path)) weightBytes = model.Parameters().Sum(q => q.NumEl * q.DType.SizeOf());
        string size = System.Text.RegularExpressions.Regex.Escape((weightBytes / 1e6).ToString("F1", System.Globalization.CultureInfo.InvariantCulture));
        Assert.Matches($@"^stats: loaded {System.Text.RegularExpressions.Regex.Escape(dir.Path)} in \d+\.\d\d s \({size} MB of weights, memory-mapped, \d+ threads\)$", lines[0]);
        // the prompt's token count is the dumped input_ids', the answer's the generated ids' (a decode rate once there are two)
        Assert.Matches($@"^stats: prompt {prompt.Shape[0]} tokens; {prompt.Shape[0]} prefilled in \d+\.\d\d s \(\d+\.\d tokens/s, vision encoder included\); " +
            $@"answer {ids.Length} tokens in \d+\.\d\d s{(ids.Length > 1 ? @", \d+\.\d tokens/s" : "")}$", lines[1]);
    }

    [Fact]
    public void Chat_DumpTensors_WritesEveryFileWithItsShapeAndDtype()
    {
        using var dir = CliFixtures.ModelDir();
        using var dump = new IO.TempDir();
        var (code, _, stderr) = CliFixtures.Run("chat", "--model", dir.Path, "--image", CliFixtures.Image("opt_130x97.jpg"),
            "--prompt", "Hi", "--max-new-tokens", "3", "--dump-tensors", dump.Path);
        Assert.True(code == 0, stderr);
        using var ids = Npy.Read(dump.File("input_ids.npy"));
        using var pv = Npy.Read(dump.File("pixel_values.npy"));
        using var vit = Npy.Read(dump.File("vit_last_hidden_state.npy"));
        using var feat = Npy.Read(dump.File("vision_features.npy"));
        using var logits = Npy.Read(dump.File("logits.npy"));
        using var gen = Npy.Read(dump.File("generated_ids.npy"));
        int T = ids.Shape[0], tiles = pv.Shape[0];
        Assert.Equal(DType.I64, ids.DType);
        Assert.Equal(1, ids.Rank);
        Assert.True(tiles > 1);
        Assert.Equal([tiles, 3, 56, 56], pv.Shape);
        Assert.Equal([tiles, 17, 32], vit.Shape);
        Assert.Equal([tiles, 4, 32], feat.Shape);
        Assert.Equal([T, 300], logits.Shape);
        foreach (var t in new[] { pv, vit, feat, logits }) Assert.Equal(DType.F32, t.DType);
        Assert.Equal(DType.I64, gen.DType);
        Assert.InRange(gen.Shape[0], 1, 3);
        Assert.Equal(tiles * 4, ids.ToLongArray().Count(i => i == InternVLFixtures.ImgContext));

        // the dumped logits are the model's full-forward logits of the dumped inputs
        var tok = Qwen2Tokenizer.FromDirectory(dir.Path);
        using var model = InternVLChatModel.FromPretrained(dir.Path);
        using var ids2 = Ops.Reshape(ids, 1, T);
        using var expected = model.Forward(ids2, pv);
        using var flat = Ops.Reshape(expected, T, 300);
        Assert.True(InternVLFixtures.RelErr(logits, flat) < 1e-6);
        // and the greedy first token is the argmax of the last position
        var last = logits.ToFloatArray().Skip((T - 1) * 300).ToArray();
        Assert.Equal(Array.IndexOf(last, last.Max()), gen.GetFlatLong(0));
    }

    [Fact]
    public void Chat_Interactive_AnswersTurnsAndHandlesCommands()
    {
        using var dir = CliFixtures.ModelDir();
        string input = string.Join("\n", "/image " + CliFixtures.Image("opt_64x48.jpg"), "What is it?", "/unknown", "And now?", "/reset", "Hello", "/exit");
        var (code, stdout, stderr) = CliFixtures.RunWithInput(input, "chat", "--model", dir.Path, "--max-new-tokens", "4");
        Assert.True(code == 0, stderr);
        Assert.Contains("attached", stderr);
        Assert.Contains("unknown command /unknown", stderr);
        Assert.Contains("cleared", stderr);
        Assert.StartsWith("> ", stdout);
    }

    [Fact]
    public void Chat_Interactive_FollowUpsKeepTheCache_AndAnswerAsWithNoPrefixCache()
    {
        using var dir = CliFixtures.ModelDir();
        string input = string.Join("\n", "/image " + CliFixtures.Image("opt_64x48.jpg"), "What is it?", "And now?", "/reset", "Hello", "Again?", "/exit");
        var (code, cachedOut, cachedErr) = CliFixtures.RunWithInput(input, "chat", "--model", dir.Path, "--max-new-tokens", "5", "--stats");
        Assert.True(code == 0, cachedErr);
        var (code2, fullOut, fullErr) = CliFixtures.RunWithInput(input, "chat", "--model", dir.Path, "--max-new-tokens", "5", "--stats", "--no-prefix-cache");
        Assert.True(code2 == 0, fullErr);
        Assert.Equal(fullOut, cachedOut);
        // per answer: whether its prompt kept tokens from the previous turn (not after /reset)
        bool[] Kept(string err) => err.Split('\n').Where(l => l.StartsWith("stats: prompt ", StringComparison.Ordinal))
            .Select(l => l.Contains("kept from the previous turn", StringComparison.Ordinal)).ToArray();
        Assert.Equal([false, true, false, true], Kept(cachedErr));
        Assert.Equal([false, false, false, false], Kept(fullErr));
    }
}
