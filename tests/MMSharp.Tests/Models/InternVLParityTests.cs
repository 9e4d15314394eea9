using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.Models.InternVL;
using Xunit.Abstractions;

namespace MMSharp.Tests.Models;

/// <summary>
/// Golden-state parity with the PyTorch reference of make_fixtures.py (fp32 with the checkpoint's bf16 weights):
/// every stage compared by max |Δ| / max |ref|, and greedy ids with and without the KV cache.
/// </summary>
public sealed class InternVLParityTests(ITestOutputHelper output)
{
    const double Tol = 1e-4;

    [Theory]
    [InlineData("vit300m")]
    [InlineData("vit6b")]
    public void Forward_MatchesPyTorchReference_AtEveryStage(string fixture)
    {
        using var model = InternVLChatModel.FromPretrained(InternVLFixtures.Dir(fixture));
        Assert.Equal(InternVLFixtures.ImgContext, model.ImgContextTokenId);
        using var ids = InternVLFixtures.Ref(fixture, "input_ids");
        using var pixels = InternVLFixtures.Ref(fixture, "pixel_values");
        using var pixelsRect = InternVLFixtures.Ref(fixture, "pixel_values_rect");
        using var expVit = InternVLFixtures.Ref(fixture, "vit_last_hidden_state");
        using var expVitRect = InternVLFixtures.Ref(fixture, "vit_last_hidden_state_rect");
        using var expFeat = InternVLFixtures.Ref(fixture, "vision_features");
        using var expLogits = InternVLFixtures.Ref(fixture, "logits");
        using var _ = GradMode.NoGrad();

        using var vit = model.VisionModel.Forward(pixels);
        using var vitRect = model.VisionModel.Forward(pixelsRect);
        using var feat = model.ExtractFeature(pixels);
        using var logits = model.Forward(ids, pixels);

        double eVit = InternVLFixtures.RelErr(vit, expVit);
        double eRect = InternVLFixtures.RelErr(vitRect, expVitRect);
        double eFeat = InternVLFixtures.RelErr(feat, expFeat);
        double eLogits = InternVLFixtures.RelErr(logits, expLogits);
        output.WriteLine($"{fixture}: max rel err vit_last_hidden_state {eVit:E2}, vit (70x84, interpolated pos) {eRect:E2}, vision_features {eFeat:E2}, logits {eLogits:E2}");
        Assert.True(eVit <= Tol, $"vit {eVit}");
        Assert.True(eRect <= Tol, $"vit rect {eRect}");
        Assert.True(eFeat <= Tol, $"features {eFeat}");
        Assert.True(eLogits <= Tol, $"logits {eLogits}");
    }

    [Theory]
    [InlineData("vit300m", true)]
    [InlineData("vit300m", false)]
    [InlineData("vit6b", false)]
    public void GenerateGreedy_MatchesReferenceIds(string fixture, bool useCache)
    {
        using var model = InternVLChatModel.FromPretrained(InternVLFixtures.Dir(fixture));
        using var ids = InternVLFixtures.Ref(fixture, "input_ids");
        using var pixels = InternVLFixtures.Ref(fixture, "pixel_values");
        using var expected = InternVLFixtures.Ref(fixture, "greedy_ids");
        var got = model.GenerateGreedy(ids, pixels, (int)expected.NumEl, eosTokenId: null, useCache: useCache);
        output.WriteLine($"{fixture} cache={useCache}: {string.Join(",", got)}");
        Assert.Equal(expected.ToLongArray(), got);
    }

    [Fact]
    public void GenerateGreedy_WithDynamicRopeAndCache_StillDecodesTheSameIds()
    {
        // vit6b has max_position_embeddings 16 < sequence length: HF recomputes the NTK base per call, and with a cache
        // the earlier keys keep the base they were rotated with (as in HF). Here the ids still agree.
        using var model = InternVLChatModel.FromPretrained(InternVLFixtures.Dir("vit6b"));
        using var ids = InternVLFixtures.Ref("vit6b", "input_ids");
        using var pixels = InternVLFixtures.Ref("vit6b", "pixel_values");
        using var expected = InternVLFixtures.Ref("vit6b", "greedy_ids");
        Assert.Equal(expected.ToLongArray(), model.GenerateGreedy(ids, pixels, (int)expected.NumEl, useCache: true));
    }

