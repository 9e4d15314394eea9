using MMSharp.Data;

namespace MMSharp.Tests.Data;

public class StreamingReaderTests
{
    private static List<DatasetSpec> Specs(out string dir)
    {
        dir = DataTestUtil.NewTempDir("stream");
        var a = Enumerable.Range(0, 9).Select(i => DataTestUtil.TextRecord($"a{i}")).ToList();
        a.Insert(4, "   ");
        DataTestUtil.WriteLines(Path.Combine(dir, "a.jsonl"), a);
        DataTestUtil.WriteLines(Path.Combine(dir, "b.jsonl"), Enumerable.Range(0, 4).Select(i => DataTestUtil.TextRecord($"b{i}")));
        return [new DatasetSpec("a", dir, Path.Combine(dir, "a.jsonl"), 0.5), new DatasetSpec("b", dir, Path.Combine(dir, "b.jsonl"), 2)];
    }

    private static List<string> Take(StreamingJsonlReader r, int n)
    {
        var ids = new List<string>();
        for (int i = 0; i < n; i++)
        {
            Assert.True(r.TryNext(out var line));
            ids.Add(MMSharp.Data.DataRecord.Parse(line.Bytes, line.Location).Id!);
        }
        return ids;
    }

    [Fact]
    public void Streaming_AppliesRepeatTimeAndWrapsEpochs()
    {
        using var r = new StreamingJsonlReader(Specs(out _));
        // a: int(9*0.5) = 4 lines; b: 4 lines twice; then epoch 1 starts again at a0.
        Assert.Equal(["a0", "a1", "a2", "a3", "b0", "b1", "b2", "b3", "b0", "b1", "b2", "b3", "a0", "a1"], Take(r, 14));
        Assert.Equal(1, r.Position.Epoch);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(9)]
    [InlineData(13)]
    public void Streaming_ResumesAtExactSample(int consumed)
    {
        var specs = Specs(out _);
        List<string> expected;
        using (var r = new StreamingJsonlReader(specs)) expected = Take(r, consumed + 10).Skip(consumed).ToList();

        StreamPosition saved;
        using (var r = new StreamingJsonlReader(specs)) { Take(r, consumed); saved = StreamPosition.FromJson(r.Position.ToJson()); }
        using var resumed = new StreamingJsonlReader(specs, saved);
        Assert.Equal(expected, Take(resumed, 10));
    }

    [Fact]
    public void Streaming_MaxSamplesEndsEachEpoch()
    {
        using var r = new StreamingJsonlReader(Specs(out _), maxSamples: 5);
        Assert.Equal(["a0", "a1", "a2", "a3", "b0", "a0", "a1"], Take(r, 7));
    }

    [Fact]
    public void StreamingLoader_ResumedBatchesEqualUninterrupted()
    {
        var specs = Specs(out string dir);
        // A bad line in b: skipped and reported, the stream continues.
        File.AppendAllText(Path.Combine(dir, "b.jsonl"), "{not json\n");
        var builder = new SampleBuilder(DataTestUtil.Tokenizer, DataTestUtil.SmallOptions());
        var collate = new CollateOptions(DataTestUtil.Tokenizer.PadTokenId!.Value);
        var report = new DataReport();
        List<long[]> all;
        using (var r = new StreamingJsonlReader(specs))
        {
            var loader = new StreamingDataLoader(r, builder, 3, collate, report);
            all = Enumerable.Range(0, 8).Select(_ => loader.NextBatch().InputIds).ToList();
        }
        StreamPosition pos;
        using (var r = new StreamingJsonlReader(specs))
        {
            var loader = new StreamingDataLoader(r, builder, 3, collate, new DataReport());
            for (int i = 0; i < 3; i++) loader.NextBatch();
            pos = loader.Position;
        }
        using var r2 = new StreamingJsonlReader(specs, pos);
        var resumed = new StreamingDataLoader(r2, builder, 3, collate, new DataReport());
        for (int i = 3; i < 8; i++) Assert.Equal(all[i], resumed.NextBatch().InputIds);
        Assert.Equal(1, report.Count(BadRecordKind.MalformedJson));   // reported once although met in several epochs
        Assert.Equal(5, report.Entries[0].Location.Line);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(7)]
    [InlineData(15)]
    public void BlockShuffle_EveryRecordOncePerEpoch_AndResumesExactly(int consumed)
    {
        var specs = Specs(out _);
        List<string> all;
        using (var r = new StreamingJsonlReader(specs, shuffleBlock: 3, seed: 9)) all = Take(r, 24);
        // Epoch = 4 lines of a + 8 of b; each epoch holds every record the same number of times as unshuffled.
        string[] plain = ["a0", "a1", "a2", "a3", "b0", "b1", "b2", "b3", "b0", "b1", "b2", "b3"];
        Assert.Equal(plain.Order(), all.Take(12).Order());
        Assert.Equal(plain.Order(), all.Skip(12).Order());
        Assert.NotEqual(plain, all.Take(12));
        Assert.NotEqual(all.Take(12), all.Skip(12));   // another permutation in the next epoch

        StreamPosition saved;
        using (var r = new StreamingJsonlReader(specs, shuffleBlock: 3, seed: 9)) { Take(r, consumed); saved = StreamPosition.FromJson(r.Position.ToJson()); }
        using var resumed = new StreamingJsonlReader(specs, saved, shuffleBlock: 3, seed: 9);
        Assert.Equal(all.Skip(consumed).Take(8), Take(resumed, 8));
    }
}
