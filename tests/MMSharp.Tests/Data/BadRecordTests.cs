using MMSharp.Data;

namespace MMSharp.Tests.Data;

public class BadRecordTests
{
    /// <summary>One JSONL holding a good record and one record of every bad kind, each on a known line.</summary>
    private static (DatasetSpec Spec, Dictionary<BadRecordKind, int> LineOf) MakeFile(out string dir)
    {
        dir = DataTestUtil.NewTempDir("bad");
        DataTestUtil.SavePng(Path.Combine(dir, "ok.png"), 40, 30, 200, 10, 10);
        File.WriteAllBytes(Path.Combine(dir, "broken.png"), [0x89, 0x50, 0x4E, 0x47, 1, 2, 3]);
        string longText = string.Join(" ", Enumerable.Repeat("circle square", 200));
        var lines = new List<(string Line, BadRecordKind? Kind)>
        {
            (DataTestUtil.ImageRecord("good", "ok.png"), null),
            ("{\"id\": \"cut\", \"conversations\": [", BadRecordKind.MalformedJson),
            (DataTestUtil.ImageRecord("missing", "nope.png"), BadRecordKind.MissingImage),
            (DataTestUtil.ImageRecord("broken", "broken.png"), BadRecordKind.UndecodableImage),
            (DataTestUtil.ImageRecord("tags", "ok.png", "<image>\\n<image>\\nWhat?"), BadRecordKind.ImageTagMismatch),
            ("{\"id\":\"empty\",\"conversations\":[]}", BadRecordKind.EmptyConversation),
            ("{\"id\":\"nogpt\",\"conversations\":[{\"from\":\"human\",\"value\":\"hi\"}]}", BadRecordKind.EmptyConversation),
            ("{\"id\":\"role\",\"conversations\":[{\"from\":\"bot\",\"value\":\"hi\"},{\"from\":\"gpt\",\"value\":\"x\"}]}", BadRecordKind.UnknownRole),
            (DataTestUtil.ImageRecord("long", "ok.png", longText + " <image>"), BadRecordKind.ImageTokensTruncated),
            ("{\"id\":\"vid\",\"video\":\"clip.mp4\",\"conversations\":[{\"from\":\"human\",\"value\":\"<video>\\nWhat?\"},{\"from\":\"gpt\",\"value\":\"red\"}]}",
                BadRecordKind.MissingImage),
            ("[1, 2]", BadRecordKind.MalformedJson),
            (DataTestUtil.TextRecord("good2"), null),
        };
        DataTestUtil.WriteLines(Path.Combine(dir, "data.jsonl"), lines.Select(l => l.Line));
        var lineOf = new Dictionary<BadRecordKind, int>();
        for (int i = 0; i < lines.Count; i++) if (lines[i].Kind is BadRecordKind k) lineOf.TryAdd(k, i + 1);
        return (DatasetSpec.FromJsonl(Path.Combine(dir, "data.jsonl")), lineOf);
    }

    [Fact]
    public void EveryBadKind_IsSkippedAndReportedWithFileAndLine()
    {
        var (spec, lineOf) = MakeFile(out _);
        using var ds = new MixedDataset([spec]);
        var builder = new SampleBuilder(DataTestUtil.Tokenizer, DataTestUtil.SmallOptions(maxSeq: 300));
        var report = new DataReport();
        var good = new List<string>();
        for (int i = 0; i < ds.Count; i++)
        {
            var s = builder.TryBuild(ds.Read(i), spec, report);
            if (s != null) good.Add(s.Source.ToString());
        }
        Assert.Equal([$"{spec.Annotation}:1", $"{spec.Annotation}:12"], good);
        Assert.Equal(10, report.Total);
        foreach (var (kind, line) in lineOf)
        {
            var e = report.Entries.First(x => x.Kind == kind);
            Assert.Equal(spec.Annotation, e.Location.File);
            Assert.Equal(line, e.Location.Line);
            Assert.Contains($"{spec.Annotation}:{line}: {kind}", report.ToString());
        }
        Assert.Equal(2, report.Count(BadRecordKind.EmptyConversation));
        Assert.Equal(2, report.Count(BadRecordKind.MalformedJson));
    }

    [Fact]
    public void Report_KeepsFirstTwentyInFullThenCounts()
    {
        var report = new DataReport();
        for (int i = 1; i <= 25; i++) report.Add(BadRecordKind.MissingImage, new SourceLocation("f.jsonl", i, 0), "gone");
        Assert.False(report.Add(BadRecordKind.MissingImage, new SourceLocation("f.jsonl", 3, 0), "again"));
        Assert.Equal(25, report.Total);
        Assert.Equal(DataReport.MaxDetailed, report.Entries.Count);
        string text = report.ToString();
        Assert.Contains("f.jsonl:20: MissingImage", text);
        Assert.DoesNotContain("f.jsonl:21:", text);
        Assert.Contains("... and 5 more", text);
        Assert.Contains("MissingImage: 25", text);
    }

    [Fact]
    public void DataLoader_ReplacesBadRecordsAndNeverStops()
    {
        var (spec, _) = MakeFile(out _);
        using var ds = new MixedDataset([spec]);
        var builder = new SampleBuilder(DataTestUtil.Tokenizer, DataTestUtil.SmallOptions(maxSeq: 300));
        var report = new DataReport();
        var loader = new DataLoader(ds, builder, new RandomBatchSampler(ds.Count, 4, seed: 3), new CollateOptions(0), report);
        for (int i = 0; i < 6; i++)
        {
            var b = loader.NextBatch();
            Assert.Equal(4, b.B);
            Assert.All(b.Samples, s => Assert.True(s.Source.Line is 1 or 12));
        }
        Assert.True(report.Total > 0);
    }
}
