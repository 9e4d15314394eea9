using MMSharp.Engine;
using MMSharp.Engine.Autograd;

namespace MMSharp.Tests.EngineOps;

/// <summary>Dropout and drop-path: statistics, scaling, determinism and backward (no float64 reference exists for random masks).</summary>
[Collection(nameof(MMSharp.Tests.Training.TrainerCollection))]
public sealed class DropoutTests
{
    static float[] Ones(int n) => Enumerable.Repeat(1f, n).ToArray();

    [Fact]
    public void Dropout_KeepsAboutOneMinusPAndScalesKeptElements()
    {
        const int n = 100_003; // odd: exercises the scalar tail and the half-used last draw
        using var x = Tensor.FromArray(Ones(n), n);
        using var y = Ops.Dropout(x, 0.3f, training: true, new Rng(42));
        var v = y.ToFloatArray();
        int kept = v.Count(a => a != 0);
        Assert.All(v, a => Assert.True(a == 0 || Math.Abs(a - 1 / 0.7f) < 1e-6, $"value {a}"));
        double frac = kept / (double)n;
        Assert.InRange(frac, 0.7 - 0.006, 0.7 + 0.006); // ± 4 sigma
        Assert.InRange(v.Average(), 1 - 0.01, 1 + 0.01); // inverted dropout keeps the mean
    }

    [Fact]
    public void Dropout_SameRngStateGivesSameMask_DifferentStateDifferentMask()
    {
        using var x = Tensor.RandN([33, 17], 1);
        var rng = new Rng(7);
        var state = rng.GetState();
        using var a = Ops.Dropout(x, 0.5f, true, rng);
        using var b = Ops.Dropout(x, 0.5f, true, rng);
        rng.SetState(state);
        using var c = Ops.Dropout(x, 0.5f, true, rng);
        Assert.Equal(a.ToFloatArray(), c.ToFloatArray());
        Assert.NotEqual(a.ToFloatArray(), b.ToFloatArray());
    }

    [Fact]
    public void Dropout_UsesRngDefault_WhenNoneGiven()
    {
        using var x = Tensor.RandN([257], 3);
        var saved = Rng.Default.GetState();
        using var a = Ops.Dropout(x, 0.2f, true);
        Rng.Default.SetState(saved);
        using var b = Ops.Dropout(x, 0.2f, true);
        Assert.Equal(a.ToFloatArray(), b.ToFloatArray());
    }

    [Fact]
    public void Dropout_BackwardIsMaskTimesScale()
    {
        using var x = Tensor.RandN([7, 37], 5);
        x.RequiresGrad = true;
        var y = Ops.Dropout(x, 0.4f, true, new Rng(11));
        var g = Tensor.RandN([7, 37], 6);
        y.Backward(g);
        var yv = y.ToFloatArray(); var xv = x.ToFloatArray(); var gv = g.ToFloatArray(); var dx = x.Grad!.ToFloatArray();
        for (int i = 0; i < yv.Length; i++)
        {
            bool kept = yv[i] != 0;
            Assert.Equal(kept ? xv[i] / 0.6f : 0f, yv[i], 5);
            Assert.Equal(kept ? gv[i] / 0.6f : 0f, dx[i], 5);
        }
    }

    [Fact]
    public void Dropout_IsIdentity_InEvalOrWithPZero_AndZeroWithPOne()
    {
        using var x = Tensor.RandN([5, 9], 2);
        using var e = Ops.Dropout(x, 0.5f, training: false);
        using var z = Ops.Dropout(x, 0f, training: true);
        Assert.Equal(x.ToFloatArray(), e.ToFloatArray());
        Assert.Equal(x.ToFloatArray(), z.ToFloatArray());
        using var all = Ops.Dropout(x, 1f, training: true, new Rng(1));
        Assert.All(all.ToFloatArray(), a => Assert.Equal(0f, a));
        Assert.Throws<ArgumentException>(() => Ops.Dropout(x, 1.5f, true));
    }

    [Fact]
    public void DropPath_DropsWholeSamplesAndScalesKeptOnes()
    {
        const int B = 4000, F = 13;
        using var x = Tensor.FromArray(Ones(B * F), B, F);
        using var y = Ops.DropPath(x, 0.25f, true, new Rng(9));
        var v = y.ToFloatArray();
        int kept = 0;
        for (int b = 0; b < B; b++)
        {
            var row = v.AsSpan(b * F, F);
            bool k = row[0] != 0;
            if (k) kept++;
            foreach (var a in row) Assert.Equal(k ? 1 / 0.75f : 0f, a, 6);
        }
        Assert.InRange(kept / (double)B, 0.75 - 0.03, 0.75 + 0.03);
    }

    [Fact]
    public void DropPath_BackwardUsesSameSampleMask_AndEvalIsIdentity()
    {
        using var x = Tensor.RandN([6, 3, 5], 4);
        x.RequiresGrad = true;
        var rng = new Rng(3);
        var state = rng.GetState();
        var y = Ops.DropPath(x, 0.5f, true, rng);
        rng.SetState(state);
        using var y2 = Ops.DropPath(x.Detach(), 0.5f, true, rng);
        Assert.Equal(y.ToFloatArray(), y2.ToFloatArray());
        using var ones = Tensor.Full([6, 3, 5], 1f);
        y.Backward(ones);
        var yv = y.ToFloatArray(); var dx = x.Grad!.ToFloatArray();
        for (int b = 0; b < 6; b++)
        {
            bool kept = Enumerable.Range(0, 15).Any(i => yv[b * 15 + i] != 0);
            for (int i = 0; i < 15; i++) Assert.Equal(kept ? 2f : 0f, dx[b * 15 + i], 6);
        }
        using var e = Ops.DropPath(x.Detach(), 0.5f, training: false);
        Assert.Equal(x.ToFloatArray(), e.ToFloatArray());
    }

    [Fact]
    public void Dropout_InsideCheckpoint_ReplaysTheSameMaskInBackward()
    {
        using var x = Tensor.RandN([9, 21], 13);
        x.RequiresGrad = true;
        var y = Checkpoint.Run(t => Ops.Dropout(t[0], 0.5f, training: true), x);
        var yv = y.ToFloatArray();
        using var ones = Tensor.Full([9, 21], 1f);
        y.Backward(ones);
        var dx = x.Grad!.ToFloatArray();
        for (int i = 0; i < yv.Length; i++) Assert.Equal(yv[i] != 0 ? 2f : 0f, dx[i]);
    }
}
