using System.Text;
using MMSharp.Data;
using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.Tests.Data;
using MMSharp.Text;
using MMSharp.Vision;
using MMSharp.Models.InternVL;
using MMSharp.Tests.Models;
using MMSharp.Training;

namespace MMSharp.Tests.Finetune;

/// <summary>
/// The official image-token mismatch rule of <c>InternVLChatModel.forward</c> (spec internvl.md §6.6): when max_seq_length
/// truncation left fewer <c>&lt;IMG_CONTEXT&gt;</c> tokens than ViT feature rows, the first n_selected rows are used and the
/// loss is multiplied by 0 — no exception. (The dataset side: tests/fixtures/preprocess cases *_truncated_in_image_tokens.)
/// </summary>
public sealed class ImageTokenMismatchTests
{
    // fixture input: 11 42 7 199 3 <img>=295 <IMG_CONTEXT>=297 x 8 (2 tiles x 4) </img>=296 56 120 9 250 77 31
    static InternVLChatModel Load()
    {
        var m = InternVLChatModel.FromPretrained(InternVLFixtures.Dir("vit300m"));
        m.PrepareTrainableParameters(DType.F32);
        return m;
    }

    /// <summary>The fixture sample cut to its first <paramref name="keep"/> tokens, with both tiles; labels on tokens 1..4.</summary>
    static InternVLBatch Cut(int keep)
    {
        using var full = InternVLFixtures.Ref("vit300m", "input_ids");
        var ids = full.ToLongArray()[..keep];
        var labels = ids.Select((id, t) => t is >= 1 and <= 4 ? id : -100L).ToArray();
        return new InternVLBatch
        {
            InputIds = Tensor.FromArray(ids, 1, keep), Labels = Tensor.FromArray(labels, 1, keep),
            PixelValues = InternVLFixtures.Ref("vit300m", "pixel_values"),
        };
    }

    [Theory]
    [InlineData(10, LossReduction.Token)]    // 4 of 8 context tokens left
    [InlineData(10, LossReduction.Square)]
    [InlineData(6, LossReduction.Sample)]    // cut right after <img>: no context token left
    public void Loss_IsZeroWithZeroGradients_WhenTruncationCutImageTokens(int keep, LossReduction reduction)
    {
        using var model = Load();
        model.Train();
        using var batch = Cut(keep);
        using (var loss = InternVLTraining.Loss(model, batch, reduction, out bool truncated))
        {
            Assert.True(truncated);
            Assert.Equal(0f, loss.Item());
            loss.Backward();
        }
        int withGrad = 0;
        foreach (var (name, p) in model.NamedParameters())
        {
            if (p.Grad == null) continue;
            withGrad++;
            Assert.True(p.Grad.ToFloatArray().All(g => g == 0f), $"{name}: non-zero gradient although the loss was multiplied by 0");
        }
        Assert.True(withGrad > 0);
    }

    [Fact]
    public void Trainable_CountsAndWarns_WhenALossIsZeroed()
    {
        using var model = Load();
        var log = new StringWriter();
        var trainable = new InternVLTrainable(model, LossReduction.Token) { Log = log };
        using (var cut = Cut(10))
        using (var loss = trainable.Loss(cut)) Assert.Equal(0f, loss.Item());
        using (var full = Cut(21))
        using (var loss = trainable.Loss(full)) Assert.True(loss.Item() > 0);
        Assert.Equal(1, trainable.ImageTokenMismatchBatches);
        Assert.Contains("multiplied by 0", log.ToString());
    }

    [Fact]
    public void TrainingForward_UsesTheFirstFeatureRows_WhenTokensWereCut()
    {
        // With causal attention, the logits of the cut sequence equal the first positions of the full one only if its four
        // context tokens received the first four feature rows (vit_embeds[:n_token]).
        using var model = Load();
        model.Eval();
        using var _ = GradMode.NoGrad();
        using var cut = Cut(10);
        using var full = Cut(21);
        using var a = InternVLTraining.ForwardForTraining(model, cut, out bool truncated);
        using var b = InternVLTraining.ForwardForTraining(model, full, out bool fullTruncated);
        Assert.True(truncated);
        Assert.False(fullTruncated);
        using var bHead = Ops.Narrow(b, 1, 0, 10);
        using var bc = Ops.Contiguous(bHead);
        Assert.True(InternVLFixtures.RelErr(a, bc) <= 1e-5, $"rel err {InternVLFixtures.RelErr(a, bc):E2}");
    }