    [Fact]
    public void PrefillAndDecodeSteps_GiveTheLogitsOfTheFullForward()
    {
        using var model = InternVLChatModel.FromPretrained(InternVLFixtures.Dir("vit300m"));
        using var ids = InternVLFixtures.Ref("vit300m", "input_ids");
        using var pixels = InternVLFixtures.Ref("vit300m", "pixel_values");
        using var expLogits = InternVLFixtures.Ref("vit300m", "logits");
        using var _ = GradMode.NoGrad();
        int T = ids.Shape[1], prompt = T - 4, V = expLogits.Shape[2];

        // prompt (with all image tokens) in one prefill, then the remaining 4 text tokens one at a time
        using var cache = model.NewCache(1, T);
        using var promptIds = Ops.Narrow(ids, 1, 0, prompt);
        using var first = model.Prefill(promptIds, pixels, cache);
        AssertRow(first, expLogits, prompt - 1);
        var all = ids.ToLongArray();
        using var step = Tensor.Empty([1], DType.I64);
        for (int t = prompt; t < T; t++)
        {
            step.SetFlat(0, all[t]);
            using var logits = model.DecodeStep(step, cache);
            Assert.Equal(new[] { 1, V }, logits.Shape);
            AssertRow(logits, expLogits, t);
        }
        Assert.Equal(T, cache.Length);

        void AssertRow(Tensor got, Tensor exp, int t)
        {
            using var row = Ops.Narrow(exp, 1, t, 1);
            using var flat = Ops.Reshape(row, 1, V);
            double e = InternVLFixtures.RelErr(got, flat);
            Assert.True(e <= Tol, $"position {t}: rel err {e}");
        }
    }

    [Fact]
    public void DecodeStep_WritesTheCacheInPlace_AndThrowsWhenFull()
    {
        using var model = InternVLChatModel.FromPretrained(InternVLFixtures.Dir("vit300m"));
        using var cache = model.NewCache(1, 3);
        using var tok = Tensor.FromArray(new long[] { 5 }, 1);
        var before = cache.Bytes;
        for (int i = 0; i < 3; i++) model.DecodeStep(tok, cache).Dispose();
        Assert.Equal(3, cache.Length);
        Assert.Equal(before, cache.Bytes);
        var e = Assert.Throws<InvalidOperationException>(() => model.DecodeStep(tok, cache));
        Assert.Contains("maximum length 3", e.Message);
    }

    [Fact]
    public void Forward_ThrowsNamingCounts_WhenContextTokensAndImageRowsDiffer()
    {
        using var model = InternVLChatModel.FromPretrained(InternVLFixtures.Dir("vit300m"));
        using var ids = InternVLFixtures.Ref("vit300m", "input_ids");
        using var pixels = InternVLFixtures.Ref("vit300m", "pixel_values");
        using var oneTile = Ops.Narrow(pixels, 0, 0, 1);
        using var _ = GradMode.NoGrad();
        var e = Assert.Throws<ArgumentException>(() => model.Forward(ids, oneTile));
        Assert.Contains("8 <IMG_CONTEXT> tokens", e.Message);
        Assert.Contains("4 feature rows", e.Message);
    }

    [Fact]
    public void Forward_SkipsTilesWithImageFlagZero()
    {
        using var model = InternVLChatModel.FromPretrained(InternVLFixtures.Dir("vit300m"));
        using var ids = InternVLFixtures.Ref("vit300m", "input_ids");
        using var pixels = InternVLFixtures.Ref("vit300m", "pixel_values");
        using var expLogits = InternVLFixtures.Ref("vit300m", "logits");
        using var _ = GradMode.NoGrad();
        // a third (padding) tile with flag 0 must not change anything
        using var pad = Tensor.RandN([1, 3, 56, 56], 7);
        using var withPad = Ops.Concat([pixels, pad], 0);
        using var flags = Tensor.FromArray(new long[] { 1, 1, 0 }, 3);
        using var logits = model.Forward(ids, withPad, flags);
        Assert.True(InternVLFixtures.RelErr(logits, expLogits) <= Tol);
    }
}
