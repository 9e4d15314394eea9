using MMSharp.Engine;
using MMSharp.Engine.Kernels;
using MMSharp.Tests.OpTable;

namespace MMSharp.Tests.EngineOps;


/// <summary>NaN propagation, special values, and the accuracy of the hand-built erf and tanh.</summary>
public sealed class NumericsTests
{
    [Fact]
    public void Erf_MatchesFloat64Reference_Within1e6Relative()
    {
        var xs = new List<float>();
        for (float x = -6f; x <= 6f; x += 0.00123f) xs.Add(x);
        xs.AddRange([1e-30f, 1e-8f, -1e-5f, 0.927734375f, 0.9277344f, 3.9f, 10f, -10f]);
        var t = Tensor.FromArray(xs.ToArray(), xs.Count);
        // vector path through an op: gelu(x)·2/x - 1 = erf(x/√2) is lossy, so check erf directly
        var vec = new float[xs.Count];
        unsafe
        {
            fixed (float* p = vec)
            {
                var op = new ErfOp();
                VectorLoop.MapContiguous(ref op, t.F32Ptr, p, xs.Count);
            }
        }
        double worst = 0;
        for (int i = 0; i < xs.Count; i++)
        {
            double e = RefMath.Erf(xs[i]);
            double relVec = Math.Abs(vec[i] - e) / Math.Max(Math.Abs(e), 1e-38);
            double relScalar = Math.Abs(VMath.Erf(xs[i]) - e) / Math.Max(Math.Abs(e), 1e-38);
            worst = Math.Max(worst, Math.Max(relVec, relScalar));
        }
        Assert.True(worst < 1e-6, $"max relative error of erf {worst:E2}");
    }

    [Fact]
    public void Tanh_MatchesFloat64Reference()
    {
        double worstAbs = 0, worstRel = 0;
        for (float x = -12f; x <= 12f; x += 0.00071f)
        {
            double e = Math.Tanh(x);
            double a = VMath.Tanh(x);
            worstAbs = Math.Max(worstAbs, Math.Abs(a - e));
            worstRel = Math.Max(worstRel, Math.Abs(a - e) / Math.Max(Math.Abs(e), 1e-30));
        }
        var t = Ops.Tanh(Tensor.FromArray([1e-6f, -0.3f, 0.6f, 30f, -30f, float.PositiveInfinity], 6)).ToFloatArray();
        Assert.Equal(1e-6f, t[0]);
        Assert.Equal(1f, t[3]);
        Assert.Equal(-1f, t[4]);
        Assert.Equal(1f, t[5]);
        Assert.True(worstAbs < 2e-7 && worstRel < 1e-6, $"tanh abs {worstAbs:E2} rel {worstRel:E2}");
    }

    struct ErfOp : IUnaryOp
    {
        public float Invoke(float x) => VMath.Erf(x);
        public System.Runtime.Intrinsics.Vector256<float> Invoke(System.Runtime.Intrinsics.Vector256<float> x) => VMath.Erf(x);
        public System.Runtime.Intrinsics.Vector512<float> Invoke(System.Runtime.Intrinsics.Vector512<float> x) => VMath.Erf(x);
    }

    static Tensor WithNaN(int n, int at)
    {
        var d = new float[n];
        for (int i = 0; i < n; i++) d[i] = i * 0.01f - 0.3f;
        d[at] = float.NaN;
        return Tensor.FromArray(d, n);
    }

    [Theory]
    [InlineData(5, 2)]
    [InlineData(37, 36)]
    [InlineData(100, 17)]
    public void PointwiseOps_PropagateNaN_OnlyAtThatElement(int n, int at)
    {
        var x = WithNaN(n, at);
        foreach (var (name, y) in new (string, Tensor)[]
                 {
                     ("exp", Ops.Exp(x)), ("tanh", Ops.Tanh(x)), ("sigmoid", Ops.Sigmoid(x)), ("gelu", Ops.Gelu(x)),
                     ("gelu_tanh", Ops.GeluTanh(x)), ("silu", Ops.Silu(x)), ("relu", Ops.Relu(x)), ("clamp", Ops.Clamp(x, -0.1f, 0.1f)),
                     ("add", x + x), ("mul", x * 2f), ("pow", Ops.Pow(x, 3f)), ("abs", Ops.Abs(x)),
                 })
        {
            var v = y.ToFloatArray();
            for (int i = 0; i < n; i++)
                Assert.True(float.IsNaN(v[i]) == (i == at), $"{name}: element {i} = {v[i]}");
        }
    }

    [Theory]
    [InlineData(5, 2)]
    [InlineData(40, 39)]
    [InlineData(100000, 77777)]
    public void Reductions_PropagateNaN_AndArgMaxPointsAtIt(int n, int at)
    {
        var x = WithNaN(n, at);
        Assert.True(float.IsNaN(Ops.Sum(x).Item()));
        Assert.True(float.IsNaN(Ops.Max(x).Item()));
        Assert.Equal(at, Ops.ArgMax(x).ToLongArray()[0]);
        using var row = x.Reshape(1, n);
        Assert.True(float.IsNaN(Ops.Max(row, 1).Item()));
        Assert.Equal(at, Ops.ArgMax(row, 1).ToLongArray()[0]);
        var sm = Ops.Softmax(row, -1).ToFloatArray();
        Assert.All(sm, v => Assert.True(float.IsNaN(v)));
    }

    [Fact]
    public void Softmax_OfRowWithNegativeInfinity_GivesZeroThere()
    {
        var x = Tensor.FromArray([0f, float.NegativeInfinity, 1f], 1, 3);
        var y = Ops.Softmax(x, -1).ToFloatArray();
        Assert.Equal(0f, y[1]);
        Assert.Equal(1.0, y[0] + y[2], 6);
        var ls = Ops.LogSoftmax(x, -1).ToFloatArray();
        Assert.Equal(float.NegativeInfinity, ls[1]);
    }

    [Fact]
    public void Pow_HandlesNegativeBases()
    {
        var x = Tensor.FromArray([-2f, -0.5f, 0f, 3f], 4);
        Assert.Equal(new[] { -8f, -0.125f, 0f, 27f }, Ops.Pow(x, 3f).ToFloatArray());
        var y = Ops.Pow(x, 4f).ToFloatArray();
        Assert.Equal(16f, y[0], 4);
        Assert.Equal(81f, y[3], 3);
        var z = Ops.Pow(x, 1.5f).ToFloatArray();
        Assert.True(float.IsNaN(z[0]) && float.IsNaN(z[1]));
        Assert.Equal(0f, z[2]);
    }
}