    [Fact]
    public void Loss_IsTheNormalLoss_WhenNothingWasCut()
    {
        using var model = Load();
        model.Eval();
        using var _ = GradMode.NoGrad();
        using var full = Cut(21);
        using var loss = InternVLTraining.Loss(model, full, LossReduction.Token, out bool truncated);
        Assert.False(truncated);
        using var logits = model.Forward(full.InputIds, full.PixelValues);
        using var expected = InternVLTraining.LossFromLogits(logits, full.Labels, null, LossReduction.Token);
        Assert.Equal(expected.Item(), loss.Item());
        Assert.True(loss.Item() > 0);
    }

    [Fact]
    public void TrainingForward_Throws_WhenMoreContextTokensThanFeatureRows()
    {
        // the official code fails here too (vit_embeds[:n_token] still has too few rows)
        using var model = Load();
        using var full = Cut(21);
        using var oneTile = Ops.Narrow(full.PixelValues!, 0, 0, 1);
        using var tile = Ops.Contiguous(oneTile);
        using var batch = new InternVLBatch
        {
            InputIds = Ops.Contiguous(full.InputIds, DType.I64), Labels = Ops.Contiguous(full.Labels, DType.I64), PixelValues = Ops.Clone(tile),
        };
        var e = Assert.Throws<ArgumentException>(() => InternVLTraining.Loss(model, batch, LossReduction.Token));
        Assert.Contains("<IMG_CONTEXT>", e.Message);
    }

    sealed class FakeVideo : IVideoFrameSource
    {
        public IVideoClip Open(string path) => new Clip();
        sealed class Clip : IVideoClip
        {
            public int FrameCount => 6;
            public double Fps => 5;
            public RgbImage ReadFrame(int index) => new(40, 30, Enumerable.Repeat((byte)(30 * index), 40 * 30 * 3).ToArray());
            public void Dispose() { }
        }
    }

    [Fact]
    public void DataToLoss_VideoCutInFrameTokensIsKeptAndZeroed_ImageCutIsSkipped()
    {
        // the demo model with its own tokenizer: 56 px tiles of 16 context tokens
        using var tmp = new IO.TempDir();
        string modelDir = tmp.File("model");
        InternVLPresets.WriteShapesDemoModel(modelDir, "demo", 3, out _);
        var tok = Qwen2Tokenizer.FromDirectory(modelDir);
        using var model = InternVLChatModel.FromPretrained(modelDir);
        model.PrepareTrainableParameters(DType.F32);
        int ctx = tok.RequireTokenId(InternVLPrompt.ImageContextToken);
        string dir = DataTestUtil.NewTempDir("mismatch");
        File.WriteAllBytes(Path.Combine(dir, "clip.mp4"), []);
        DataTestUtil.SavePng(Path.Combine(dir, "one.png"), 56, 56, 200, 0, 0);
        var spec = new DatasetSpec("d", dir, Path.Combine(dir, "x.jsonl"));
        const string video = "{\"video\":\"clip.mp4\",\"conversations\":[{\"from\":\"system\",\"value\":\"Be brief.\"}," +
                             "{\"from\":\"human\",\"value\":\"<video>\\nWhat shape is this?\"},{\"from\":\"gpt\",\"value\":\"circle\"}]}";
        const string image = "{\"image\":\"one.png\",\"conversations\":[{\"from\":\"system\",\"value\":\"Be brief.\"}," +
                             "{\"from\":\"human\",\"value\":\"<image>\\nWhat shape is this?\"},{\"from\":\"gpt\",\"value\":\"circle\"}]}";
        SampleBuilder Builder(int maxSeq) => new(tok, new SampleBuilderOptions
        {
            ImageSize = 56, NumImageToken = 16, MaxDynamicPatch = 1, MaxSeqLength = maxSeq, MinNumFrame = 3, MaxNumFrame = 3,
        }, new FakeVideo());
        RawLine Line(string json) => new(Encoding.UTF8.GetBytes(json), new SourceLocation("x.jsonl", 1, 0), 0);

        var report = new DataReport();
        var whole = Builder(4096).TryBuild(Line(video), spec, report)!;
        int firstCtx = Array.IndexOf(whole.InputIds, (long)ctx);
        var ctxAt = Enumerable.Range(0, whole.Length).Where(i => whole.InputIds[i] == ctx).ToArray();
        Assert.Equal(48, ctxAt.Length);
        int cut = ctxAt[20] + 1;                                         // 5 tokens into the second frame
        var video1 = Builder(cut).TryBuild(Line(video), spec, report);
        var image1 = Builder(firstCtx + 5).TryBuild(Line(image), spec, report);
        Assert.NotNull(video1);                                          // official video_get_item has no </img> check
        Assert.Equal(21, video1.InputIds.Count(x => x == ctx));
        Assert.Equal(3, video1.TileCount);
        Assert.Null(image1);                                             // official multi_modal_get_item asserts: dropped
        Assert.Equal(1, report.Count(BadRecordKind.ImageTokensTruncated));
        var text = Builder(4096).TryBuild(Line("{\"conversations\":[{\"from\":\"human\",\"value\":\"hi\"},{\"from\":\"gpt\",\"value\":\"square\"}]}"), spec, report)!;

        var log = new StringWriter();
        var trainable = new InternVLTrainable(model, LossReduction.Token) { Log = log };
        model.Train();
        using (var batch = FinetuneRunner.ToModelBatch(Collator.Pad([text, video1], padId: 0)))
        using (var loss = trainable.Loss(batch))
        {
            Assert.Equal(0f, loss.Item());                               // the whole micro-batch, as officially
            loss.Backward();
        }
        Assert.Equal(1, trainable.ImageTokenMismatchBatches);
        Assert.All(model.TrainableParameters().Where(p => p.Grad != null), p => Assert.True(p.Grad!.ToFloatArray().All(g => g == 0f)));
        using (var batch = FinetuneRunner.ToModelBatch(Collator.Pad([text, whole], padId: 0)))
        using (var loss = trainable.Loss(batch))
            Assert.True(loss.Item() > 0);
        Assert.Equal(1, trainable.ImageTokenMismatchBatches);
    }

