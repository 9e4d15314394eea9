using MMSharp.Engine;
using MMSharp.Engine.Autograd;

namespace MMSharp.Tests.Engine;

/// <summary>Behaviour of the backward engine itself, using a tiny test-only op so it depends on no other op.</summary>
[Collection(nameof(MMSharp.Tests.Training.TrainerCollection))]
public sealed class AutogradTests
{
    /// <summary>y = x * c (elementwise, c a constant), recorded with its backward.</summary>
    static Tensor Scale(Tensor x, float c)
    {
        var y = Tensor.FromArray(x.ToFloatArray().Select(v => v * c).ToArray(), x.Shape);
        if (Tensor.AnyRequiresGrad(x))
            y.WithGradFn("scale", [x], [], g => [Tensor.FromArray(g.ToFloatArray().Select(v => v * c).ToArray(), g.Shape)]);
        return y;
    }

    /// <summary>y = a * b (elementwise), saving both inputs.</summary>
    static Tensor Mul(Tensor a, Tensor b)
    {
        var av = a.ToFloatArray(); var bv = b.ToFloatArray();
        var y = Tensor.FromArray(av.Select((v, i) => v * bv[i]).ToArray(), a.Shape);
        if (Tensor.AnyRequiresGrad(a, b))
        {
            var sa = a.SaveForBackward(); var sb = b.SaveForBackward();
            y.WithGradFn("mul", [a, b], [sa, sb], g =>
            {
                var gv = g.ToFloatArray(); var x1 = sa.ToFloatArray(); var x2 = sb.ToFloatArray();
                return [Tensor.FromArray(gv.Select((v, i) => v * x2[i]).ToArray(), g.Shape),
                        Tensor.FromArray(gv.Select((v, i) => v * x1[i]).ToArray(), g.Shape)];
            });
        }
        return y;
    }

    /// <summary>Passes the same gradient object to both inputs (the engine must not alias the two leaf gradients).</summary>
    static Tensor AddSame(Tensor a, Tensor b)
    {
        var av = a.ToFloatArray(); var bv = b.ToFloatArray();
        var y = Tensor.FromArray(av.Select((v, i) => v + bv[i]).ToArray(), a.Shape);
        if (Tensor.AnyRequiresGrad(a, b)) y.WithGradFn("add", [a, b], [], g => [g, g]);
        return y;
    }

    [Fact]
    public void Gradients_AccumulateAcrossBackwardCalls()
    {
        var x = Tensor.FromArray([1f, 2f, 3f], 3);
        x.RequiresGrad = true;
        Scale(x, 2f).Backward(Tensor.Ones(3));
        Scale(x, 3f).Backward(Tensor.Ones(3));
        Assert.Equal([5f, 5f, 5f], x.Grad!.ToFloatArray());
    }

    [Fact]
    public void SharedGradient_DoesNotAliasLeafGradients()
    {
        var a = Tensor.FromArray([1f, 2f], 2); a.RequiresGrad = true;
        var b = Tensor.FromArray([3f, 4f], 2); b.RequiresGrad = true;
        AddSame(a, b).Backward(Tensor.Ones(2));
        AddSame(a, b).Backward(Tensor.Ones(2));   // in-place accumulation into a.Grad must not change b.Grad
        Assert.Equal([2f, 2f], a.Grad!.ToFloatArray());
        Assert.Equal([2f, 2f], b.Grad!.ToFloatArray());
        Assert.NotSame(a.Grad!.Storage, b.Grad!.Storage);
    }

    [Fact]
    public void DiamondGraph_SumsBothPaths()
    {
        // y = (2x) * (3x) = 6 x^2  => dy/dx = 12 x
        var x = Tensor.FromArray([1f, -2f], 2); x.RequiresGrad = true;
        var y = Mul(Scale(x, 2f), Scale(x, 3f));
        y.Backward(Tensor.Ones(2));
        Assert.Equal([12f, -24f], x.Grad!.ToFloatArray());
    }

    [Fact]
    public void Backward_FreesGraph_SecondBackwardThrowsClearly()
    {
        var x = Tensor.FromArray([1f, 2f], 2); x.RequiresGrad = true;
        var y = Mul(x, x);
        y.Backward(Tensor.Ones(2));
        Assert.True(y.GradFn!.IsReleased);
        var e = Assert.Throws<InvalidOperationException>(() => y.Backward(Tensor.Ones(2)));
        Assert.Contains("retainGraph", e.Message);
    }

    [Fact]
    public void RetainGraph_AllowsSecondBackward()
    {
        var x = Tensor.FromArray([1f, 2f], 2); x.RequiresGrad = true;
        var y = Mul(x, x);
        y.Backward(Tensor.Ones(2), retainGraph: true);
        y.Backward(Tensor.Ones(2));
        Assert.Equal([4f, 8f], x.Grad!.ToFloatArray());
    }

    [Fact]
    public void SavedTensors_AreReleasedAfterBackward()
    {
        var x = Tensor.FromArray([1f, 2f], 2); x.RequiresGrad = true;
        var y = Mul(x, x);
        Assert.Equal(3, x.Storage.RefCount); // x itself + two saved references
        y.Backward(Tensor.Ones(2));
        Assert.Equal(1, x.Storage.RefCount);
    }

