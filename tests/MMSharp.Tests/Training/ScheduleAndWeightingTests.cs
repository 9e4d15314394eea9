using MMSharp.Engine;
using MMSharp.NN;
using MMSharp.Training;

namespace MMSharp.Tests.Training;

public class LrScheduleTests
{
    [Fact]
    public void Cosine_MatchesHfFormula_AtHandComputedSteps()
    {
        var s = new LrSchedule(PeakLr: 1e-3, TotalSteps: 13, WarmupSteps: 3);
        Assert.Equal(0.0, s.LrAt(0));                       // first update: lambda(0) = 0 (HF)
        Assert.Equal(1e-3 / 3, s.LrAt(1), 15);
        Assert.Equal(1e-3, s.LrAt(3), 15);                  // end of warmup: cos(0) = 1
        Assert.Equal(0.5e-3, s.LrAt(8), 15);                // p = 0.5
        Assert.Equal(1e-3 * 0.5 * (1 + Math.Cos(Math.PI * 0.3)), s.LrAt(6), 15);
        Assert.Equal(0.0, s.LrAt(13), 15);
    }

    [Fact]
    public void Cosine_DecaysToMinLr()
    {
        var s = new LrSchedule(1e-3, 13, 3, LrDecay.Cosine, MinLr: 1e-4);
        Assert.Equal(1e-3, s.LrAt(3), 15);
        Assert.Equal(1e-4 + 0.9e-3 * 0.5, s.LrAt(8), 15);
        Assert.Equal(1e-4, s.LrAt(13), 15);
        Assert.Equal(0.0, s.LrAt(0));                       // warmup still starts at 0
    }

    [Fact]
    public void LinearAndConstant_MatchHfFormulas()
    {
        var lin = new LrSchedule(2.0, 13, 3, LrDecay.Linear);
        Assert.Equal(1.0, lin.LrAt(8), 15);                 // (13-8)/10
        Assert.Equal(0.0, lin.LrAt(13), 15);
        Assert.Equal(0.0, lin.LrAt(20), 15);                // max(0, ...)
        var con = new LrSchedule(2.0, 13, 4, LrDecay.Constant);
        Assert.Equal(1.0, con.LrAt(2), 15);
        Assert.Equal(2.0, con.LrAt(12), 15);
    }

    [Theory]
    [InlineData(0.03, 1000, 30)]
    [InlineData(0.03, 100, 3)]
    [InlineData(0.03, 10, 1)]   // ceil(0.3)
    [InlineData(0.0, 10, 0)]
    public void WarmupRatio_RoundsUpLikeHf(double ratio, int total, int expected) =>
        Assert.Equal(expected, LrSchedule.WarmupStepsFromRatio(ratio, total));

    [Fact]
    public void NoWarmup_FirstStepUsesPeak()
    {
        var s = new LrSchedule(1e-5, 100);
        Assert.Equal(1e-5, s.LrAt(0));
    }
}

public class LossWeightingTests
{
    [Theory]
    [InlineData(0, LossReduction.Sample, 0.0)]
    [InlineData(0, LossReduction.Square, 0.0)]
    [InlineData(0, LossReduction.Token, 0.0)]
    [InlineData(7, LossReduction.Token, 1.0)]
    [InlineData(4, LossReduction.Sample, 0.25)]
    [InlineData(4, LossReduction.Square, 0.5)]
    [InlineData(2, LossReduction.Square, 0.70710678118654746)]
    public void Len2Weight_MatchesOfficialDefinition(int n, LossReduction r, double expected) =>
        Assert.Equal(expected, LossWeighting.Len2Weight(n, r), 15);

    // three packed samples: n_eff = 2, 1, 4
    static readonly long[] Labels = [-100, 5, 6, -100, /**/ -100, 7, /**/ 8, 9, 10, 11, /**/ -100];
    static readonly int[] Cu = [0, 4, 6, 10];

    [Fact]
    public void PackedTokenWeights_Square_HandDerived()
    {
        var w = LossWeighting.PackedTokenWeights(Labels, Cu, LossReduction.Square);
        float r2 = (float)(1 / Math.Sqrt(2));
        Assert.Equal([0, r2, r2, 0, 0, 1, 0.5f, 0.5f, 0.5f, 0.5f, 0], w);
    }

    [Fact]
    public void PackedTokenWeights_SampleAndToken_HandDerived()
    {
        Assert.Equal([0, 0.5f, 0.5f, 0, 0, 1, 0.25f, 0.25f, 0.25f, 0.25f, 0], LossWeighting.PackedTokenWeights(Labels, Cu, LossReduction.Sample));
        Assert.Equal([0, 1, 1, 0, 0, 1, 1, 1, 1, 1, 0], LossWeighting.PackedTokenWeights(Labels, Cu, LossReduction.Token));
    }

