using MMSharp.Data;
using MMSharp.Text;
using MMSharp.Vision;

namespace MMSharp.Tests.Data;

public class SampleBuilderTests
{
    private static Qwen2Tokenizer Tok => DataTestUtil.Tokenizer;
    private static int Ctx => Tok.RequireTokenId(InternVLPrompt.ImageContextToken);

    private sealed class FakeVideo(int frames) : IVideoFrameSource
    {
        public int Opened;
        public IVideoClip Open(string path) { Opened++; return new Clip(frames); }
        private sealed class Clip(int frames) : IVideoClip
        {
            public int FrameCount => frames;
            public double Fps => 10;
            public RgbImage ReadFrame(int index)
            {
                var px = new byte[20 * 20 * 3];
                Array.Fill(px, (byte)(index * 3 % 256));
                return new RgbImage(20, 20, px);
            }
            public void Dispose() { }
        }
    }

    [Fact]
    public void SingleImage_TilesWithDatasetMaxPatch_AndExpandsContextTokens()
    {
        string dir = DataTestUtil.NewTempDir("sb");
        DataTestUtil.SavePng(Path.Combine(dir, "wide.png"), 84, 28, 0, 0, 255);   // 3:1 -> 3 tiles + thumbnail
        var spec = new DatasetSpec("d", dir, Path.Combine(dir, "x.jsonl"), MaxDynamicPatch: 6);
        var rec = DataRecord.Parse(System.Text.Encoding.UTF8.GetBytes(DataTestUtil.ImageRecord("w", "wide.png", "What color is the shape?", "blue")),
            new SourceLocation("x.jsonl", 1, 0));
        var s = new SampleBuilder(Tok, DataTestUtil.SmallOptions()).Build(rec, spec);
        Assert.Equal(4, s.TileCount);
        Assert.Equal([4], s.TilesPerImage);
        Assert.Equal([1, 1, 1, 1], s.ImageFlags);
        Assert.Equal(4 * 3 * 28 * 28, s.PixelValues.Length);
        Assert.Equal(4 * 4, s.InputIds.Count(id => id == Ctx));   // "<image>\n" was prepended
        var supervised = s.Labels.Where(l => l != TrainingSample.IgnoreIndex).Select(l => (int)l).ToArray();
        Assert.Equal("blue<|im_end|>", Tok.Decode(supervised));

        // With the dataset override removed the global max (4) applies: 3 tiles + thumbnail still fit.
        var s1 = new SampleBuilder(Tok, DataTestUtil.SmallOptions() with { MaxDynamicPatch = 2 }).Build(rec, spec with { MaxDynamicPatch = null });
        Assert.Equal(3, s1.TileCount);   // 2 tiles + thumbnail
    }

    [Fact]
    public void SingleImage_WithSystemTurnFirst_PrependsTagToFirstHumanTurn()
    {
        string dir = DataTestUtil.NewTempDir("sb");
        DataTestUtil.SavePng(Path.Combine(dir, "a.png"), 28, 28, 255, 0, 0);
        string line = "{\"image\":\"a.png\",\"conversations\":[{\"from\":\"system\",\"value\":\"Answer with one word.\"}," +
                      "{\"from\":\"human\",\"value\":\"What color is the shape?\"},{\"from\":\"gpt\",\"value\":\"red\"}]}";
        var rec = DataRecord.Parse(System.Text.Encoding.UTF8.GetBytes(line), new SourceLocation("x", 1, 0));
        var s = new SampleBuilder(Tok, DataTestUtil.SmallOptions()).Build(rec, new DatasetSpec("d", dir, "x.jsonl"));
        string text = Tok.Decode(s.InputIds.Select(i => (int)i).ToArray());
        Assert.StartsWith("<|im_start|>system\nAnswer with one word.<|im_end|>\n<|im_start|>user\n<img>", text);
    }

    [Fact]
    public void MultiImage_UsesMaxPatchDividedByImageCount()
    {
        string dir = DataTestUtil.NewTempDir("sb");
        DataTestUtil.SavePng(Path.Combine(dir, "a.png"), 84, 28, 255, 0, 0);
        DataTestUtil.SavePng(Path.Combine(dir, "b.png"), 28, 28, 0, 255, 0);
        string line = "{\"image\":[\"a.png\",\"b.png\"],\"conversations\":[{\"from\":\"human\",\"value\":\"<image>\\n<image>\\nWhat?\"},{\"from\":\"gpt\",\"value\":\"red\"}]}";
        var rec = DataRecord.Parse(System.Text.Encoding.UTF8.GetBytes(line), new SourceLocation("x", 1, 0));
        var spec = new DatasetSpec("d", dir, "x.jsonl", MaxDynamicPatch: 4);
        var s = new SampleBuilder(Tok, DataTestUtil.SmallOptions()).Build(rec, spec);
        Assert.Equal([3, 1], s.TilesPerImage);   // max(1, 4 // 2) = 2 per image: a -> 2 + thumbnail, b -> 1
        Assert.Equal(4 * 4, s.InputIds.Count(id => id == Ctx));
    }

