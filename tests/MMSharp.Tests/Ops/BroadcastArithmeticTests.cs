using MMSharp.Engine;

namespace MMSharp.Tests.EngineOps;


public sealed class BroadcastArithmeticTests
{
    [Fact]
    public void Add_ThrowsNamingOpAndShapes_WhenShapesDoNotBroadcast()
    {
        var e = Assert.Throws<ArgumentException>(() => Ops.Add(Tensor.Zeros(3, 4), Tensor.Zeros(5)));
        Assert.Contains("add", e.Message);
        Assert.Contains("[3, 4]", e.Message);
        Assert.Contains("[5]", e.Message);
    }

    [Fact]
    public void Norms_ThrowNamingParameter_WhenWeightShapeDiffers()
    {
        var e = Assert.Throws<ArgumentException>(() => Ops.RmsNorm(Tensor.Zeros(2, 8), Tensor.Ones(7)));
        Assert.Contains("rms_norm", e.Message);
        Assert.Contains("[7]", e.Message);
    }

    [Fact]
    public void Mul_Backward_ReducesGradientToEachOperandShape()
    {
        var a = Tensor.RandN([4, 1, 6], 1); a.RequiresGrad = true;
        var b = Tensor.RandN([3, 6], 2); b.RequiresGrad = true;
        var y = a * b; // [4, 3, 6]
        Ops.Sum(y).Backward();
        Assert.Equal(new[] { 4, 1, 6 }, a.Grad!.Shape);
        Assert.Equal(new[] { 3, 6 }, b.Grad!.Shape);
        var av = a.ToFloatArray();
        var bv = b.ToFloatArray();
        // d/da[i,0,k] = Σ_j b[j,k]; d/db[j,k] = Σ_i a[i,0,k]
        for (int k = 0; k < 6; k++)
        {
            double sb = 0, sa = 0;
            for (int j = 0; j < 3; j++) sb += bv[j * 6 + k];
            for (int i = 0; i < 4; i++) sa += av[i * 6 + k];
            Assert.Equal(sb, a.Grad.ToFloatArray()[k], 5);
            Assert.Equal(sa, b.Grad.ToFloatArray()[k], 5);
        }
    }

    [Fact]
    public void Add_SameTensorTwice_AccumulatesBothGradients()
    {
        var a = Tensor.RandN([2, 17], 4); a.RequiresGrad = true;
        Ops.Sum(a + a).Backward();
        Assert.All(a.Grad!.ToFloatArray(), g => Assert.Equal(2f, g));
    }

    [Fact]
    public void LargeBroadcast_MatchesScalarLoop_InParallel()
    {
        int rows = 777, cols = 1031;
        var x = Tensor.RandN([rows, cols], 5);
        var bias = Tensor.RandN([cols], 6);
        var col = Tensor.RandN([rows, 1], 7);
        var y = (x + bias) * col - 0.5f;
        var xv = x.ToFloatArray(); var bv = bias.ToFloatArray(); var cv = col.ToFloatArray(); var yv = y.ToFloatArray();
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++)
                Assert.Equal((xv[i * cols + j] + bv[j]) * cv[i] - 0.5f, yv[i * cols + j]);
        // transposed operand through the strided gather path
        var t = Ops.Add(x.Transpose(0, 1), 1f).ToFloatArray();
        for (int j = 0; j < cols; j += 13)
            for (int i = 0; i < rows; i++)
                Assert.Equal(xv[i * cols + j] + 1f, t[j * rows + i]);
    }
}
