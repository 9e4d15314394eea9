using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.NN;

namespace MMSharp.Training;

/// <summary>A model the <see cref="Trainer{TBatch}"/> can train: its parameters and a scalar loss per micro-batch.</summary>
public interface ITrainableModel<TBatch>
{
    Module Module { get; }

    /// <summary>The micro-batch's (weighted) mean loss as a differentiable scalar.</summary>
    Tensor Loss(TBatch batch);

    /// <summary>Supervised (or input) tokens in the batch, for tokens/s.</summary>
    long CountTokens(TBatch batch) => 0;

    /// <summary>Samples in the batch, for samples/s.</summary>
    int CountSamples(TBatch batch) => 1;

    /// <summary>Writes the batch's inputs for <see cref="TrainerOptions.DumpTensorsDirectory"/> (e.g. input_ids.npy, labels.npy).</summary>
    void DumpBatch(TBatch batch, string directory) { }
}

/// <summary>Everything that controls a run (saved as the checkpoint's run configuration).</summary>
public sealed record TrainerOptions
{
    public required string OutputDirectory { get; init; }
    public required int MaxSteps { get; init; }
    /// <summary>
    /// Stop (with a checkpoint) after this step although the schedule runs to <see cref="MaxSteps"/>: a run split
    /// into parts with <see cref="Resume"/> then equals one uninterrupted run.
    /// </summary>
    public int? StopAfterStep { get; init; }
    /// <summary>Micro-batches per optimizer update (<see cref="BatchPlan.MicroSteps"/>).</summary>
    public int GradientAccumulationSteps { get; init; } = 1;

    public double Lr { get; init; } = 1e-5;
    public double MinLr { get; init; }
    public LrDecay Schedule { get; init; } = LrDecay.Cosine;
    /// <summary>Warmup steps; when null, <see cref="WarmupRatio"/> of <see cref="MaxSteps"/> (rounded up).</summary>
    public int? WarmupSteps { get; init; }
    public double WarmupRatio { get; init; }
    public double WeightDecay { get; init; }
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.999;
    public double Eps { get; init; } = 1e-8;
    public string[] NoDecayPatterns { get; init; } = [];
    /// <summary>Clip the global gradient norm to this (≤ 0: no clipping). HF's default is 1.0.</summary>
    public double MaxGradNorm { get; init; } = 1.0;

    public ulong Seed { get; init; } = 42;
    public int LogInterval { get; init; } = 1;
    /// <summary>Save every N steps (0: only at the end).</summary>
    public int SaveInterval { get; init; }
    public int SaveTotalLimit { get; init; }
    public bool SaveOptimizer { get; init; } = true;
    /// <summary>Save only trainable parameters (frozen ones come back from the base model) or every parameter.</summary>
    public bool SaveTrainableOnly { get; init; } = true;
    public int EvalInterval { get; init; }
    public int EvalIters { get; init; } = 1;
    /// <summary>Continue from the latest checkpoint in <see cref="OutputDirectory"/> when there is one.</summary>
    public bool Resume { get; init; }
    public bool LoadOptimizer { get; init; } = true;
    public int MaxConsecutiveBadSteps { get; init; } = 5;
    public bool TensorBoard { get; init; } = true;
    /// <summary>
    /// At the first step of a fresh run, write <c>loss.npy</c> (the first micro-batch's loss, F32 scalar),
    /// <c>grad.&lt;name&gt;.npy</c> for every trainable parameter (the accumulated gradient before clipping) and the
    /// model's <see cref="ITrainableModel{TBatch}.DumpBatch"/> of the first micro-batch into this directory.
    /// </summary>
    public string? DumpTensorsDirectory { get; init; }
    public bool ShowProgress { get; init; } = true;
}

/// <summary>
/// The training loop shared by all models: gradient accumulation, AdamW with warmup + decay, global-norm clipping,
/// non-finite-step guard, validation, metrics (jsonl + TensorBoard + progress line) and crash-safe checkpoints with
/// exact resume.
/// </summary>
/// <remarks>
/// Determinism: with the same seed, data and thread count every step is bit-identical, and so is a resumed run,
/// because a checkpoint restores everything a step depends on — fp32 master weights, AdamW moments and step count,
/// <see cref="Rng.Default"/>, the batch source position, and the step number that drives the schedule.
/// Step s (1-based) uses lr = schedule.LrAt(s - 1); its logged loss is the mean of its micro-batch losses before the
/// update; each micro-batch loss is scaled by 1/accumulation before backward.
/// </remarks>
public sealed class Trainer<TBatch>
{
    readonly ITrainableModel<TBatch> _model;
    readonly IBatchSource<TBatch> _train;
    readonly IBatchSource<TBatch>? _val;
    readonly JsonNode? _extraConfig;

