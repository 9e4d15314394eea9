using MMSharp.Training;
using MMSharp.Data;

namespace MMSharp.Tests.Data;

public class BatchingTests
{
    private static TrainingSample Sample(int length, int supervised, int tiles = 1, int tag = 0)
    {
        var ids = Enumerable.Range(0, length).Select(i => (long)(tag * 1000 + i + 1)).ToArray();
        var labels = ids.Select((id, i) => i >= length - supervised ? id : TrainingSample.IgnoreIndex).ToArray();
        return new TrainingSample(ids, labels, Enumerable.Repeat((float)tag, tiles * 3 * 2 * 2).ToArray(), tiles, 2,
            [tiles], Enumerable.Repeat(1, tiles).ToArray(), new SourceLocation("f", tag, 0), 0);
    }

    [Fact]
    public void Pad_RightPadsToLongest_WithPadIdIgnoreLabelsAndMask()
    {
        var b = Collator.Pad([Sample(5, 2, 1, 1), Sample(3, 1, 2, 2), Sample(7, 3, 1, 3)], padId: 99);
        Assert.Equal((3, 7), (b.B, b.T));
        Assert.Equal([1001, 1002, 1003, 1004, 1005, 99, 99], b.InputIds[..7]);
        Assert.Equal([TrainingSample.IgnoreIndex, TrainingSample.IgnoreIndex, TrainingSample.IgnoreIndex, 1004, 1005,
                      TrainingSample.IgnoreIndex, TrainingSample.IgnoreIndex], b.Labels[..7]);
        Assert.Equal([1, 1, 1, 0, 0, 0, 0], b.AttentionMask[7..14]);
        Assert.Equal([0, 1, 2, 0, 0, 0, 0], b.PositionIds[7..14]);
        Assert.Equal([0, 0, 0, -1, -1, -1, -1], b.SegmentIds[7..14]);
        Assert.Equal(15, b.TokenCount);
        Assert.Equal(4, b.TileCount);
        Assert.Equal([1, 2, 1], b.TilesPerImage);
        Assert.Equal(4 * 12, b.PixelValues.Length);
        Assert.Equal(2f, b.PixelValues[12]);   // second sample's tiles follow the first's
        using var t = b.InputIdsTensor();
        Assert.Equal([3, 7], t.Shape);
        using var px = b.PixelValuesTensor();
        Assert.Equal([4, 3, 2, 2], px.Shape);
        using var flags = b.ImageFlagsTensor();
        Assert.Equal([4], flags.Shape);
        Assert.Equal(8, Collator.Pad([Sample(5, 2)], 0, padToMultipleOf: 8).T);
    }

    [Fact]
    public void Pack_FirstFitRows_SegmentIdsAndRestartingPositions()
    {
        var samples = new[] { Sample(6, 2, tag: 1), Sample(5, 1, tag: 2), Sample(3, 3, tag: 3), Sample(4, 2, tag: 4) };
        var b = Collator.Pack(samples, maxTokens: 10, padId: 0);
        // Row 0: 6 + 3 (first fit) = 9; row 1: 5 + 4 = 9.
        Assert.Equal((2, 9), (b.B, b.T));
        Assert.Equal([0, 0, 0, 0, 0, 0, 1, 1, 1], b.SegmentIds[..9]);
        Assert.Equal([0, 1, 2, 3, 4, 5, 0, 1, 2], b.PositionIds[..9]);
        Assert.Equal([3001, 3002, 3003], b.InputIds[6..9]);
        Assert.Equal([0, 0, 0, 0, 0, 1, 1, 1, 1], b.SegmentIds[9..18]);
        Assert.Equal(["f:1", "f:3", "f:2", "f:4"], b.Samples.Select(s => s.Source.ToString()));
        Assert.Equal(1f, b.PixelValues[0]);
        Assert.Equal(3f, b.PixelValues[12]);   // tiles follow the packed order
    }

    [Theory]
    [InlineData(LossReduction.Token)]
    [InlineData(LossReduction.Sample)]
    [InlineData(LossReduction.Square)]
    public void LossWeights_FollowLen2Weight_AndAreZeroOnIgnoredLabels(LossReduction r)
    {
        var b = Collator.Pack([Sample(6, 4, tag: 1), Sample(5, 1, tag: 2)], 100, 0, r);
        float w4 = r switch { LossReduction.Token => 1, LossReduction.Sample => 0.25f, _ => 0.5f };
        Assert.Equal([0, 0, w4, w4, w4, w4, 0, 0, 0, 0, 1], b.LossWeights);
        Assert.Equal(0.0, LossWeighting.Len2Weight(0, r));
    }

    [Fact]
    public void RandomBatchSampler_EpochIsAPermutationOfActiveSamples()
    {
        var s = new RandomBatchSampler(23, 4, seed: 5);
        Assert.Equal(20, s.ActiveSize);
        var seen = Enumerable.Range(0, 5).SelectMany(_ => s.NextBatch()).ToList();
        Assert.Equal(20, seen.Distinct().Count());
        Assert.All(seen, i => Assert.InRange(i, 0, 22));
        Assert.Equal(1, s.Epoch);
        Assert.NotEqual(seen.Take(4), s.NextBatch());   // epoch 1 has another order
    }

