using MMSharp.Data;
using MMSharp.Text;
using MMSharp.Vision;

namespace MMSharp.Tests.Data;

public class ShapesDatasetTests
{
    /// <summary>Connected components (4-neighbour) of non-background pixels, with their colour and centroid (in cells of the 3×3 grid).</summary>
    private static List<(byte R, byte G, byte B, double X, double Y)> Components(RgbImage img)
    {
        int w = img.Width, h = img.Height;
        var seen = new bool[w * h];
        var result = new List<(byte, byte, byte, double, double)>();
        for (int start = 0; start < w * h; start++)
        {
            var p = img.Pixels;
            var bg = ShapesDataset.Background;
            if (seen[start] || (p[3 * start] == bg.R && p[3 * start + 1] == bg.G && p[3 * start + 2] == bg.B)) continue;
            var stack = new Stack<int>([start]);
            seen[start] = true;
            double sx = 0, sy = 0; int n = 0;
            while (stack.Count > 0)
            {
                int q = stack.Pop(); int x = q % w, y = q / w;
                sx += x; sy += y; n++;
                foreach (var (nx, ny) in new[] { (x - 1, y), (x + 1, y), (x, y - 1), (x, y + 1) })
                {
                    if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
                    int r = ny * w + nx;
                    if (seen[r] || p[3 * r] != p[3 * start] || p[3 * r + 1] != p[3 * start + 1] || p[3 * r + 2] != p[3 * start + 2]) continue;
                    seen[r] = true; stack.Push(r);
                }
            }
            result.Add((p[3 * start], p[3 * start + 1], p[3 * start + 2], (sx / n + 0.5) / w * 3, (sy / n + 0.5) / h * 3));   // centroid in cell units
        }
        return result;
    }

    [Theory]
    [InlineData(42)]
    [InlineData(56)]
    [InlineData(112)]
    public void Answers_MatchTheRenderedPixels(int size)
    {
        var kinds = new Dictionary<string, int>();
        for (int i = 0; i < 300; i++)
        {
            var ex = ShapesDataset.Make(17, i, size);
            kinds[ex.Kind] = kinds.GetValueOrDefault(ex.Kind) + 1;
            var comps = Components(ex.Image);
            Assert.Equal(ex.Items.Count, comps.Count);   // shapes never touch
            Assert.Equal(ex.Items.Count, ex.Items.Select(it => it.Shape).Distinct().Count());   // shapes and colours differ within an image
            Assert.Equal(ex.Items.Count, ex.Items.Select(it => it.Color).Distinct().Count());
            foreach (var k in comps)   // each shape lies inside one cell of the 3×3 grid (one image token of the demo model)
                Assert.Contains(ex.Items, it => Math.Abs(k.X - (ShapesDataset.Positions[it.Position].Col + 0.5)) < 0.25
                                             && Math.Abs(k.Y - (ShapesDataset.Positions[it.Position].Row + 0.5)) < 0.25);
            switch (ex.Kind)
            {
                case "count":
                    Assert.Equal(ShapesDataset.CountWords[comps.Count], ex.Answer);
                    break;
                case "color":
                    var c = ShapesDataset.Colors.Single(c => c.Name == ex.Answer);
                    Assert.Contains(comps, k => k.R == c.R && k.G == c.G && k.B == c.B);
                    break;
                case "position":
                    var pos = ShapesDataset.Positions.Single(p => p.Name == ex.Answer);
                    string colour = ex.Question.Split(' ')[3];
                    var col = ShapesDataset.Colors.Single(k => k.Name == colour);
                    Assert.Contains(comps, k => k.R == col.R && k.G == col.G && k.B == col.B && Math.Abs(k.X - (pos.Col + 0.5)) < 0.25 && Math.Abs(k.Y - (pos.Row + 0.5)) < 0.25);
                    break;
                case "shape":
                    Assert.Contains(ex.Answer, ShapesDataset.Shapes);
                    Assert.Single(ex.Items, it => ShapesDataset.Shapes[it.Shape] == ex.Answer &&
                        (ex.Items.Count == 1 || ex.Question.Contains(ShapesDataset.Colors[it.Color].Name)));
                    break;
            }
        }
        Assert.All(new[] { "count", "color", "shape", "position" }, k => Assert.True(kinds.GetValueOrDefault(k) >= 30, $"{k}: {kinds.GetValueOrDefault(k)}"));
    }

    [Fact]
    public void Make_RespectsKindsAndMaxCount_IsCorrectIgnoresCaseAndPeriod()
    {
        for (int i = 0; i < 100; i++)
        {
            var ex = ShapesDataset.Make(2, i, maxCount: 2, kinds: ["count"]);
            Assert.Equal("count", ex.Kind);
            Assert.InRange(ex.Items.Count, 1, 2);
        }
        Assert.True(ShapesDataset.IsCorrect(" Red.", "red"));
        Assert.False(ShapesDataset.IsCorrect("red circle", "red"));
    }

