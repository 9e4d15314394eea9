using MMSharp.Engine;

namespace MMSharp.Tests.EngineOps;

public sealed class ReduceTests
{
    [Fact]
    public void Max_Backward_RoutesWholeGradientToFirstTiedIndex()
    {
        var x = Tensor.FromArray([1f, 3f, 3f, 0f, 2f, 2f, 2f, -1f], 2, 4);
        x.RequiresGrad = true;
        var m = Ops.Max(x, 1);
        Assert.Equal(new[] { 3f, 2f }, m.ToFloatArray());
        m.Backward(Tensor.FromArray([10f, 20f], 2));
        Assert.Equal(new[] { 0f, 10f, 0f, 0f, 20f, 0f, 0f, 0f }, x.Grad!.ToFloatArray());
        Assert.Equal(new long[] { 1, 0 }, Ops.ArgMax(x, 1).ToLongArray());
    }

    [Fact]
    public void MaxAll_Backward_RoutesToFirstMaximumAcrossBlocks()
    {
        // maxima in two different 16K blocks: the earlier one wins
        var data = new float[40000];
        data[20000] = 5f; data[35000] = 5f;
        var x = Tensor.FromArray(data, 40000);
        x.RequiresGrad = true;
        var m = Ops.Max(x);
        m.Backward();
        var g = x.Grad!.ToFloatArray();
        Assert.Equal(1f, g[20000]);
        Assert.Equal(1f, g.Sum());
        Assert.Equal(20000, Ops.ArgMax(x).ToLongArray()[0]);
    }

    [Fact]
    public void ArgMax_IsI64_AndNotDifferentiable()
    {
        var x = Tensor.RandN([3, 5], 1);
        x.RequiresGrad = true;
        var a = Ops.ArgMax(x, -1, keepDim: true);
        Assert.Equal(DType.I64, a.DType);
        Assert.Equal(new[] { 3, 1 }, a.Shape);
        Assert.False(a.RequiresGrad);
    }

    [Fact]
    public void SumAndMean_KeepDim_GiveSizeOneDims()
    {
        var x = Tensor.RandN([2, 3, 4], 2);
        Assert.Equal(new[] { 2, 1, 4 }, Ops.Sum(x, 1, keepDim: true).Shape);
        Assert.Equal(new[] { 2, 4 }, Ops.Mean(x, -2).Shape);
        Assert.Empty(Ops.Mean(x).Shape);
    }

    [Fact]
    public void SumAll_IsIndependentOfThreadCount_AndAccurateForLongInputs()
    {
        var x = Tensor.RandUniform([3_000_001], 7, 0f, 1f);
        var v = x.ToFloatArray();
        double expect = 0;
        foreach (var f in v) expect += f;
        int saved = MMSharp.Engine.Kernels.Par.Threads;
        try
        {
            MMSharp.Engine.Kernels.Par.Threads = 1;
            float one = Ops.Sum(x).Item();
            MMSharp.Engine.Kernels.Par.Threads = 2;
            float two = Ops.Sum(x).Item();
            Assert.Equal(one, two);
            Assert.True(Math.Abs(two - expect) / expect < 1e-6, $"sum {two} vs {expect}");
        }
        finally { MMSharp.Engine.Kernels.Par.Threads = saved; }
    }
}