    [Fact]
    public void TextOnly_HasOneDummyTileWithFlagZeroAndNoImageTokens()
    {
        var rec = DataRecord.Parse(System.Text.Encoding.UTF8.GetBytes(DataTestUtil.TextRecord("t")), new SourceLocation("x", 1, 0));
        var s = new SampleBuilder(Tok, DataTestUtil.SmallOptions()).Build(rec, new DatasetSpec("d", "", "x.jsonl"));
        Assert.Equal(1, s.TileCount);
        Assert.Equal([0], s.ImageFlags);
        Assert.Empty(s.TilesPerImage);
        Assert.DoesNotContain(Ctx, s.InputIds.Select(i => (int)i));
    }

    [Fact]
    public void Truncation_CutsTextOnlySampleToMaxSeqLength()
    {
        string q = string.Join(" ", Enumerable.Repeat("square", 300));
        var rec = DataRecord.Parse(System.Text.Encoding.UTF8.GetBytes(DataTestUtil.TextRecord("t", q)), new SourceLocation("x", 1, 0));
        var s = new SampleBuilder(Tok, DataTestUtil.SmallOptions(maxSeq: 64)).Build(rec, new DatasetSpec("d", "", "x.jsonl"));
        Assert.Equal(64, s.Length);
        Assert.Equal(64, s.Labels.Length);
    }

    [Fact]
    public void Video_UsesFrameSource_OneTilePerFrame_FramePrefix_SeededFrameChoice()
    {
        string dir = DataTestUtil.NewTempDir("sb");
        File.WriteAllBytes(Path.Combine(dir, "clip.mp4"), [0]);
        string line = "{\"video\":\"clip.mp4\",\"conversations\":[{\"from\":\"human\",\"value\":\"<video>\\nWhat happens?\"},{\"from\":\"gpt\",\"value\":\"red\"}]}";
        var rec = DataRecord.Parse(System.Text.Encoding.UTF8.GetBytes(line), new SourceLocation("x", 1, 0));
        var fake = new FakeVideo(frames: 50);
        var b = new SampleBuilder(Tok, DataTestUtil.SmallOptions(), fake);
        var spec = new DatasetSpec("d", dir, "x.jsonl");
        var s = b.Build(rec, spec, videoSeed: 42);
        Assert.InRange(s.TileCount, 2, 4);
        Assert.Equal(s.TileCount, s.TilesPerImage.Length);
        Assert.Equal(s.TileCount * 4, s.InputIds.Count(id => id == Ctx));
        string text = Tok.Decode(s.InputIds.Select(i => (int)i).ToArray());
        Assert.Contains("Frame-1: <img>", text);
        Assert.Equal(s.PixelValues, b.Build(rec, spec, videoSeed: 42).PixelValues);

        var idx = SampleBuilder.RandomFrameIndices(8, 50, 10, null, new MMSharp.Engine.Rng(1));
        for (int i = 0; i < 8; i++) Assert.InRange(idx[i], 50 * i / 8, Math.Max(50 * i / 8, 50 * (i + 1) / 8 - 2));
    }

    [Fact]
    public void Video_WithoutFrameSource_IsReportedNotThrown()
    {
        string dir = DataTestUtil.NewTempDir("sb");
        File.WriteAllBytes(Path.Combine(dir, "clip.mp4"), [0]);
        string line = "{\"video\":\"clip.mp4\",\"conversations\":[{\"from\":\"human\",\"value\":\"What?\"},{\"from\":\"gpt\",\"value\":\"red\"}]}";
        var report = new DataReport();
        var s = new SampleBuilder(Tok, DataTestUtil.SmallOptions()).TryBuild(
            new RawLine(System.Text.Encoding.UTF8.GetBytes(line), new SourceLocation("v.jsonl", 7, 0), 0), new DatasetSpec("d", dir, "v.jsonl"), report);
        Assert.Null(s);
        Assert.Equal("v.jsonl", report.Entries[0].Location.File);
        Assert.Equal(BadRecordKind.UnreadableVideo, report.Entries[0].Kind);
    }
}