    [Fact]
    public void SampleReduction_GivesEachSampleEqualWeight()
    {
        // shifted weights (the first label has no prediction; it is -100 here, so nothing is lost)
        var w = LossWeighting.Shift<float>(LossWeighting.PackedTokenWeights(Labels, Cu, LossReduction.Sample));
        var ce = new double[w.Length];
        for (int i = 0; i < ce.Length; i++) ce[i] = i + 1;
        // per-sample means over supervised shifted positions: sample0 (1,2) -> 1.5, sample1 (5) -> 5, sample2 (6..9) -> 7.5
        Assert.Equal((1.5 + 5 + 7.5) / 3, LossWeighting.WeightedMean(ce, w), 12);
    }

    [Fact]
    public void BatchPlan_CountsMicroSteps_AndRejectsIndivisible()
    {
        var p = new BatchPlan(4, 128);
        Assert.Equal(32, p.MicroSteps);
        Assert.Equal(1f / 32, p.LossScale);
        Assert.Equal(4, new BatchPlan(2, 16, dataParallel: 2).MicroSteps);
        Assert.Throws<ArgumentException>(() => new BatchPlan(3, 128));
        Assert.Throws<ArgumentException>(() => new BatchPlan(4, 2));
    }

    [Fact]
    public void StepsForEpochs_DropsIncompleteGlobalBatch_AndRoundsUp()
    {
        var p = new BatchPlan(4, 128);
        Assert.Equal(7, p.StepsForEpochs(1000, 1));    // floor(1000/128) = 7
        Assert.Equal(11, p.StepsForEpochs(1000, 1.5)); // ceil(10.5)
        Assert.Throws<ArgumentException>(() => p.StepsForEpochs(100, 1));
    }
}

public class GradientClippingTests
{
    sealed class Two : Module
    {
        public Two()
        {
            RegisterParameter("a", Tensor.RandN([3, 6 * 16 + 7], 1));
            RegisterParameter("b", Tensor.RandN([40000], 2)); // several norm blocks
        }
    }

    static double RefNorm(Module m) =>
        Math.Sqrt(m.Parameters().Sum(p => p.Grad!.ToFloatArray().Sum(v => (double)v * v)));

    [Fact]
    public void GlobalNorm_MatchesFloat64_AndClipScalesToMaxNorm()
    {
        using var m = new Two();
        foreach (var p in m.Parameters()) p.Data.Grad = Tensor.RandN(p.Shape, 9, std: 2f);
        double want = RefNorm(m);
        var r = GradientClipping.ClipGlobalNorm(m.Parameters().ToList(), 1.0);
        Assert.Equal(want, r.Norm, want * 1e-6);
        Assert.True(r.Clipped);
        Assert.Equal(1.0, RefNorm(m), 1e-5);
        var again = GradientClipping.ClipGlobalNorm(m.Parameters().ToList(), 1.0);
        Assert.Equal(1.0, again.Norm, 1e-5); // the clipped gradients measure maxNorm (up to torch's +1e-6)
    }

    [Fact]
    public void NonFiniteGradient_IsReported_AndNothingIsScaled()
    {
        using var m = new Two();
        foreach (var p in m.Parameters()) p.Data.Grad = Tensor.Full(p.Shape, 3f);
        m.GetParameter("b").Grad!.SetFlat(17, float.NaN);
        var r = GradientClipping.ClipGlobalNorm(m.Parameters().ToList(), 1.0);
        Assert.False(r.IsFinite);
        Assert.False(r.Clipped);
        Assert.Equal(3f, m.GetParameter("a").Grad!.GetFlat(0));
    }

    [Fact]
    public void Guard_SkipsBadSteps_ThenStopsWithClearMessage()
    {
        var log = new StringWriter();
        var g = new NonFiniteGuard(3, log);
        Assert.Equal(StepVerdict.Skip, g.Check(1, double.NaN, 1));
        Assert.Equal(StepVerdict.Apply, g.Check(2, 1.0, 1));
        Assert.Equal(0, g.Consecutive);
        Assert.Equal(StepVerdict.Skip, g.Check(3, 1.0, double.PositiveInfinity));
        Assert.Equal(StepVerdict.Skip, g.Check(4, double.NaN, 1));
        var e = Assert.Throws<TrainingDivergedException>(() => g.Check(5, double.NaN, 1));
        Assert.Contains("3 consecutive", e.Message);
        Assert.Contains("checkpoint is intact", e.Message);
        Assert.Contains("step 1: loss NaN; update skipped", log.ToString());
    }
}
