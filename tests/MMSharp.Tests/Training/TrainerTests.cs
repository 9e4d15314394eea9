using MMSharp.Engine;
using MMSharp.NN;
using MMSharp.Tests.IO;
using MMSharp.Training;

namespace MMSharp.Tests.Training;

/// <summary>Tests that reseed or draw from <see cref="Rng.Default"/> (dropout, drop-path: the trainer, recomputation,
/// the dropout op) run alone, so no other test draws from it between a reseed and the draws it fixes.</summary>
[CollectionDefinition(nameof(TrainerCollection), DisableParallelization = true)]
public sealed class TrainerCollection;

/// <summary>y = fc2(dropout(silu(fc1(x)))) with HF-style names, trained by MSE on synthetic regression data.</summary>
sealed class TinyMlp : Module, ITrainableModel<(Tensor X, Tensor Y)>
{
    public sealed class Lin : Module
    {
        public readonly Parameter Weight, Bias;
        public Lin(int inF, int outF, ulong seed)
        {
            using var w = Tensor.RandN([outF, inF], seed, std: 1f / MathF.Sqrt(inF));
            using var b = Tensor.Zeros(outF);
            Weight = RegisterParameter("weight", w);
            Bias = RegisterParameter("bias", b);
        }
    }

    public readonly Lin Fc1, Fc2;
    public float DropoutP { get; init; } = 0.1f;

    public TinyMlp(ulong seed)
    {
        Fc1 = RegisterModule("fc1", new Lin(5, 17, seed));
        Fc2 = RegisterModule("fc2", new Lin(17, 1, seed + 1));
    }

    public Module Module => this;

    public Tensor Loss((Tensor X, Tensor Y) b)
    {
        var h = Ops.Silu(Ops.Linear(b.X, Fc1.Weight, Fc1.Bias));
        h = Ops.Dropout(h, DropoutP, Training);   // Rng.Default: its state must survive resume
        var d = Ops.Sub(Ops.Linear(h, Fc2.Weight, Fc2.Bias), b.Y);
        return Ops.Mean(Ops.Mul(d, d));
    }

    public long CountTokens((Tensor X, Tensor Y) b) => b.X.Shape[0];
    public int CountSamples((Tensor X, Tensor Y) b) => b.X.Shape[0];

    public static List<(Tensor X, Tensor Y)> Data(int batches, ulong seed)
    {
        var list = new List<(Tensor, Tensor)>();
        for (int i = 0; i < batches; i++)
        {
            var x = Tensor.RandN([8, 5], seed + (ulong)i);
            var xs = x.ToFloatArray();
            var y = new float[8];
            for (int r = 0; r < 8; r++) y[r] = MathF.Sin(xs[r * 5]) + 0.5f * xs[r * 5 + 1] * xs[r * 5 + 2] - 0.3f * xs[r * 5 + 4];
            list.Add((x, Tensor.FromArray(y, 8, 1)));
        }
        return list;
    }
}

[Collection(nameof(TrainerCollection))]
public class TrainerTests
{
    static readonly List<(Tensor X, Tensor Y)> TrainData = TinyMlp.Data(13, 1000);
    static readonly List<(Tensor X, Tensor Y)> ValData = TinyMlp.Data(3, 5000);

    internal static TrainerOptions Options(string dir) => new()
    {
        OutputDirectory = dir,
        MaxSteps = 40,
        GradientAccumulationSteps = 2,
        Lr = 3e-2,
        MinLr = 1e-3,
        WarmupRatio = 0.1,
        WeightDecay = 0.01,
        MaxGradNorm = 1.0,
        Seed = 7,
        SaveInterval = 10,
        EvalInterval = 10,
        EvalIters = 2,
        ShowProgress = false,
    };

    internal static long Train(TrainerOptions o, Action<long>? beforeStep = null)
    {
        using var model = new TinyMlp(3);
        var trainer = new Trainer<(Tensor, Tensor)>(model, new ListBatchSource<(Tensor, Tensor)>(TrainData, seed: 11),
            o, new ListBatchSource<(Tensor, Tensor)>(ValData, seed: 0, shuffle: false)) { Log = new StringWriter() };
        trainer.BeforeStep = beforeStep;
        return trainer.Run();
    }

