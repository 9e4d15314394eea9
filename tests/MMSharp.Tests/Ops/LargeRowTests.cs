using MMSharp.Engine;
using MMSharp.Engine.Kernels;

namespace MMSharp.Tests.EngineOps;


/// <summary>The parallel row paths (rows split across threads) against float64 references, and
/// run-to-run determinism with two threads.</summary>
[Collection("Par.Threads")]
public sealed class LargeRowTests
{
    const int Rows = 300, C = 4099;

    static double[] RowSoftmax(float[] x, int r)
    {
        double m = double.NegativeInfinity;
        for (int j = 0; j < C; j++) m = Math.Max(m, x[r * C + j]);
        var e = new double[C];
        double s = 0;
        for (int j = 0; j < C; j++) s += e[j] = Math.Exp(x[r * C + j] - m);
        for (int j = 0; j < C; j++) e[j] /= s;
        return e;
    }

    [Fact]
    public void Softmax_LargeRows_MatchesFloat64Reference()
    {
        var x = Tensor.RandN([Rows, C], 11, 3f);
        x.RequiresGrad = true;
        var y = Ops.Softmax(x, -1);
        var w = Tensor.RandN([Rows, C], 12);
        y.Backward(w);
        var xv = x.ToFloatArray(); var yv = y.ToFloatArray(); var wv = w.ToFloatArray(); var gv = x.Grad!.ToFloatArray();
        double maxY = 0, maxG = 0;
        for (int r = 0; r < Rows; r++)
        {
            var p = RowSoftmax(xv, r);
            double dot = 0;
            for (int j = 0; j < C; j++) dot += p[j] * wv[r * C + j];
            for (int j = 0; j < C; j++)
            {
                maxY = Math.Max(maxY, Math.Abs(yv[r * C + j] - p[j]));
                maxG = Math.Max(maxG, Math.Abs(gv[r * C + j] - p[j] * (wv[r * C + j] - dot)));
            }
        }
        Assert.True(maxY < 1e-6 && maxG < 1e-5, $"softmax max |diff| y {maxY:E2} grad {maxG:E2}");
    }

    [Fact]
    public void LogSoftmax_LargeRows_MatchesFloat64Reference()
    {
        var x = Tensor.RandN([Rows, C], 13, 3f);
        var y = Ops.LogSoftmax(x, -1).ToFloatArray();
        var xv = x.ToFloatArray();
        double worst = 0;
        for (int r = 0; r < Rows; r++)
        {
            var p = RowSoftmax(xv, r);
            for (int j = 0; j < C; j++) worst = Math.Max(worst, Math.Abs(y[r * C + j] - Math.Log(p[j])));
        }
        Assert.True(worst < 2e-5, $"log_softmax max |diff| {worst:E2}");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Norm_LargeRows_MatchesFloat64Reference(bool layerNorm)
    {
        var x = Tensor.RandN([Rows, C], 21, 2f);
        var wt = Tensor.RandN([C], 22);
        var bs = Tensor.RandN([C], 23);
        x.RequiresGrad = wt.RequiresGrad = bs.RequiresGrad = true;
        var y = layerNorm ? Ops.LayerNorm(x, wt, bs) : Ops.RmsNorm(x, wt);
        var g = Tensor.RandN([Rows, C], 24);
        y.Backward(g);
        var xv = x.ToFloatArray(); var wv = wt.ToFloatArray(); var bv = bs.ToFloatArray(); var gv = g.ToFloatArray(); var yv = y.ToFloatArray();
        var dx = x.Grad!.ToFloatArray(); var dw = wt.Grad!.ToFloatArray();
        var refDw = new double[C]; var refDb = new double[C];
        double eps = layerNorm ? 1e-5 : 1e-6, maxY = 0, maxDx = 0;
        for (int r = 0; r < Rows; r++)
        {
            double m = 0;
            if (layerNorm) { for (int j = 0; j < C; j++) m += xv[r * C + j]; m /= C; }
            double v = 0;
            for (int j = 0; j < C; j++) v += (xv[r * C + j] - m) * (xv[r * C + j] - m);
            double s = 1 / Math.Sqrt(v / C + eps);
            double md = 0, mdn = 0;
            for (int j = 0; j < C; j++)
            {
                double n = (xv[r * C + j] - m) * s, d = gv[r * C + j] * wv[j];
                md += d; mdn += d * n;
                refDw[j] += gv[r * C + j] * n; refDb[j] += gv[r * C + j];
                maxY = Math.Max(maxY, Math.Abs(yv[r * C + j] - (n * wv[j] + (layerNorm ? bv[j] : 0))));
            }
            md = layerNorm ? md / C : 0; mdn /= C;
            for (int j = 0; j < C; j++)
            {
                double n = (xv[r * C + j] - m) * s, d = gv[r * C + j] * wv[j];
                maxDx = Math.Max(maxDx, Math.Abs(dx[r * C + j] - (d - md - n * mdn) * s));
            }
        }
        double maxDw = 0;
        for (int j = 0; j < C; j++) maxDw = Math.Max(maxDw, Math.Abs(dw[j] - refDw[j]) / Math.Max(1, Math.Abs(refDw[j])));
        if (layerNorm)
        {
            var db = bs.Grad!.ToFloatArray();
            for (int j = 0; j < C; j++) maxDw = Math.Max(maxDw, Math.Abs(db[j] - refDb[j]) / Math.Max(1, Math.Abs(refDb[j])));
        }
        Assert.True(maxY < 1e-5 && maxDx < 1e-5 && maxDw < 1e-5, $"y {maxY:E2} dx {maxDx:E2} dw/db {maxDw:E2}");
    }

    static float[][] RunAll()
    {
        var x = Tensor.RandN([Rows, C], 31);
        var wt = Tensor.RandN([C], 32);
        x.RequiresGrad = wt.RequiresGrad = true;
        var targets = Tensor.FromArray(Enumerable.Range(0, Rows).Select(i => (long)(i * 13 % C)).ToArray(), Rows);
        var loss = Ops.CrossEntropy(Ops.RmsNorm(Ops.Silu(x), wt), targets)
                   + Ops.Sum(Ops.LayerNorm(x, null, null)) * 1e-3f
                   + Ops.Mean(Ops.Softmax(x, 0)) + Ops.Sum(Ops.Max(x, 1));
        loss.Backward();
        return [loss.ToFloatArray(), x.Grad!.ToFloatArray(), wt.Grad!.ToFloatArray(), Ops.Sum(x, 0).ToFloatArray(), Ops.Sum(x).ToFloatArray()];
    }

    [Fact]
    public void ForwardAndBackward_AreBitwiseIdentical_AcrossRunsWithTwoThreads()
    {
        int saved = Par.Threads;
        try
        {
            Par.Threads = 2;
            var a = RunAll();
            var b = RunAll();
            for (int k = 0; k < a.Length; k++) Assert.Equal(a[k], b[k]);
            // reductions and norm parameter gradients do not even depend on the thread count
            Par.Threads = 1;
            var c = RunAll();
            for (int k = 0; k < a.Length; k++) Assert.Equal(a[k], c[k]);
        }
        finally { Par.Threads = saved; }
    }
}