    [Fact]
    public void NonContiguousGradientView_IsReleasedAfterItsCopy()
    {
        // a backward returning a strided view (as transpose's does) hands the engine a storage reference; once the
        // engine has made its contiguous copy the view must go, or the storage never returns to the pool
        using var src = Tensor.FromArray(new float[] { 1, 2, 3, 4, 5, 6 }, 2, 3);
        var x = Tensor.Zeros([3, 2]);
        x.RequiresGrad = true;
        var y = Tensor.Zeros([3, 2]).WithGradFn("view_grad", [x], [], g => [Ops.Transpose(src, 0, 1)]);
        Assert.Equal(1, src.Storage.RefCount);
        y.Backward(Tensor.Ones([3, 2]));
        Assert.Equal(1, src.Storage.RefCount);
        Assert.Equal(new float[] { 1, 4, 2, 5, 3, 6 }, x.Grad!.ToFloatArray());
    }

    [Fact]
    public void Backward_BooksEachNodeByName_WhenProfilerEnabled()
    {
        var x = Tensor.FromArray([1f, 2f], 2); x.RequiresGrad = true;
        var y = Scale(Scale(x, 2f), 3f);
        Profiler.Reset();
        Profiler.Enabled = true;
        try { y.Backward(Tensor.Ones(2)); }
        finally { Profiler.Enabled = false; }
        var scale = Profiler.Named().Single(e => e.Name == "bwd scale");
        Assert.Equal(2, scale.Calls);
        Assert.Contains(Profiler.Named(), e => e.Name.StartsWith("bwd (gradient routing"));
    }

    [Fact]
    public void NoGrad_RecordsNothing()
    {
        var x = Tensor.FromArray([1f], 1); x.RequiresGrad = true;
        Tensor y;
        using (GradMode.NoGrad()) y = Scale(x, 2f);
        Assert.False(y.RequiresGrad);
        Assert.Null(y.GradFn);
    }

    [Fact]
    public void InPlaceChangeOfSavedTensor_IsDetected()
    {
        var x = Tensor.FromArray([1f, 2f], 2); x.RequiresGrad = true;
        var w = Tensor.FromArray([3f, 4f], 2);
        var y = Mul(x, w);
        Ops.CopyInto(Tensor.FromArray([0f, 0f], 2), w);
        var e = Assert.Throws<InvalidOperationException>(() => y.Backward(Tensor.Ones(2)));
        Assert.Contains("modified in place", e.Message);
    }

    [Fact]
    public void NonScalarBackward_WithoutGradient_Throws()
    {
        var x = Tensor.FromArray([1f, 2f], 2); x.RequiresGrad = true;
        var e = Assert.Throws<InvalidOperationException>(() => Scale(x, 2f).Backward());
        Assert.Contains("non-scalar", e.Message);
    }

    [Fact]
    public void DisposingIntermediates_BeforeBackward_KeepsGraphIntact()
    {
        var x = Tensor.FromArray([1f, 2f, 3f], 3); x.RequiresGrad = true;
        Tensor y;
        using (TensorScope.Begin())
        {
            var h = Mul(x, x);          // disposed by the scope, but saved by the next node
            y = Mul(h, x);              // also disposed by the scope: its data goes, its graph stays
        }
        y.Backward(Tensor.Ones(3));
        Assert.Equal([3f, 12f, 27f], x.Grad!.ToFloatArray()); // d(x^3)/dx = 3x^2
    }

    [Fact]
    public void Checkpoint_GivesSameGradientsAsDirect()
    {
        var x1 = Tensor.FromArray([0.5f, -1.5f, 2f], 3); x1.RequiresGrad = true;
        var w1 = Tensor.FromArray([1.5f, 2f, -0.25f], 3); w1.RequiresGrad = true;
        Mul(Mul(x1, w1), x1).Backward(Tensor.Ones(3));

        var x2 = Tensor.FromArray([0.5f, -1.5f, 2f], 3); x2.RequiresGrad = true;
        var w2 = Tensor.FromArray([1.5f, 2f, -0.25f], 3); w2.RequiresGrad = true;
        int calls = 0;
        var y = Checkpoint.Run(ins => { calls++; return Mul(Mul(ins[0], w2), ins[0]); }, x2);
        Assert.Equal(1, calls);
        y.Backward(Tensor.Ones(3));
        Assert.Equal(2, calls); // recomputed once inside backward
        Assert.Equal(x1.Grad!.ToFloatArray(), x2.Grad!.ToFloatArray());
        Assert.Equal(w1.Grad!.ToFloatArray(), w2.Grad!.ToFloatArray());
    }

    [Fact]
    public void Checkpoint_ReplaysRandomStream()
    {
        var x = Tensor.FromArray([1f, 2f, 3f, 4f], 4); x.RequiresGrad = true;
        var draws = new List<float>();
        Tensor Block(Tensor[] ins)
        {
            float r = Rng.Default.NextFloat(); // stands in for a dropout mask
            draws.Add(r);
            return Scale(ins[0], r);
        }
        var y = Checkpoint.Run(Block, x);
        float after = Rng.Default.NextFloat();
        Rng.Default.SetState(Rng.Default.GetState()); // no-op; state continues
        y.Backward(Tensor.Ones(4));
        Assert.Equal(draws[0], draws[1]);
        Assert.All(x.Grad!.ToFloatArray(), v => Assert.Equal(draws[0], v));
        Assert.NotEqual(after, Rng.Default.NextFloat()); // backward restored the stream position it found
    }

    [Fact]
    public void FrozenLeaf_GetsNoGradient()
    {
        var x = Tensor.FromArray([1f, 2f], 2); x.RequiresGrad = true;
        var w = Tensor.FromArray([3f, 4f], 2); // RequiresGrad false: frozen
        Mul(x, w).Backward(Tensor.Ones(2));
        Assert.Null(w.Grad);
        Assert.Equal([3f, 4f], x.Grad!.ToFloatArray());
    }
}