    [Fact]
    public void Video_WhoseTagLacksItsNewline_IsAReportedBadRecord()
    {
        // "<video>" without "\n": the official replace finds nothing, no frame gets a tag, the preprocess assert drops it
        string dir = DataTestUtil.NewTempDir("mismatch");
        File.WriteAllBytes(Path.Combine(dir, "clip.mp4"), []);
        var report = new DataReport();
        const string line = "{\"video\":\"clip.mp4\",\"conversations\":[{\"from\":\"human\",\"value\":\"<video> What happens?\"},{\"from\":\"gpt\",\"value\":\"circle\"}]}";
        var s = new SampleBuilder(DataTestUtil.Tokenizer, DataTestUtil.SmallOptions(), new FakeVideo())
            .TryBuild(new RawLine(Encoding.UTF8.GetBytes(line), new SourceLocation("x.jsonl", 3, 0), 0), new DatasetSpec("d", dir, "x.jsonl"), report);
        Assert.Null(s);
        Assert.Equal(1, report.Count(BadRecordKind.ImageTagMismatch));
    }

    [Fact]
    public void TextOnlyBatch_WithItsDummyTile_GivesTheTextLoss_AndIsNotTruncated()
    {
        // pure-text samples carry one white tile with image_flags 0: it runs through the ViT and is discarded
        using var model = Load();
        model.Eval();
        using var _ = GradMode.NoGrad();
        long[] ids = [11, 42, 7, 199, 3, 56, 120, 9, 250, 77, 31];
        long[] labels = ids.Select((id, t) => t >= 5 ? id : -100L).ToArray();
        using var pixels = InternVLFixtures.Ref("vit300m", "pixel_values");
        using var firstTile = Ops.Narrow(pixels, 0, 0, 1);
        using var withTile = new InternVLBatch
        {
            InputIds = Tensor.FromArray(ids, 1, ids.Length), Labels = Tensor.FromArray(labels, 1, ids.Length),
            PixelValues = Ops.Clone(firstTile),
            ImageFlags = Tensor.FromArray(new long[] { 0 }, 1),
        };
        using var plain = new InternVLBatch { InputIds = Tensor.FromArray(ids, 1, ids.Length), Labels = Tensor.FromArray(labels, 1, ids.Length) };
        using var a = InternVLTraining.Loss(model, withTile, LossReduction.Square, out bool truncated);
        using var b = InternVLTraining.Loss(model, plain, LossReduction.Square);
        Assert.False(truncated);
        Assert.Equal(b.Item(), a.Item());
    }
}
