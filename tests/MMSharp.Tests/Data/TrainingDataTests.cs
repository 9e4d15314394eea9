using MMSharp.Data;

namespace MMSharp.Tests.Data;

public class TrainingDataTests
{
    private static readonly Lazy<string> Shapes = new(() =>
    {
        string dir = DataTestUtil.NewTempDir("td");
        ShapesDataset.Generate(dir, 40, 6, seed: 2);
        return dir;
    });

    private static DataOptions Options(bool streaming = false, bool group = false, int? pack = null, double valRate = 0, string? valData = null) => new()
    {
        Data = streaming ? Path.Combine(Shapes.Value, "train.jsonl") : Path.Combine(Shapes.Value, "meta.json"),
        ValData = valData, ValRate = valRate, Seed = 3, MicroBatchSize = 4, Streaming = streaming, ShuffleBlock = streaming ? 16 : 0, GroupByLength = group, GroupSize = 2,
        PackMaxTokens = pack, Builder = new SampleBuilderOptions { ImageSize = 56, NumImageToken = 4, MaxDynamicPatch = 1 },
    };

    [Theory]
    [InlineData(false, false, null)]
    [InlineData(true, false, null)]
    [InlineData(false, true, null)]
    [InlineData(false, false, 80)]
    public void RestoredStateReplaysTheSameBatches(bool streaming, bool group, int? pack)
    {
        using var a = TrainingData.Open(Options(streaming, group, pack), DataTestUtil.Tokenizer);
        var all = Enumerable.Range(0, 14).Select(_ => a.NextBatch()).ToList();   // crosses an epoch (40 records, 10 batches)
        using var b = TrainingData.Open(Options(streaming, group, pack), DataTestUtil.Tokenizer);
        for (int i = 0; i < 6; i++) b.NextBatch();
        var state = System.Text.Json.Nodes.JsonNode.Parse(b.GetState().ToJsonString())!;   // as a checkpoint stores it
        using var c = TrainingData.Open(Options(streaming, group, pack), DataTestUtil.Tokenizer);
        c.SetState(state);
        for (int i = 6; i < 14; i++)
        {
            var x = c.NextBatch();
            Assert.Equal(all[i].InputIds, x.InputIds);
            Assert.Equal(all[i].SegmentIds, x.SegmentIds);
            Assert.Equal(all[i].PixelValues, x.PixelValues);
        }
        if (pack != null) Assert.True(all.All(x => x.T <= 80) && all.Any(x => x.B < 4));
    }

    [Fact]
    public void ValRateAndValData_GiveValidationBatches()
    {
        using var split = TrainingData.Open(Options(valRate: 0.2), DataTestUtil.Tokenizer);
        Assert.Equal((32, 8), (split.TrainCount!.Value, split.ValCount));
        Assert.Equal(2, split.ValidationBatches().Count());
        Assert.Single(split.ValidationBatches(1));

        using var file = TrainingData.Open(Options(valData: Path.Combine(Shapes.Value, "val.jsonl")), DataTestUtil.Tokenizer);
        Assert.Equal(6, file.ValCount);
        Assert.Equal([4, 2], file.ValidationBatches().Select(b => b.B));
        Assert.Throws<ArgumentException>(() => TrainingData.Open(Options(streaming: true, valRate: 0.1), DataTestUtil.Tokenizer));

        // The trainer's protocol: save, evaluate some batches, restore -> the same batches next time; wraps at the end.
        var val = file.Validation!;
        var start = val.GetState();
        var first = new[] { val.Next(), val.Next() };
        Assert.Equal(["val_000004", "val_000005", "val_000000", "val_000001"],
            first[1].Samples.Select(x => x.Source.Line).Select(l => $"val_{l - 1:D6}"));   // 6 records, batches of 4: wraps
        val.SetState(start);
        Assert.Equal(first[0].InputIds, val.Next().InputIds);
        Assert.Equal(first[1].InputIds, val.Next().InputIds);
        Assert.Null(TrainingData.Open(Options(), DataTestUtil.Tokenizer).Validation);
    }
}
