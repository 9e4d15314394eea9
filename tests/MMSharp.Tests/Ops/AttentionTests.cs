using MMSharp.Engine;
using Xunit.Abstractions;

namespace MMSharp.Tests.EngineOps;

/// <summary>Attention at sequence lengths the op table cannot afford: accuracy on sampled rows and memory of the backward.</summary>
public sealed class AttentionTests(ITestOutputHelper output)
{
    const int T = 2048, D = 64, H = 2;

    /// <summary>Float64 output row i of head h (causal optional) for q, k, v [1, H, T, D].</summary>
    static double[] ReferenceRow(float[] q, float[] k, float[] v, int h, int i, bool causal)
    {
        int n = causal ? i + 1 : T;
        var s = new double[n];
        double max = double.NegativeInfinity;
        long qi = ((long)h * T + i) * D;
        for (int j = 0; j < n; j++)
        {
            double dot = 0;
            long kj = ((long)h * T + j) * D;
            for (int d = 0; d < D; d++) dot += (double)q[qi + d] * k[kj + d];
            s[j] = dot / Math.Sqrt(D);
            max = Math.Max(max, s[j]);
        }
        double sum = 0;
        for (int j = 0; j < n; j++) { s[j] = Math.Exp(s[j] - max); sum += s[j]; }
        var o = new double[D];
        for (int j = 0; j < n; j++)
            for (int d = 0; d < D; d++) o[d] += s[j] / sum * v[((long)h * T + j) * D + d];
        return o;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void LongSequence_MatchesFloat64Reference_OnSampledRows(bool causal)
    {
        using var q = Tensor.RandN([1, H, T, D], 1);
        using var k = Tensor.RandN([1, H, T, D], 2);
        using var v = Tensor.RandN([1, H, T, D], 3);
        using var o = Ops.ScaledDotProductAttention(q, k, v, causal);
        float[] qa = q.ToFloatArray(), ka = k.ToFloatArray(), va = v.ToFloatArray(), oa = o.ToFloatArray();
        var rng = new Rng(4);
        double worst = 0;
        foreach (int i in new[] { 0, 1, 63, 64, T - 1 }.Concat(Enumerable.Range(0, 11).Select(_ => rng.NextInt(T))))
            for (int h = 0; h < H; h++)
            {
                var r = ReferenceRow(qa, ka, va, h, i, causal);
                for (int d = 0; d < D; d++) worst = Math.Max(worst, Math.Abs(r[d] - oa[((long)h * T + i) * D + d]));
            }
        output.WriteLine($"T={T} D={D} causal={causal}: max |ours - float64| over sampled rows = {worst:E2}");
        Assert.True(worst < 2e-5, $"max deviation {worst:E2}");
    }

    [Fact]
    public void Backward_AllocatesNoTxTBuffer()
    {
        using var q = Tensor.RandN([1, H, T, D], 5);
        using var k = Tensor.RandN([1, H, T, D], 6);
        using var v = Tensor.RandN([1, H, T, D], 7);
        using var g = Tensor.RandN([1, H, T, D], 8);
        q.RequiresGrad = k.RequiresGrad = v.RequiresGrad = true;
        // Par workers only touch their (small) thread scratch; every tensor buffer is allocated on this thread.
        long before = GC.GetAllocatedBytesForCurrentThread();
        var o = Ops.ScaledDotProductAttention(q, k, v, causal: true);
        o.Backward(g);
        long bytes = GC.GetAllocatedBytesForCurrentThread() - before;
        long oneScoreMatrix = (long)T * T * sizeof(float);
        output.WriteLine($"forward + backward allocated {bytes / 1e6:F2} MB (incl. fresh pool buffers); one T×T fp32 matrix is {oneScoreMatrix / 1e6:F2} MB; q is {q.NumEl * 4 / 1e6:F2} MB");
        Assert.True(bytes < oneScoreMatrix, $"allocated {bytes} bytes, a T×T score matrix is {oneScoreMatrix}");
        Assert.NotNull(q.Grad); Assert.NotNull(k.Grad); Assert.NotNull(v.Grad);
        Assert.All(q.Grad!.ToFloatArray(), x => Assert.True(float.IsFinite(x)));
        o.Dispose();
    }

    [Fact]
    public void SameInputs_GiveBitIdenticalOutputsAndGradients()
    {
        float[] Run(out float[] dq)
        {
            using var q = Tensor.RandN([2, 4, 150, 24], 9);
            using var k = Tensor.RandN([2, 2, 150, 24], 10);
            using var v = Tensor.RandN([2, 2, 150, 24], 11);
            q.RequiresGrad = k.RequiresGrad = true;
            using var o = Ops.ScaledDotProductAttention(q, k, v, causal: true);
            using var g = Tensor.RandN(o.Shape, 12);
            o.Backward(g);
            dq = q.Grad!.ToFloatArray();
            return o.ToFloatArray().Concat(k.Grad!.ToFloatArray()).ToArray();
        }
        var a = Run(out var dqa);
        var b = Run(out var dqb);
        Assert.Equal(a, b);
        Assert.Equal(dqa, dqb);
    }

    [Fact]
    public void FullyMaskedRow_GivesZeros_AndZeroGradients()
    {
        using var q = Tensor.RandN([1, 1, 3, 8], 1);
        using var k = Tensor.RandN([1, 1, 4, 8], 2);
        using var v = Tensor.RandN([1, 1, 4, 8], 3);
        q.RequiresGrad = true;
        using var mask = Tensor.FromArray([true, true, false, false, false, false, false, false, false, true, true, true], 3, 4);
        using var o = Ops.ScaledDotProductAttention(q, k, v, mask: mask);
        using var g = Tensor.Full([1, 1, 3, 4 * 2], 1f);
        o.Backward(g);
        var ov = o.ToFloatArray(); var dq = q.Grad!.ToFloatArray();
        for (int d = 0; d < 8; d++) { Assert.Equal(0f, ov[8 + d]); Assert.Equal(0f, dq[8 + d]); }
        Assert.Contains(ov.Take(8), x => x != 0);
    }

    [Fact]
    public void Throws_NamingShapes_WhenHeadsDoNotGroup()
    {
        using var q = Tensor.Zeros(1, 3, 4, 8);
        using var k = Tensor.Zeros(1, 2, 4, 8);
        var e = Assert.Throws<ArgumentException>(() => Ops.ScaledDotProductAttention(q, k, k));
        Assert.Contains("[1, 3, 4, 8]", e.Message);
    }
}
