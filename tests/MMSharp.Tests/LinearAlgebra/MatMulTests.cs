using MMSharp.Engine;

namespace MMSharp.Tests.LinearAlgebra;

/// <summary>Contracts of Ops.MatMul / Ops.Linear beyond the op table: errors, frozen bf16 weights, non-unit-stride operands.</summary>
public sealed class MatMulTests
{
    [Fact]
    public void MatMul_ThrowsNamingBothOperands_WhenInnerDimsDiffer()
    {
        using var a = Tensor.Zeros(3, 4);
        using var b = Tensor.Zeros(5, 2);
        a.Name = "lhs";
        var e = Assert.Throws<ArgumentException>(() => Ops.MatMul(a, b));
        Assert.Contains("matmul", e.Message);
        Assert.Contains("'lhs'", e.Message);
        Assert.Contains("[5, 2]", e.Message);
    }

    [Fact]
    public void MatMul_Throws_WhenBatchDimsDoNotBroadcast()
    {
        using var a = Tensor.Zeros(2, 3, 4);
        using var b = Tensor.Zeros(3, 4, 2);
        Assert.Throws<ArgumentException>(() => Ops.MatMul(a, b));
    }

    [Fact]
    public void Linear_ThrowsNamingWeight_WhenInputWidthDiffers()
    {
        using var x = Tensor.Zeros(2, 6);
        using var w = Tensor.Zeros(3, 5);
        w.Name = "proj.weight";
        var e = Assert.Throws<ArgumentException>(() => Ops.Linear(x, w));
        Assert.Contains("proj.weight", e.Message);
    }

    [Fact]
    public void Linear_WithBF16Weight_GivesInputGradOnly_AndMatchesWidenedWeight()
    {
        using var x = Tensor.RandN([4, 40], 1);
        using var wf = Tensor.RandN([6, 40], 2);
        using var w = wf.To(DType.BF16);
        using var wWide = w.To(DType.F32);
        x.RequiresGrad = true;
        using var y = Ops.Linear(x, w);
        Assert.Equal(DType.BF16, w.DType);
        using var yRef = Ops.Linear(x.Detach(), wWide);
        Assert.Equal(yRef.ToFloatArray(), y.ToFloatArray());
        using var g = Tensor.Ones(4, 6);
        y.Backward(g);
        Assert.NotNull(x.Grad);
        Assert.Null(w.Grad);
    }

    [Fact]
    public void MatMul_CopiesOperand_WhenNeitherOfTheLastTwoDimsHasUnitStride()
    {
        // every other column of a [4, 10] matrix: strides (10, 2)
        using var big = Tensor.RandN([4, 10], 3);
        using var a = big.Reshape(4, 5, 2).Select(2, 0);
        using var b = Tensor.RandN([5, 3], 4);
        using var ac = a.Contiguous();
        using var y = Ops.MatMul(a, b);
        using var yRef = Ops.MatMul(ac, b);
        Assert.Equal(yRef.ToFloatArray(), y.ToFloatArray());
    }
}