    internal static List<StepMetrics> Metrics(string dir) => MetricsWriter.Read(Path.Combine(dir, MetricsWriter.FileName));

    internal static void AssertSameLosses(List<StepMetrics> want, List<StepMetrics> got)
    {
        Assert.Equal(want.Select(m => m.Step), got.Select(m => m.Step));
        for (int i = 0; i < want.Count; i++)
        {
            Assert.True(BitConverter.DoubleToInt64Bits(want[i].Loss) == BitConverter.DoubleToInt64Bits(got[i].Loss),
                $"step {want[i].Step}: loss {want[i].Loss:R} vs {got[i].Loss:R}");
            Assert.Equal(want[i].Lr, got[i].Lr);
            Assert.Equal(want[i].GradNorm, got[i].GradNorm);
            Assert.Equal(want[i].ValLoss, got[i].ValLoss);
        }
    }

    [Fact]
    public void Train40_LearnsAndIsDeterministic()
    {
        using var a = new TempDir();
        using var b = new TempDir();
        Assert.Equal(40, Train(Options(a.Path)));
        Train(Options(b.Path));
        var ma = Metrics(a.Path);
        Assert.Equal(40, ma.Count);
        Assert.True(ma[^1].Loss < 0.5 * ma[0].Loss, $"loss {ma[0].Loss} -> {ma[^1].Loss}");
        Assert.Equal(0.0, ma[0].Lr);                              // warmup starts at 0 (HF)
        Assert.NotNull(ma[9].ValLoss);
        Assert.Null(ma[8].ValLoss);
        AssertSameLosses(ma, Metrics(b.Path));
        Assert.Equal(40, new CheckpointManager(a.Path).LatestIteration());
        Assert.Single(Directory.GetFiles(Path.Combine(a.Path, "tensorboard")));
    }

    [Fact]
    public void Train20ThenResumeTo40_GivesBitIdenticalLosses()
    {
        using var full = new TempDir();
        using var split = new TempDir();
        Train(Options(full.Path));
        Assert.Equal(20, Train(Options(split.Path) with { StopAfterStep = 20 }));
        Assert.Equal(20, Metrics(split.Path).Count);
        Rng.Default.Reseed(12345);                                 // a new process would not share the generator
        Assert.Equal(40, Train(Options(split.Path) with { Resume = true }));
        AssertSameLosses(Metrics(full.Path), Metrics(split.Path));
    }

    [Fact]
    public void CrashAtStep27_ThenResume_GivesBitIdenticalLosses()
    {
        using var full = new TempDir();
        using var crashed = new TempDir();
        Train(Options(full.Path));
        var e = Assert.Throws<InvalidOperationException>(() =>
            Train(Options(crashed.Path), step => { if (step == 27) throw new InvalidOperationException("simulated crash"); }));
        Assert.Equal("simulated crash", e.Message);
        Assert.Equal(26, Metrics(crashed.Path).Count);            // everything logged before the crash is on disk
        Assert.Equal(20, new CheckpointManager(crashed.Path).LatestIteration());
        Rng.Default.Reseed(12345);
        Train(Options(crashed.Path) with { Resume = true });
        AssertSameLosses(Metrics(full.Path), Metrics(crashed.Path));
    }

    [Fact]
    public void Resume_WithoutOptimizerState_Diverges_AndSaveTotalLimitPrunes()
    {
        using var full = new TempDir();
        using var split = new TempDir();
        Train(Options(full.Path));
        Train(Options(split.Path) with { StopAfterStep = 20, SaveOptimizer = false, SaveTotalLimit = 1 });
        Assert.Equal([20L], new CheckpointManager(split.Path).ListIterations());
        Train(Options(split.Path) with { Resume = true });
        var a = Metrics(full.Path); var b = Metrics(split.Path);
        Assert.Equal(a[19].Loss, b[19].Loss);
        Assert.NotEqual(a[25].Loss, b[25].Loss);                  // fresh AdamW moments change the curve
    }