    public TrainerOptions Options { get; }
    public LrSchedule Schedule { get; }
    public AdamW Optimizer { get; }
    public CheckpointManager Checkpoints { get; }
    public NonFiniteGuard Guard { get; }
    /// <summary>Number of completed steps.</summary>
    public long Step { get; private set; }
    public TextWriter Log { get; init; } = Console.Out;

    /// <summary>Test hook: runs at the start of each step (throw to simulate a crash).</summary>
    internal Action<long>? BeforeStep { get; set; }

    readonly List<(string Name, Parameter P)> _trainable;

    public Trainer(ITrainableModel<TBatch> model, IBatchSource<TBatch> train, TrainerOptions options,
        IBatchSource<TBatch>? validation = null, JsonNode? runConfig = null)
    {
        _model = model;
        _train = train;
        _val = validation;
        _extraConfig = runConfig;
        Options = options;
        if (options.MaxSteps < 1) throw new ArgumentOutOfRangeException(nameof(options), "MaxSteps must be at least 1");
        if (options.GradientAccumulationSteps < 1) throw new ArgumentOutOfRangeException(nameof(options), "GradientAccumulationSteps must be at least 1");
        int warmup = options.WarmupSteps ?? LrSchedule.WarmupStepsFromRatio(options.WarmupRatio, options.MaxSteps);
        Schedule = new LrSchedule(options.Lr, options.MaxSteps, warmup, options.Schedule, options.MinLr);
        model.Module.PrepareTrainableParameters(DType.F32); // fp32 master weights; frozen ones stay as stored
        _trainable = model.Module.NamedParameters().Where(x => x.Parameter.RequiresGrad).ToList();
        if (_trainable.Count == 0) throw new InvalidOperationException("trainer: the model has no trainable parameter (everything is frozen)");
        Optimizer = new AdamW(_trainable, new AdamWOptions
        {
            Beta1 = options.Beta1, Beta2 = options.Beta2, Eps = options.Eps,
            WeightDecay = options.WeightDecay, NoDecayPatterns = options.NoDecayPatterns,
        });
        Checkpoints = new CheckpointManager(options.OutputDirectory, options.SaveTotalLimit);
        Guard = new NonFiniteGuard(options.MaxConsecutiveBadSteps, Console.Error);
    }

    JsonNode RunConfig()
    {
        var o = JsonSerializer.SerializeToNode(Options)!.AsObject();
        if (_extraConfig != null) o["model_config"] = _extraConfig.DeepClone();
        return o;
    }

