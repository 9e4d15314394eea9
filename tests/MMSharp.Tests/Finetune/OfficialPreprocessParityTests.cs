using System.Text;
using System.Text.Json;
using MMSharp.Data;
using MMSharp.Engine;
using MMSharp.Engine.IO;
using MMSharp.Models.InternVL;
using MMSharp.Text;
using MMSharp.Tests.Data;
using MMSharp.Training;
using MMSharp.Vision;
using Xunit.Abstractions;

namespace MMSharp.Tests.Finetune;

/// <summary>
/// Sample assembly, label masking and the loss reductions against an independent restatement of the official code
/// (tests/fixtures/preprocess: make_fixtures.mjs with transformers.js and the real Qwen2.5 vocabulary for ids and labels,
/// make_loss_fixtures.py with PyTorch for the losses and gradients).
/// </summary>
public sealed class OfficialPreprocessParityTests(ITestOutputHelper output)
{
    // ---------------------------------------------------------------- fixtures

    static readonly string Root = FindRoot();
    static readonly Lazy<JsonDocument> Expected = new(() => JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Root, "expected.json"))));
    // The trimmed vocabulary written with the fixtures; MMSHARP_QWEN2_TOKENIZER_DIR (the full tokenizer, see the README) overrides it.
    static readonly Lazy<Qwen2Tokenizer> Tok = new(() => Qwen2Tokenizer.FromDirectory(
        Environment.GetEnvironmentVariable("MMSHARP_QWEN2_TOKENIZER_DIR") is { Length: > 0 } full ? full : Path.Combine(Root, "qwen2_5_internvl_trimmed")));

    static string FindRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
        {
            var p = Path.Combine(d.FullName, "tests", "fixtures", "preprocess");
            if (File.Exists(Path.Combine(p, "expected.json"))) return p;
        }
        throw new DirectoryNotFoundException("tests/fixtures/preprocess/expected.json not found above " + AppContext.BaseDirectory);
    }

    static JsonElement Case(string name) =>
        Expected.Value.RootElement.GetProperty("cases").EnumerateArray().Single(c => c.GetProperty("name").GetString() == name);

    public static IEnumerable<object[]> CaseNames() =>
        Expected.Value.RootElement.GetProperty("cases").EnumerateArray().Select(c => new object[] { c.GetProperty("name").GetString()! });

    static long[] Longs(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt64()).ToArray();
    static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();

    static Tensor Npy_(string name) => Npy.Read(Path.Combine(Root, name));

    sealed class FakeVideo(int frames) : IVideoFrameSource
    {
        public IVideoClip Open(string path) => new Clip(frames);
        sealed class Clip(int frames) : IVideoClip
        {
            public int FrameCount => frames;
            public double Fps => 10;
            public RgbImage ReadFrame(int index) => new(32, 24, Enumerable.Repeat((byte)(40 * index), 32 * 24 * 3).ToArray());
            public void Dispose() { }
        }
    }

    /// <summary>The case's record as the data pipeline sees it: its images written as PNGs of the fixture's sizes, its video as a fake.</summary>
    static (SampleBuilder Builder, DataRecord Record, DatasetSpec Spec) Setup(JsonElement c)
    {
        string dir = DataTestUtil.NewTempDir("official");
        var record = DataRecord.Parse(Encoding.UTF8.GetBytes(c.GetProperty("record").GetRawText()), new SourceLocation("fixture.jsonl", 1, 0));
        var sizes = c.GetProperty("image_sizes").EnumerateArray().Select(s => Ints(s)).ToArray();
        for (int i = 0; i < record.Images.Count; i++)
            DataTestUtil.SavePng(Path.Combine(dir, record.Images[i]), sizes[i][0], sizes[i][1], (byte)(60 * i), 128, 200);
        int frames = c.GetProperty("video_frames").GetInt32();
        if (record.Video != null) File.WriteAllBytes(Path.Combine(dir, record.Video), []);
        var options = new SampleBuilderOptions
        {
            ImageSize = Expected.Value.RootElement.GetProperty("image_size").GetInt32(),
            NumImageToken = Expected.Value.RootElement.GetProperty("num_image_token").GetInt32(),
            MaxDynamicPatch = c.GetProperty("max_dynamic_patch").GetInt32(),
            MaxSeqLength = c.GetProperty("max_seq_length").GetInt32(),
            MinNumFrame = Math.Max(1, frames), MaxNumFrame = Math.Max(1, frames),
        };
        return (new SampleBuilder(Tok.Value, options, new FakeVideo(8)), record, new DatasetSpec("official", dir, Path.Combine(dir, "fixture.jsonl")));
    }

    static void AssertSameIds(long[] expected, long[] actual, string what)
    {
        int n = Math.Min(expected.Length, actual.Length), at = 0;
        while (at < n && expected[at] == actual[at]) at++;
        Assert.True(at == expected.Length && at == actual.Length,
            $"{what}: length {actual.Length} (expected {expected.Length}), first difference at {at}: " +
            $"{(at < actual.Length ? actual[at] : "end")} vs {(at < expected.Length ? expected[at] : "end")}");
    }

    // ---------------------------------------------------------------- ids and labels

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void SampleBuilder_GivesOfficialIdsAndLabels(string name)
    {
        var c = Case(name);
        var (builder, record, spec) = Setup(c);
        var ids = Longs(c.GetProperty("input_ids"));
        var labels = Longs(c.GetProperty("labels"));
        var tiles = Ints(c.GetProperty("tiles_per_image"));
        if (c.GetProperty("dropped").GetBoolean())
        {
            // the official dataset asserts on the </img> count and retries another index; we skip and report the record
            var e = Assert.Throws<BadRecordException>(() => builder.Build(record, spec));
            Assert.Equal(BadRecordKind.ImageTokensTruncated, e.Kind);
            var tokenList = Ints(c.GetProperty("num_image_token_list"));
            var s = InternVLPreprocessor.Preprocess(record.Conversations, Tok.Value, tokenList, tokenList.Length,
                modelMaxLength: c.GetProperty("max_seq_length").GetInt32());
            AssertSameIds(ids, Array.ConvertAll(s.InputIds, x => (long)x), name + " input_ids");
            AssertSameIds(labels, Array.ConvertAll(s.Labels, x => (long)x), name + " labels");
            return;
        }
        var sample = builder.Build(record, spec);
        AssertSameIds(ids, sample.InputIds, name + " input_ids");
        AssertSameIds(labels, sample.Labels, name + " labels");
        Assert.Equal(tiles, sample.TilesPerImage);
        Assert.Equal(c.GetProperty("kind").GetString() == "text" ? 1 : tiles.Sum(), sample.TileCount);
        int ctx = Tok.Value.RequireTokenId(InternVLPrompt.ImageContextToken);
        Assert.Equal(c.GetProperty("context_tokens_kept").GetInt32(), sample.InputIds.Count(x => x == ctx));
    }

    [Fact]
    public void Fixture_CoversTheCasesTheIssueNames()
    {
        var cases = Expected.Value.RootElement.GetProperty("cases").EnumerateArray().ToList();
        bool Has(Func<JsonElement, bool> p) => cases.Any(p);
        string Kind(JsonElement c) => c.GetProperty("kind").GetString()!;
        bool HasSystem(JsonElement c) => c.GetProperty("record").GetProperty("conversations")[0].GetProperty("from").GetString() == "system";
        int Turns(JsonElement c) => c.GetProperty("record").GetProperty("conversations").GetArrayLength();
        Assert.True(Has(HasSystem) && Has(c => !HasSystem(c)));
        Assert.True(Has(c => Turns(c) >= 5));
        Assert.True(Has(c => Kind(c) == "image" && Ints(c.GetProperty("tiles_per_image"))[0] == 1));
        Assert.True(Has(c => Kind(c) == "image" && Ints(c.GetProperty("tiles_per_image"))[0] > 1));
        Assert.True(Has(c => Kind(c) == "multi_image") && Has(c => Kind(c) == "video") && Has(c => Kind(c) == "text"));
        Assert.True(Has(c => c.GetProperty("record").GetRawText().Contains("\\u4f60") || c.GetProperty("record").ToString().Contains('你')));
        Assert.True(Has(c => c.GetProperty("dropped").GetBoolean()));
        Assert.True(Has(c => !c.GetProperty("dropped").GetBoolean() && Kind(c) == "video"
            && c.GetProperty("context_tokens_kept").GetInt32() < c.GetProperty("context_tokens_expected").GetInt32()));
        Assert.True(Has(c => Kind(c) == "text" && c.GetProperty("untruncated_length").GetInt32() > c.GetProperty("input_ids").GetArrayLength()));
    }

    // ---------------------------------------------------------------- loss reductions

    static readonly Lazy<JsonDocument> LossExpected = new(() => JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Root, "loss_expected.json"))));

    static List<TrainingSample> LossSamples()
    {
        var names = LossExpected.Value.RootElement.GetProperty("samples").EnumerateArray().Select(e => e.GetString()!).ToList();
        return names.Select(n => { var (b, r, s) = Setup(Case(n)); return b.Build(r, s); }).ToList();
    }

    static int Fold => LossExpected.Value.RootElement.GetProperty("vocab_fold").GetInt32();
    static long[] Folded(long[] a) => Array.ConvertAll(a, x => x == TrainingSample.IgnoreIndex ? x : x % Fold);
    static double ExpectedLoss(string key) => LossExpected.Value.RootElement.GetProperty("losses").GetProperty(key).GetDouble();
    static string Key(LossReduction r) => r.ToString().ToLowerInvariant();

    public static IEnumerable<object[]> Reductions() => [[LossReduction.Token], [LossReduction.Sample], [LossReduction.Square]];

    [Theory]
    [MemberData(nameof(Reductions))]
    public void Collator_GivesOfficialLabelsAndLossWeights(LossReduction reduction)
    {
        var samples = LossSamples();

        var padded = Collator.Pad(samples, padId: 0, reduction: reduction);   // concat_pad_data_collator, pad id 0
        using (var ids = Npy_("input_ids_padded.npy"))
        using (var labels = Npy_("labels_padded.npy"))
        using (var w = Npy_("loss_weight_padded_" + Key(reduction) + ".npy"))
        {
            Assert.Equal(new[] { padded.B, padded.T }, ids.Shape);
            AssertSameIds(ids.ToLongArray(), Folded(padded.InputIds), "padded input_ids");
            AssertSameIds(labels.ToLongArray(), Folded(padded.Labels), "padded labels");
            Assert.Equal(w.ToFloatArray(), padded.LossWeights);                 // bit-exact float32 weights
        }

        var packed = Collator.Pack(samples, maxTokens: 100_000, padId: 0, reduction: reduction);   // one row, no padding
        using (var labels = Npy_("labels_packed.npy"))
        using (var w = Npy_("loss_weight_packed_" + Key(reduction) + ".npy"))
        {
            Assert.Equal(1, packed.B);
            var lab = labels.ToLongArray();
            var wt = w.ToFloatArray();
            AssertSameIds(lab[..packed.T], Folded(packed.Labels), "packed labels");
            Assert.Equal(wt[..packed.T], packed.LossWeights);
            Assert.All(lab[packed.T..], l => Assert.Equal(TrainingSample.IgnoreIndex, l));   // the fixture's max_item_length padding
            Assert.All(wt[packed.T..], x => Assert.Equal(0f, x));
            var cu = Ints(LossExpected.Value.RootElement.GetProperty("cu_seqlens_packed")[0]);
            var weights = LossWeighting.PackedTokenWeights(lab, cu, reduction);
            Assert.Equal(wt, weights);
        }
    }

    /// <summary>(logits file, labels file, cu_seqlens or null, expected-loss key, gradient file).</summary>
    public static IEnumerable<object[]> LossCases()
    {
        yield return ["padded", false, LossReduction.Token, "padded_plain_mean", "grad_padded_plain_mean.npy"];   // CrossEntropyLoss() mean
        yield return ["padded", true, LossReduction.Token, "padded_token", "grad_padded_plain_mean.npy"];          // loss_weight path, same value
        foreach (var r in new[] { LossReduction.Sample, LossReduction.Square })
        {
            yield return ["padded", false, r, "padded_" + Key(r), $"grad_padded_{Key(r)}.npy"];   // each row its own sample
            yield return ["padded", true, r, "padded_" + Key(r), $"grad_padded_{Key(r)}.npy"];
        }
        foreach (var r in new[] { LossReduction.Token, LossReduction.Sample, LossReduction.Square })
            yield return ["packed", true, r, "packed_" + Key(r), $"grad_packed_{Key(r)}.npy"];
    }

    [Theory]
    [MemberData(nameof(LossCases))]
    public void LossAndGradient_MatchPyTorch(string layout, bool withCuSeqlens, LossReduction reduction, string lossKey, string gradFile)
    {
        var logitsData = Npy_($"logits_{layout}.npy");
        using var labels = Npy_($"labels_{layout}.npy");
        using var gradRef = Npy_(gradFile);
        int[][]? cu = withCuSeqlens
            ? LossExpected.Value.RootElement.GetProperty($"cu_seqlens_{layout}").EnumerateArray().Select(Ints).ToArray()
            : null;
        using var logits = logitsData;
        logits.RequiresGrad = true;
        using var loss = InternVLTraining.LossFromLogits(logits, labels, cu, reduction);
        double expected = ExpectedLoss(lossKey);
        double rel = Math.Abs(loss.Item() - expected) / Math.Abs(expected);
        loss.Backward();
        var grad = logits.Grad!;
        var g = grad.ToFloatArray();
        var e = gradRef.ToFloatArray();
        double maxDiff = 0, maxRef = 0;
        for (int i = 0; i < g.Length; i++) { maxDiff = Math.Max(maxDiff, Math.Abs((double)g[i] - e[i])); maxRef = Math.Max(maxRef, Math.Abs(e[i])); }
        output.WriteLine($"{layout} {reduction} cu={withCuSeqlens}: loss {loss.Item():R} vs torch {expected:R} (rel {rel:E2}); grad max |diff| {maxDiff:E2} (max |grad| {maxRef:E2})");
        Assert.True(rel <= 1e-5, $"loss {loss.Item()} vs {expected}: rel {rel}");
        Assert.True(maxDiff <= 1e-5 * maxRef, $"grad max diff {maxDiff} vs max |grad| {maxRef}");
    }

    // ---------------------------------------------------------------- video frame choice

    public static IEnumerable<object[]> FrameCases()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Root, "frame_intervals.json")));
        return doc.RootElement.EnumerateArray().Select(e => new object[]
        {
            e.GetProperty("num_frames").GetInt32(), e.GetProperty("vlen").GetInt32(), Ints(e.GetProperty("intervals")),
            e.GetProperty("any_empty").GetBoolean(), e.GetProperty("length").GetInt32(),
        }).ToList();
    }

    [Theory]
    [MemberData(nameof(FrameCases))]
    public void RandomFrameIndices_FollowTheOfficialIntervals(int numFrames, int vlen, int[] intervals, bool anyEmpty, int length)
    {
        int acc = intervals.Length - 1;
        var lo = Enumerable.Repeat(int.MaxValue, acc).ToArray();
        var hi = Enumerable.Repeat(int.MinValue, acc).ToArray();
        for (ulong seed = 1; seed <= 300; seed++)
        {
            var idx = SampleBuilder.RandomFrameIndices(numFrames, vlen, 10, null, new Rng(seed));
            Assert.Equal(length, idx.Length);
            for (int i = acc; i < length; i++) Assert.Equal(idx[acc - 1], idx[i]);   // padded with the last frame
            for (int i = 0; i < acc; i++)
            {
                Assert.InRange(idx[i], 0, vlen - 1);
                if (i > 0) Assert.True(idx[i] > idx[i - 1], "distinct and increasing");
                lo[i] = Math.Min(lo[i], idx[i]);
                hi[i] = Math.Max(hi[i], idx[i]);
            }
        }
        if (anyEmpty) return;   // the official permutation fallback: only sortedness and range are defined
        for (int i = 0; i < acc; i++)
        {
            // random.choice(range(a, b - 1)) over the numpy linspace bounds: both ends are reached over 300 seeds
            Assert.Equal(intervals[i], lo[i]);
            Assert.Equal(intervals[i + 1] - 2, hi[i]);
        }
    }
}
