using MMSharp.Engine;

namespace MMSharp.Tests.EngineOps;

/// <summary>The one-pass backward of <see cref="MMSharp.Engine.Ops.SiluMul"/> (contiguous gate and up of one shape)
/// against the general per-gradient passes, which a transposed gate takes.</summary>
public sealed class SiluMulTests
{
    [Theory]
    [InlineData(1, 7)]
    [InlineData(3, 33)]
    [InlineData(37, 53)]
    [InlineData(64, 1031)]
    public void Backward_OnePass_GivesTheBitsOfTheSeparatePasses(int rows, int cols)
    {
        using var gateData = Tensor.RandN([rows, cols], 1, 3f);
        using var upData = Tensor.RandN([rows, cols], 2);
        using var g = Tensor.RandN([rows, cols], 3);

        // fused path: contiguous gate and up
        using var gate1 = Ops.Clone(gateData);
        using var up1 = Ops.Clone(upData);
        gate1.RequiresGrad = up1.RequiresGrad = true;
        using (var y1 = Ops.SiluMul(gate1, up1)) y1.Backward(g);

        // general path: the same gate values read through a transposed view
        using var gateT = Ops.Contiguous(Ops.Transpose(gateData, 0, 1));
        using var up2 = Ops.Clone(upData);
        gateT.RequiresGrad = up2.RequiresGrad = true;
        using (var gate2 = Ops.Transpose(gateT, 0, 1))
        using (var y2 = Ops.SiluMul(gate2, up2))
            y2.Backward(g);

        using var dGate2 = Ops.Contiguous(Ops.Transpose(gateT.Grad!, 0, 1));
        Assert.Equal(dGate2.ToFloatArray(), gate1.Grad!.ToFloatArray());
        Assert.Equal(up2.Grad!.ToFloatArray(), up1.Grad!.ToFloatArray());
    }
}
