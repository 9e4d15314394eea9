using MMSharp.Data;

namespace MMSharp.Tests.Data;

public class DatasetMixingTests
{
    private static (string Meta, string Dir) MakeMeta(double rtA, double rtB, int linesA = 10, int linesB = 7)
    {
        string dir = DataTestUtil.NewTempDir("meta");
        DataTestUtil.WriteLines(Path.Combine(dir, "a.jsonl"), Enumerable.Range(0, linesA).Select(i => DataTestUtil.TextRecord($"a{i}")));
        // b has a blank line in the middle: not a record, but it counts for line numbers.
        var b = Enumerable.Range(0, linesB).Select(i => DataTestUtil.TextRecord($"b{i}")).ToList();
        b.Insert(3, "");
        DataTestUtil.WriteLines(Path.Combine(dir, "b.jsonl"), b);
        string meta = Path.Combine(dir, "meta.json");
        File.WriteAllText(meta, $$"""
            { "ds_a": {"root": "imgs", "annotation": "a.jsonl", "data_augment": false, "repeat_time": {{DatasetSpec.Invariant(rtA)}}, "length": {{linesA}}},
              "ds_b": {"root": "", "annotation": "b.jsonl", "data_augment": true, "repeat_time": {{DatasetSpec.Invariant(rtB)}}, "length": {{linesB}}, "max_dynamic_patch": 6} }
            """);
        return (meta, dir);
    }

    private static string IdOf(RawLine l) => MMSharp.Data.DataRecord.Parse(l.Bytes, l.Location).Id!;

    [Fact]
    public void LoadMeta_ReadsFieldsAndResolvesPathsAgainstMetaFolder()
    {
        var (meta, dir) = MakeMeta(1, 1);
        var specs = DatasetSpec.LoadMeta(meta);
        Assert.Equal(["ds_a", "ds_b"], specs.Select(s => s.Name));
        Assert.Equal(Path.Combine(dir, "a.jsonl"), specs[0].Annotation);
        Assert.Null(specs[0].MaxDynamicPatch);
        Assert.Equal(6, specs[1].MaxDynamicPatch);
        Assert.True(specs[1].DataAugment);
        Assert.Equal(10, specs[0].Length);
    }

    [Fact]
    public void RepeatTimeBelowOne_KeepsFirstIntFractionOfLines_AboveOneRepeats()
    {
        var (meta, _) = MakeMeta(0.35, 3);
        using var ds = new MixedDataset(DatasetSpec.LoadMeta(meta));
        Assert.Equal([3L, 21L], ds.CountsPerDataset);   // int(10*0.35) = 3; 7*3
        Assert.Equal(24, ds.Count);
        Assert.Equal(["a0", "a1", "a2"], Enumerable.Range(0, 3).Select(i => IdOf(ds.Read(i))));
        var b = Enumerable.Range(3, 21).Select(i => IdOf(ds.Read(i))).ToList();
        for (int k = 0; k < 21; k++) Assert.Equal($"b{k % 7}", b[k]);
        // Line numbers skip the blank line: b3 is on line 5.
        Assert.Equal(5, ds.Read(3 + 3).Location.Line);
        Assert.Equal(1, ds.Read(3 + 3).DatasetIndex);
    }

    [Fact]
    public void MaxSamples_CutsTheConcatenation()
    {
        var (meta, _) = MakeMeta(1, 2);
        using var ds = new MixedDataset(DatasetSpec.LoadMeta(meta), maxSamples: 12);
        Assert.Equal(12, ds.Count);
        Assert.Equal("b1", IdOf(ds.Read(11)));
        Assert.Throws<ArgumentOutOfRangeException>(() => ds.Read(12));
    }

    [Fact]
    public void RepeatTimeAboveOne_MustBeInteger()
    {
        var (meta, _) = MakeMeta(1, 1.5);
        var e = Assert.Throws<ArgumentException>(() => new MixedDataset(DatasetSpec.LoadMeta(meta)));
        Assert.Contains("ds_b", e.Message);
    }

    [Fact]
    public void LoadMeta_RejectsNonJsonlAnnotation()
    {
        string dir = DataTestUtil.NewTempDir("meta");
        string meta = Path.Combine(dir, "m.json");
        File.WriteAllText(meta, """{"x": {"root": "", "annotation": "x.json", "repeat_time": 1}}""");
        Assert.Contains("must be jsonl", Assert.Throws<InvalidDataException>(() => DatasetSpec.LoadMeta(meta)).Message);
    }

    [Fact]
    public void ValidationSplit_IsSeededDisjointAndComplete()
    {
        var (t1, v1) = ValidationSplit.Split(101, 0.1, 7);
        var (t2, v2) = ValidationSplit.Split(101, 0.1, 7);
        var (_, v3) = ValidationSplit.Split(101, 0.1, 8);
        Assert.Equal(v1, v2); Assert.Equal(t1, t2);
        Assert.NotEqual(v1, v3);
        Assert.Equal(10, v1.Length);
        Assert.Equal(Enumerable.Range(0, 101), t1.Concat(v1).Order());
    }
}