    [Theory]
    [InlineData(0)]
    [InlineData(3)]
    [InlineData(5)]
    [InlineData(7)]
    public void RandomBatchSampler_ResumeFromConsumedSamplesGivesSameBatches(int k)
    {
        var a = new RandomBatchSampler(23, 4, seed: 11);
        var all = Enumerable.Range(0, 12).Select(_ => a.NextBatch()).ToList();
        var b = new RandomBatchSampler(23, 4, seed: 11);
        for (int i = 0; i < k; i++) b.NextBatch();
        var resumed = new RandomBatchSampler(23, 4, seed: 11, consumedSamples: b.ConsumedSamples);
        for (int i = k; i < 12; i++) Assert.Equal(all[i], resumed.NextBatch());
    }

    [Fact]
    public void RandomBatchSampler_DataParallelRanksSplitEachGlobalBatch()
    {
        var r0 = new RandomBatchSampler(20, 2, seed: 1, dataParallelSize: 2, rank: 0);
        var r1 = new RandomBatchSampler(20, 2, seed: 1, dataParallelSize: 2, rank: 1);
        var all = Enumerable.Range(0, 5).SelectMany(_ => r0.NextBatch().Concat(r1.NextBatch())).ToList();
        Assert.Equal(20, all.Distinct().Count());
        Assert.Equal(20, r0.ConsumedSamples);
    }

    [Fact]
    public void LengthGroupedSampler_MegabatchesSortedByLengthAndBalanced()
    {
        var lengths = Enumerable.Range(0, 24).Select(i => (i * 37) % 50 + 1).ToArray();
        var s = new LengthGroupedBatchSampler(lengths, microBatchSize: 3, groupSize: 2, seed: 4);
        var batches = Enumerable.Range(0, 8).Select(_ => s.NextBatch()).ToList();
        Assert.Equal(24, batches.SelectMany(b => b).Distinct().Count());
        for (int m = 0; m < 4; m++)
        {
            var mega = batches[2 * m].Concat(batches[2 * m + 1]).Select(i => lengths[i]).ToList();
            int longest = mega.Max();
            Assert.Equal(longest, lengths[batches[2 * m][0]]);   // the longest opens the first chunk
            long t0 = batches[2 * m].Sum(i => lengths[i]), t1 = batches[2 * m + 1].Sum(i => lengths[i]);
            Assert.True(Math.Abs(t0 - t1) <= longest, $"chunks {t0} vs {t1}");
        }
        var resumed = new LengthGroupedBatchSampler(lengths, 3, 2, seed: 4, consumedSamples: 9);
        Assert.Equal(batches[3], resumed.NextBatch());
    }

    [Fact]
    public void DataLoader_ResumeAfterKBatchesGivesSameFollowingBatches()
    {
        string dir = DataTestUtil.NewTempDir("loader");
        DataTestUtil.WriteLines(Path.Combine(dir, "d.jsonl"),
            Enumerable.Range(0, 30).Select(i => DataTestUtil.TextRecord($"r{i}", string.Join(" ", Enumerable.Repeat("circle", i % 7 + 1)), "red")));
        using var ds = new MixedDataset([DatasetSpec.FromJsonl(Path.Combine(dir, "d.jsonl"))]);
        var builder = new SampleBuilder(DataTestUtil.Tokenizer, DataTestUtil.SmallOptions());
        var collate = new CollateOptions(DataTestUtil.Tokenizer.PadTokenId!.Value);
        DataLoader Make(long consumed) => new(ds, builder, new RandomBatchSampler(ds.Count, 4, 9, consumedSamples: consumed), collate, new DataReport());
        var full = Make(0);
        var all = Enumerable.Range(0, 12).Select(_ => full.NextBatch()).ToList();
        var first = Make(0);
        for (int i = 0; i < 5; i++) first.NextBatch();
        var resumed = Make(first.ConsumedSamples);
        for (int i = 5; i < 12; i++)
        {
            var b = resumed.NextBatch();
            Assert.Equal(all[i].InputIds, b.InputIds);
            Assert.Equal(all[i].Labels, b.Labels);
        }
    }
}

public class SampleLengthsTests
{
    [Fact]
    public void Lengths_UseLengthField_ElseTokensPlusImageBudget_CachedByStringLength()
    {
        string dir = DataTestUtil.NewTempDir("len");
        DataTestUtil.WriteLines(Path.Combine(dir, "d.jsonl"),
        [
            "{\"length\": 77, \"conversations\": [{\"from\":\"human\",\"value\":\"x\"},{\"from\":\"gpt\",\"value\":\"y\"}]}",
            DataTestUtil.TextRecord("a", "What shape is this?", "circle"),
            DataTestUtil.TextRecord("b", "What shape is that?", "circle"),   // same string length: the cached value (quirk)
            "not json",
        ]);
        using var ds = new MixedDataset([DatasetSpec.FromJsonl(Path.Combine(dir, "d.jsonl"))]);
        var opts = DataTestUtil.SmallOptions();   // 4 tokens per tile, max patch 4, thumbnail: budget 4 * 5 = 20
        var lengths = SampleLengths.Compute(ds, DataTestUtil.Tokenizer, opts);
        int expected = DataTestUtil.Tokenizer.Encode("What shape is this?\ncircle").Length + 20;
        Assert.Equal([77, expected, expected, 0], lengths);
    }
}