    [Fact]
    public void Generate_IsDeterministicAndWritesLoadableJsonl()
    {
        string a = DataTestUtil.NewTempDir("shapes"), b = DataTestUtil.NewTempDir("shapes");
        var outA = ShapesDataset.Generate(a, 20, 5, seed: 3);
        ShapesDataset.Generate(b, 20, 5, seed: 3);
        Assert.Equal(File.ReadAllText(outA.TrainJsonl), File.ReadAllText(Path.Combine(b, "train.jsonl")));
        Assert.Equal(File.ReadAllBytes(Path.Combine(a, "images", "val_000004.png")), File.ReadAllBytes(Path.Combine(b, "images", "val_000004.png")));
        Assert.NotEqual(File.ReadAllText(outA.TrainJsonl), File.ReadAllText(ShapesDataset.Generate(DataTestUtil.NewTempDir("shapes"), 20, 5, seed: 4).TrainJsonl));

        // The meta file and the images load through the normal path.
        using var ds = new MixedDataset(DatasetSpec.Load(outA.MetaJson));
        Assert.Equal(20, ds.Count);
        var builder = new SampleBuilder(DataTestUtil.Tokenizer, new SampleBuilderOptions { ImageSize = 56, NumImageToken = 4, MaxDynamicPatch = 1 });
        var report = new DataReport();
        var s = builder.TryBuild(ds.Read(0), ds.Datasets[0], report);
        Assert.NotNull(s);
        Assert.Equal(0, report.Total);
        Assert.Equal(1, s!.TileCount);
        var decoded = RgbImage.Load(Path.Combine(a, "images", "train_000000.png"));
        Assert.Equal(ShapesDataset.Make(3, 0).Image.Pixels, decoded.Pixels);
    }

    [Fact]
    public void TinyTokenizer_LoadsAndEncodesEveryQuestionAndAnswerShortAndExactly()
    {
        var tok = DataTestUtil.Tokenizer;
        Assert.True(tok.Count < 1000, $"vocabulary {tok.Count}");
        Assert.Equal(tok.RequireTokenId("<|im_end|>"), tok.EosTokenId);
        Assert.Equal(tok.RequireTokenId("<|endoftext|>"), tok.PadTokenId);
        foreach (string special in TinyTokenizer.SpecialTokens) Assert.Single(tok.Encode(special));
        foreach (string word in ShapesDataset.Shapes.Concat(ShapesDataset.Colors.Select(c => c.Name)).Concat(ShapesDataset.Positions.Select(p => p.Name)))
            Assert.Single(tok.Encode(word));
        for (int i = 0; i < 200; i++)
        {
            var ex = ShapesDataset.Make(5, i);
            foreach (string text in new[] { "<image>\n" + ex.Question, ex.Answer })
            {
                var ids = tok.Encode(text);
                Assert.Equal(text, tok.Decode(ids));
                Assert.True(ids.Length <= 12, $"'{text}' -> {ids.Length} tokens");
            }
        }
        var sys = tok.Encode(ChatTemplate.InternVLSystemMessage);
        Assert.Equal(ChatTemplate.InternVLSystemMessage, tok.Decode(sys));
        Assert.True(sys.Length < 25, $"system message {sys.Length} tokens");
        Assert.Equal("Unseen text: 42 ü!", tok.Decode(tok.Encode("Unseen text: 42 ü!")));   // byte fallback
        Assert.Equal(3, tok.Encode("<|im_start|>assistant\n").Length);
    }

    [Fact]
    public void ShapesSample_IsShortAndSupervisesOnlyTheAnswer()
    {
        var tok = DataTestUtil.Tokenizer;
        var ex = ShapesDataset.Make(1, 0);
        var s = InternVLPreprocessor.Preprocess([new ConversationTurn("human", "<image>\n" + ex.Question), new ConversationTurn("gpt", ex.Answer)],
            tok, [4]);
        Assert.True(s.InputIds.Length < 60, $"{s.InputIds.Length} tokens");
        Assert.Equal(ex.Answer + "<|im_end|>", tok.Decode(s.Labels.Where(l => l != SupervisedSample.IgnoreIndex).ToArray()));
    }

    [Fact]
    public void Generate_AsksSeveralQuestionsPerTrainingImage_WithTheSingleShapeShare_AndOnePerHeldOutImage()
    {
        string dir = DataTestUtil.NewTempDir("shapes");
        var o = ShapesDataset.Generate(dir, 200, 40, seed: 5, trainQuestions: 4, trainSingleShare: 0.5);
        var train = File.ReadLines(o.TrainJsonl).Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement).ToList();
        var val = File.ReadLines(o.ValJsonl).Select(l => System.Text.Json.JsonDocument.Parse(l).RootElement).ToList();
        Assert.All(train, r => Assert.Equal(8, r.GetProperty("conversations").GetArrayLength()));
        Assert.All(val, r => Assert.Equal(2, r.GetProperty("conversations").GetArrayLength()));
        // four different kinds per training image, <image> only in the first turn
        foreach (var r in train)
        {
            var turns = r.GetProperty("conversations").EnumerateArray().Select(t => t.GetProperty("value").GetString()!).ToList();
            Assert.StartsWith("<image>\n", turns[0]);
            Assert.DoesNotContain(turns.Skip(1), t => t.Contains("<image>"));
        }
        var ex = ShapesDataset.Make(5, 3, questions: 4);
        Assert.Equal(ShapesDataset.Kinds.OrderBy(k => k), ex.Questions.Select(q => q.Kind).OrderBy(k => k));
        // about half of the training images show one shape; held-out images follow the plain 1-4 distribution
        int single = train.Count(r => r.GetProperty("conversations")[1].GetProperty("value").GetString() == "one"
                                      || r.GetProperty("conversations").EnumerateArray().Any(t => t.GetProperty("value").GetString() == "one"));
        Assert.InRange(single, 100, 150);
        // the first question of a one-question example is the one the single-question stream asks (held-out files stay stable)
        Assert.Equal(ShapesDataset.Make(5, 7).Question, ShapesDataset.Make(5, 7, questions: 4).Question);
    }
}