    /// <summary>Runs (or resumes) training up to <see cref="TrainerOptions.MaxSteps"/>; returns the number of completed steps.</summary>
    public long Run()
    {
        Directory.CreateDirectory(Options.OutputDirectory);
        double elapsedBefore = 0;
        long? resumed = Options.Resume ? Checkpoints.LatestIteration() : null;
        if (resumed != null) elapsedBefore = Restore(Checkpoints.Load(resumed));
        else
        {
            if (Options.Resume) Log.WriteLine($"no checkpoint in {Options.OutputDirectory}; starting from step 0");
            else if (Checkpoints.LatestIteration() is long old)
                Log.WriteLine($"warning: {Options.OutputDirectory} holds a checkpoint of step {old}; starting over (use Resume to continue it)");
            Rng.Default.Reseed(Options.Seed);
            Step = 0;
        }

        using var metrics = new MetricsWriter(Path.Combine(Options.OutputDirectory, MetricsWriter.FileName), resumed ?? (long?)null);
        using var tb = Options.TensorBoard ? new TensorBoardWriter(Path.Combine(Options.OutputDirectory, "tensorboard")) : null;
        if (resumed != null) tb?.AddSessionStart(resumed.Value + 1); // TensorBoard drops the old run's points from here on
        var progress = Options.ShowProgress ? new ProgressReporter(Options.MaxSteps, Options.LogInterval, ReferenceEquals(Log, Console.Out) ? null : Log) : null;
        var trainableParams = _trainable.Select(x => x.P).ToList();
        var runClock = Stopwatch.StartNew();
        long startStep = Step;
        long windowTokens = 0, windowSamples = 0;
        double windowStart = 0;

        long lastStep = Math.Min(Options.MaxSteps, Options.StopAfterStep ?? Options.MaxSteps);
        while (Step < lastStep)
        {
            long step = Step + 1;
            bool dump = step == 1 && Options.DumpTensorsDirectory != null;
            BeforeStep?.Invoke(step);
            _model.Module.Train();
            _model.Module.ZeroGrad();
            double lossSum = 0;
            for (int micro = 0; micro < Options.GradientAccumulationSteps; micro++)
            {
                var batch = _train.Next();
                windowTokens += _model.CountTokens(batch);
                windowSamples += _model.CountSamples(batch);
                using var scope = TensorScope.Begin();
                var loss = _model.Loss(batch);
                if (loss.NumEl != 1) throw new InvalidOperationException($"trainer: Loss returned {loss.Describe()}, expected a scalar");
                lossSum += loss.Item();
                if (dump && micro == 0)
                {
                    Directory.CreateDirectory(Options.DumpTensorsDirectory!);
                    _model.DumpBatch(batch, Options.DumpTensorsDirectory!);
                    using var l = Ops.Reshape(loss.Detach(), []);
                    Engine.IO.Npy.Write(Path.Combine(Options.DumpTensorsDirectory!, "loss.npy"), l);
                }
                var scaled = Options.GradientAccumulationSteps == 1 ? loss : Ops.Mul(loss, 1f / Options.GradientAccumulationSteps);
                scaled.Backward();
            }
            if (dump)
                foreach (var (name, p) in _trainable)
                    if (p.Grad != null) Engine.IO.Npy.Write(Path.Combine(Options.DumpTensorsDirectory!, $"grad.{name}.npy"), p.Grad);
            double stepLoss = lossSum / Options.GradientAccumulationSteps;
            double lr = Schedule.LrAt(step - 1);
            var norm = GradientClipping.ClipGlobalNorm(trainableParams, Options.MaxGradNorm);
            if (Guard.Check(step, stepLoss, norm.Norm) == StepVerdict.Apply)
                using (GradMode.NoGrad()) Optimizer.Step(lr);
            _model.Module.ZeroGrad();
            Step = step;

            double? valLoss = Options.EvalInterval > 0 && _val != null && (step % Options.EvalInterval == 0 || step == Options.MaxSteps)
                ? Evaluate() : null;

            double now = runClock.Elapsed.TotalSeconds;
            if (step % Options.LogInterval == 0 || step == Options.MaxSteps || valLoss != null)
            {
                double dt = Math.Max(1e-9, now - windowStart);
                var m = new StepMetrics(step, stepLoss, lr, norm.Norm, windowTokens / dt, windowSamples / dt, elapsedBefore + now, valLoss);
                metrics.Write(m);
                tb?.AddScalars(step, Scalars(m));
                windowTokens = 0; windowSamples = 0; windowStart = now;
                progress?.Report(step, stepLoss, lr, m.TokensPerSecond, now, step - startStep, valLoss);
            }

            if ((Options.SaveInterval > 0 && step % Options.SaveInterval == 0) || step == lastStep)
                Save(elapsedBefore + runClock.Elapsed.TotalSeconds);
        }
        return Step;
    }

    static IEnumerable<KeyValuePair<string, double>> Scalars(StepMetrics m)
    {
        yield return new("train/loss", m.Loss);
        yield return new("train/lr", m.Lr);
        yield return new("train/grad_norm", m.GradNorm);
        yield return new("train/tokens_per_s", m.TokensPerSecond);
        if (m.ValLoss is { } v) yield return new("val/loss", v);
    }

    /// <summary>Mean loss over <see cref="TrainerOptions.EvalIters"/> validation batches, always the same ones (the source restarts).</summary>
    public double Evaluate()
    {
        if (_val == null) throw new InvalidOperationException("trainer: no validation data");
        var start = _val.GetState();
        _model.Module.Eval();
        double sum = 0;
        try
        {
            using var noGrad = GradMode.NoGrad();
            for (int i = 0; i < Options.EvalIters; i++)
            {
                using var scope = TensorScope.Begin();
                sum += _model.Loss(_val.Next()).Item();
            }
        }
        finally
        {
            _val.SetState(start);
            _model.Module.Train();
        }
        return sum / Options.EvalIters;
    }

