using MMSharp.Engine;
using MMSharp.Engine.Autograd;

namespace MMSharp.Tests.EngineOps;

/// <summary>The decode attention path at the InternVL3-1B geometry against the tiled path on the same cache view.</summary>
public sealed class DecodeAttentionTests
{
    [Theory]
    [InlineData(1, 300)]
    [InlineData(2, 300)]
    [InlineData(1, 1)]
    [InlineData(8, 77)]
    public void DecodePath_MatchesTiledPath_OnNarrowedCache(int Tq, int Tk)
    {
        using var _ = GradMode.NoGrad();
        const int Hq = 14, Hkv = 2, D = 64, Max = 512;
        using var q = Tensor.RandN([1, Hq, Tq, D], 1);
        using var kBuf = Tensor.RandN([1, Hkv, Max, D], 2);
        using var vBuf = Tensor.RandN([1, Hkv, Max, D], 3);
        using var k = Ops.Narrow(kBuf, 2, 0, Tk);
        using var v = Ops.Narrow(vBuf, 2, 0, Tk);
        using var fast = Ops.ScaledDotProductAttention(q, k, v, causal: true);
        // keyLengths = Tk changes nothing but routes to the tiled kernel
        using var lengths = Tensor.FromArray(new long[] { Tk }, 1);
        using var tiled = Ops.ScaledDotProductAttention(q, k, v, causal: true, keyLengths: lengths);
        float[] a = fast.ToFloatArray(), b = tiled.ToFloatArray();
        double maxDiff = 0;
        for (int i = 0; i < a.Length; i++) maxDiff = Math.Max(maxDiff, Math.Abs(a[i] - b[i]));
        Assert.True(maxDiff < 1e-5, $"max |decode - tiled| = {maxDiff}");
    }
}