    [Fact]
    public void DumpTensors_WritesLossAndEveryTrainableGradientAtFirstStep()
    {
        using var dir = new TempDir();
        using var model = new TinyMlp(3) { DropoutP = 0 };
        model.Fc2.Freeze();
        var o = Options(dir.Path) with { MaxSteps = 2, GradientAccumulationSteps = 1, DumpTensorsDirectory = dir.File("dump") };
        var first = TrainData.ToList();
        new Trainer<(Tensor, Tensor)>(model, new ListBatchSource<(Tensor, Tensor)>(first, 11), o) { Log = new StringWriter() }.Run();
        var files = Directory.GetFiles(dir.File("dump")).Select(f => Path.GetFileName(f)!).Order().ToArray();
        Assert.Equal(["grad.fc1.bias.npy", "grad.fc1.weight.npy", "loss.npy"], files);
        using var loss = MMSharp.Engine.IO.Npy.Read(dir.File("dump/loss.npy"));
        Assert.Empty(loss.Shape);
        Assert.Equal(MetricsWriter.Read(dir.File("metrics.jsonl"))[0].Loss, (double)loss.Item());
        using var g = MMSharp.Engine.IO.Npy.Read(dir.File("dump/grad.fc1.weight.npy"));
        Assert.Equal([17, 5], g.Shape);
    }

    [Fact]
    public void Resume_WarnsWhenScheduleSettingsChanged()
    {
        using var dir = new TempDir();
        Train(Options(dir.Path) with { StopAfterStep = 10 });
        using var model = new TinyMlp(3);
        var log = new StringWriter();
        new Trainer<(Tensor, Tensor)>(model, new ListBatchSource<(Tensor, Tensor)>(TrainData, 11),
            Options(dir.Path) with { Resume = true, MaxSteps = 12 }) { Log = log }.Run();
        Assert.Contains("changed settings", log.ToString());
        Assert.Contains("MaxSteps: 40 -> 12", log.ToString());
        Assert.Contains("resumed from", log.ToString());
    }

    [Fact]
    public void NaNLoss_SkipsUpdates_ThenStops()
    {
        using var dir = new TempDir();
        using var model = new TinyMlp(3);
        var nanData = TrainData.Select(b => (b.X, Ops.Mul(b.Y, float.NaN))).ToList();
        var before = model.Fc1.Weight.Data.ToFloatArray();
        var trainer = new Trainer<(Tensor, Tensor)>(model, new ListBatchSource<(Tensor, Tensor)>(nanData, 1),
            Options(dir.Path) with { MaxConsecutiveBadSteps = 3 }) { Log = new StringWriter() };
        var e = Assert.Throws<TrainingDivergedException>(() => trainer.Run());
        Assert.Contains("step 3", e.Message);
        Assert.Equal(before, model.Fc1.Weight.Data.ToFloatArray());
        Assert.Null(new CheckpointManager(dir.Path).LatestIteration());
    }
}

[Collection(nameof(TrainerCollection))]
public class TrainerMasterWeightTests
{
    [Fact]
    public void Constructor_GivesBF16TrainableParametersFp32MasterCopies_AndLeavesFrozenOnesBF16()
    {
        using var dir = new TempDir();
        using var model = new TinyMlp(3);
        foreach (var (_, p) in model.NamedParameters()) { using var b = p.Data.To(DType.BF16); p.Set(b); }
        model.Fc1.Freeze();
        foreach (var p in model.Fc2.Parameters()) p.RequiresGrad = true;
        _ = new Trainer<(Tensor, Tensor)>(model, new ListBatchSource<(Tensor, Tensor)>(TinyMlp.Data(1, 1), 1),
            new TrainerOptions { OutputDirectory = dir.Path, MaxSteps = 1 });
        Assert.Equal(DType.F32, model.Fc2.Weight.DType);
        Assert.Equal(DType.BF16, model.Fc1.Weight.DType);
    }
}
