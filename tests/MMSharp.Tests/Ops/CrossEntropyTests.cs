using MMSharp.Engine;

namespace MMSharp.Tests.EngineOps;


public sealed class CrossEntropyTests
{
    static (Tensor logits, Tensor targets) Batch(int n, int v, params int[] ignoredRows)
    {
        var logits = Tensor.RandN([n, v], 3);
        var t = new long[n];
        for (int i = 0; i < n; i++) t[i] = (i * 7 + 3) % v;
        foreach (var i in ignoredRows) t[i] = -100;
        return (logits, Tensor.FromArray(t, n));
    }

    [Fact]
    public void SumCount_CountsNonIgnoredTargets_AndSumIsMeanTimesCount()
    {
        var (logits, targets) = Batch(6, 11, 1, 4);
        var (sum, count) = Ops.CrossEntropySumCount(logits, targets);
        var mean = Ops.CrossEntropy(logits, targets);
        Assert.Equal(4, count);
        Assert.Equal(mean.Item() * count, sum.Item(), 4);
    }

    [Fact]
    public void SumCount_GivesZeroAndZero_WhenEveryTargetIsIgnored_WhileMeanIsNaN()
    {
        var (logits, targets) = Batch(3, 5, 0, 1, 2);
        logits.RequiresGrad = true;
        var (sum, count) = Ops.CrossEntropySumCount(logits, targets);
        Assert.Equal(0, count);
        Assert.Equal(0f, sum.Item());
        sum.Backward();
        Assert.All(logits.Grad!.ToFloatArray(), g => Assert.Equal(0f, g));
        Assert.True(float.IsNaN(Ops.CrossEntropy(logits.Detach(), targets).Item()));
    }

    [Fact]
    public void SumCount_Gradient_EqualsCountTimesMeanGradient()
    {
        var (logits, targets) = Batch(5, 9, 2);
        var a = logits.Detach(); a.RequiresGrad = true;
        var b = logits.Detach(); b.RequiresGrad = true;
        var (sum, count) = Ops.CrossEntropySumCount(a, targets);
        sum.Backward();
        Ops.CrossEntropy(b, targets).Backward();
        var ga = a.Grad!.ToFloatArray();
        var gb = b.Grad!.ToFloatArray();
        for (int i = 0; i < ga.Length; i++) Assert.Equal(ga[i], gb[i] * count, 5);
        // ignored row gets no gradient, other rows sum to zero (softmax - onehot)
        for (int j = 0; j < 9; j++) Assert.Equal(0f, ga[2 * 9 + j]);
        Assert.Equal(0.0, ga.AsSpan(0, 9).ToArray().Sum(), 5);
    }

    [Fact]
    public void Weighted_MeanDividesByWeightSumOfNonIgnored()
    {
        var (logits, targets) = Batch(4, 7, 3);
        var w = Tensor.FromArray([0.5f, 2f, 1f, 100f], 4);
        var none = Ops.CrossEntropy(logits, targets, reduction: Reduction.None).ToFloatArray();
        var mean = Ops.CrossEntropy(logits, targets, weights: w).Item();
        Assert.Equal((0.5 * none[0] + 2 * none[1] + none[2]) / 3.5, mean, 5);
        Assert.Equal(0f, none[3]);
    }

    [Fact]
    public void Throws_NamingTarget_WhenOutOfRange()
    {
        var logits = Tensor.Zeros(2, 5);
        var targets = Tensor.FromArray(new long[] { 1, 5 }, 2);
        var e = Assert.Throws<ArgumentException>(() => Ops.CrossEntropy(logits, targets));
        Assert.Contains("target 5", e.Message);
        Assert.Contains("cross_entropy", e.Message);
    }

    [Fact]
    public void Throws_WhenTargetShapeDiffers()
    {
        var e = Assert.Throws<ArgumentException>(() => Ops.CrossEntropy(Tensor.Zeros(3, 5), Tensor.FromArray(new long[] { 1, 2 }, 2)));
        Assert.Contains("[3]", e.Message);
    }

    [Fact]
    public void LargeVocab_MatchesFloat64Reference_InParallel()
    {
        int n = 64, v = 4099;
        var (logits, targets) = Batch(n, v, 5, 17);
        logits.RequiresGrad = true;
        var loss = Ops.CrossEntropy(logits, targets);
        loss.Backward();
        var x = logits.ToFloatArray();
        var t = targets.ToLongArray();
        var g = logits.Grad!.ToFloatArray();
        double sum = 0; int count = 0;
        var lse = new double[n];
        for (int i = 0; i < n; i++)
        {
            double m = double.NegativeInfinity;
            for (int j = 0; j < v; j++) m = Math.Max(m, x[i * v + j]);
            double s = 0;
            for (int j = 0; j < v; j++) s += Math.Exp(x[i * v + j] - m);
            lse[i] = m + Math.Log(s);
            if (t[i] == -100) continue;
            sum += lse[i] - x[i * v + t[i]]; count++;
        }
        Assert.Equal(sum / count, loss.Item(), 4);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < v; j += 37)
            {
                double expect = t[i] == -100 ? 0 : (Math.Exp(x[i * v + j] - lse[i]) - (j == t[i] ? 1 : 0)) / count;
                Assert.True(Math.Abs(g[i * v + j] - expect) < 1e-7, $"grad[{i},{j}] {g[i * v + j]} vs {expect}");
            }
    }
}