    void Save(double elapsed)
    {
        var model = _model.Module.NamedParameters()
            .Where(x => !Options.SaveTrainableOnly || x.Parameter.RequiresGrad)
            .Select(x => KeyValuePair.Create(x.Name, x.Parameter.Data));
        Checkpoints.Save(new CheckpointContent
        {
            Iteration = Step,
            Model = model,
            Optimizer = Options.SaveOptimizer ? Optimizer : null,
            RngState = Rng.Default.GetState(),
            DataState = _train.GetState(),
            Config = RunConfig(),
            TrainerState = new JsonObject
            {
                ["elapsed_s"] = elapsed,
                ["bad_steps_consecutive"] = Guard.Consecutive,
                ["bad_steps_total"] = Guard.Total,
                ["threads"] = Engine.Kernels.Par.Threads,
            },
        });
    }

    /// <summary>Settings that may differ between the parts of one run without changing its result.</summary>
    static readonly HashSet<string> PerInvocation = [nameof(TrainerOptions.Resume), nameof(TrainerOptions.StopAfterStep),
        nameof(TrainerOptions.LoadOptimizer), nameof(TrainerOptions.ShowProgress), nameof(TrainerOptions.DumpTensorsDirectory),
        nameof(TrainerOptions.OutputDirectory), nameof(TrainerOptions.TensorBoard)];

    void WarnOnConfigChange(LoadedCheckpoint ckpt)
    {
        if (ckpt.Config is not JsonObject saved) return;
        var now = RunConfig().AsObject();
        var changed = now.Where(kv => !PerInvocation.Contains(kv.Key) && saved.ContainsKey(kv.Key)
                                      && !JsonNode.DeepEquals(kv.Value, saved[kv.Key]))
                         .Select(kv => $"{kv.Key}: {saved[kv.Key]?.ToJsonString()} -> {kv.Value?.ToJsonString()}").ToList();
        if (changed.Count > 0)
            Log.WriteLine($"warning: resuming {ckpt.Directory} with changed settings (the loss curve will differ from an uninterrupted run): {string.Join(", ", changed)}");
    }

    /// <summary>Restores weights, optimizer, RNG and data position; returns the elapsed time of the earlier runs.</summary>
    double Restore(LoadedCheckpoint ckpt)
    {
        using (var reader = Engine.IO.CheckpointReader.Open(ckpt.ModelPath))
        using (GradMode.NoGrad())
        {
            foreach (var (name, p) in _trainable)
                if (!reader.Has(name))
                    throw new InvalidDataException($"checkpoint {ckpt.Directory} has no tensor for trainable parameter '{name}'");
            foreach (var (name, p) in _model.Module.NamedParameters())
            {
                if (!reader.Has(name)) continue;
                using var t = reader.Get(name);
                if (!t.Shape.AsSpan().SequenceEqual(p.Shape))
                    throw new InvalidDataException($"checkpoint {ckpt.Directory}: '{name}' is {t.Describe()}, the model has {Tensor.ShapeString(p.Shape)}");
                if (p.RequiresGrad) Ops.CopyInto(t, p.Data); // keep the optimizer's master-weight tensor
                else p.Set(t);                               // frozen: stay memory-mapped
            }
        }
        WarnOnConfigChange(ckpt);
        Optimizer.Reset();
        if (Options.LoadOptimizer)
        {
            if (ckpt.OptimizerPath == null)
                Log.WriteLine($"warning: checkpoint {ckpt.Directory} has no optimizer state; starting a fresh optimizer");
            else Optimizer.Load(ckpt.OptimizerPath);
        }
        if (ckpt.RngState != null) Rng.Default.SetState(ckpt.RngState);
        if (ckpt.DataState != null) _train.SetState(ckpt.DataState);
        Step = ckpt.Iteration;
        var ts = ckpt.TrainerState;
        Guard.Consecutive = ts?["bad_steps_consecutive"]?.GetValue<int>() ?? 0;
        Guard.Total = ts?["bad_steps_total"]?.GetValue<int>() ?? 0;
        if (ts?["threads"]?.GetValue<int>() is int threads && threads != Engine.Kernels.Par.Threads)
            Log.WriteLine($"warning: the checkpoint was written with {threads} threads, this run uses {Engine.Kernels.Par.Threads}; " +
                          "results stay correct but are no longer bit-identical to an uninterrupted run");
        Log.WriteLine($"resumed from {ckpt.Directory} (step {Step})");
        return ts?["elapsed_s"]?.GetValue<double>() ?? 0;
    }
}
