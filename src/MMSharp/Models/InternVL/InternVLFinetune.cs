using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using MMSharp.Data;
using MMSharp.Engine;
using MMSharp.Text;
using MMSharp.Training;
using TrainLossReduction = MMSharp.Training.LossReduction;

namespace MMSharp.Models.InternVL;

/// <summary>
/// Every setting of <c>mmsharp finetune</c>. The JSON names (kebab case, as the flags without "--") are those of
/// <c>--config FILE.json</c>; flags given on the command line override the file.
/// </summary>
public sealed record FinetuneSettings
{
    public string? Model { get; set; }
    public string? Data { get; set; }
    public string? Output { get; set; }
    public string? ValData { get; set; }
    public double ValRate { get; set; }
    public int EvalInterval { get; set; }
    public int EvalIters { get; set; } = 10;
    public int? MaxSteps { get; set; }
    public double? Epochs { get; set; }
    public double Lr { get; set; } = 1e-5;
    public double MinLr { get; set; }
    public string LrScheduler { get; set; } = "cosine";
    public double WeightDecay { get; set; } = 0.05;
    public double WarmupRatio { get; set; } = 0.03;
    public int? WarmupSteps { get; set; }
    public int MicroBatchSize { get; set; } = 1;
    public int? GlobalBatchSize { get; set; }
    public double MaxGradNorm { get; set; } = 1.0;
    public ulong Seed { get; set; } = 42;
    public int LogInterval { get; set; } = 1;
    public bool FreezeVision { get; set; }
    public bool FreezeMlp { get; set; }
    public bool FreezeLlm { get; set; }
    public int LoraLlm { get; set; }
    public int LoraVision { get; set; }
    public float? LoraAlpha { get; set; }
    public float LoraDropout { get; set; } = 0.05f;
    public bool Recompute { get; set; }
    public string LossReduction { get; set; } = "token";
    public int SaveInterval { get; set; }
    public int SaveTotalLimit { get; set; }
    public bool NoSaveOptim { get; set; }
    public bool Resume { get; set; }
    public int? StopAfterStep { get; set; }
    public bool NoLoadOptim { get; set; }
    public string? DumpTensors { get; set; }
    public int MaxSeqLength { get; set; } = 8192;
    public int? MaxDynamicPatch { get; set; }
    public bool GroupByLength { get; set; }
    public bool Packing { get; set; }
    public int MaxPackedTokens { get; set; } = 4096;
    public bool Streaming { get; set; }
    public long? MaxSamples { get; set; }
    public bool NoProgress { get; set; }
    public bool NoTensorboard { get; set; }

    /// <summary>
    /// Settings (JSON names) that may differ between the parts of one run without changing its result; they are left
    /// out of the run configuration saved with a checkpoint, which a resume compares with its own.
    /// </summary>
    public static readonly string[] PerInvocation = ["output", "resume", "stop-after-step", "no-load-optim", "dump-tensors", "no-progress", "no-tensorboard"];

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.KebabCaseLower, WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true, UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    };

    public static FinetuneSettings Load(string path)
    {
        try { return JsonSerializer.Deserialize<FinetuneSettings>(File.ReadAllText(path), Json) ?? new(); }
        catch (JsonException e) { throw new ArgumentException($"--config {path}: {e.Message}"); }
    }
}

/// <summary>Runs a fine-tuning job: model, freezing/LoRA, data, and the shared <see cref="Trainer{TBatch}"/>.</summary>
public static class FinetuneRunner
{
    /// <summary>Runs (or resumes) the job; returns the directory of the last checkpoint.</summary>
    public static string Run(FinetuneSettings s, TextWriter log)
    {
        string modelDir = s.Model ?? throw new ArgumentException("finetune: --model is required");
        string dataPath = s.Data ?? throw new ArgumentException("finetune: --data is required");
        string output = s.Output ?? throw new ArgumentException("finetune: --output is required");
        if (s.MaxSteps == null && s.Epochs == null) throw new ArgumentException("finetune: give --max-steps or --epochs");
        var reduction = Enum.Parse<TrainLossReduction>(s.LossReduction, ignoreCase: true);
        var decay = Enum.Parse<LrDecay>(s.LrScheduler, ignoreCase: true);
        if (s.Packing && s.MaxPackedTokens < 2) throw new ArgumentException($"finetune: --max-packed-tokens {s.MaxPackedTokens} must be at least 2");
        var plan = new BatchPlan(s.MicroBatchSize, s.GlobalBatchSize ?? s.MicroBatchSize);

        var spec = new FinetuneModelSpec(modelDir, s.LoraLlm, s.LoraVision, s.LoraAlpha, s.LoraDropout);
        using var model = spec.Build(s.Seed);
        InternVLTraining.Freeze(model, s.FreezeVision, s.FreezeMlp, s.FreezeLlm);
        InternVLTraining.SetRecompute(model, s.Recompute);
        var tokenizer = Qwen2Tokenizer.FromDirectory(modelDir);
        var cfg = model.Config;
        int perTile = (int)Math.Round(Math.Pow(cfg.ImageSize / cfg.Vision.PatchSize * cfg.DownsampleRatio, 2));
        var dataOptions = new DataOptions
        {
            Data = dataPath, ValData = s.ValData, ValRate = s.ValRate, Seed = s.Seed, MicroBatchSize = s.MicroBatchSize,
            MaxSamples = s.MaxSamples, Streaming = s.Streaming, GroupByLength = s.GroupByLength, GroupSize = plan.MicroSteps,
            LossReduction = reduction, PackMaxTokens = s.Packing ? s.MaxPackedTokens : null,
            Builder = new SampleBuilderOptions
            {
                ImageSize = cfg.ImageSize, NumImageToken = perTile, DynamicImageSize = cfg.DynamicImageSize,
                MinDynamicPatch = cfg.MinDynamicPatch, MaxDynamicPatch = s.MaxDynamicPatch ?? cfg.MaxDynamicPatch,
                UseThumbnail = cfg.UseThumbnail, MaxSeqLength = s.MaxSeqLength,
                Template = ChatTemplate.Get(cfg.Template ?? "internvl2_5"),
            },
        };
        using var data = TrainingData.Open(dataOptions, tokenizer);
        data.Report.OnDetailed = m => log.WriteLine($"skipped record: {m}");
        int maxSteps = s.MaxSteps ?? plan.StepsForEpochs(data.TrainCount ?? throw new ArgumentException("finetune: --epochs needs the indexed mode (not --streaming); use --max-steps"), s.Epochs!.Value);

        var train = new DataBatchSource(data);
        ListBatchSource<InternVLBatch>? val = null;
        if (data.ValCount > 0)
            val = new ListBatchSource<InternVLBatch>(data.ValidationBatches(s.EvalIters).Select(ToModelBatch).ToList(), s.Seed, shuffle: false);
        var options = new TrainerOptions
        {
            OutputDirectory = output, MaxSteps = maxSteps, GradientAccumulationSteps = plan.MicroSteps,
            Lr = s.Lr, MinLr = s.MinLr, Schedule = decay, WarmupSteps = s.WarmupSteps, WarmupRatio = s.WarmupRatio,
            WeightDecay = s.WeightDecay, // no decay on rank ≤ 1 (biases, norms, layer scales): AdamW's rule, as HF Trainer
            MaxGradNorm = s.MaxGradNorm, Seed = s.Seed, LogInterval = s.LogInterval, SaveInterval = s.SaveInterval,
            SaveTotalLimit = s.SaveTotalLimit, SaveOptimizer = !s.NoSaveOptim, EvalInterval = s.EvalInterval,
            EvalIters = Math.Max(1, Math.Min(s.EvalIters, data.ValCount == 0 ? 1 : (data.ValCount + s.MicroBatchSize - 1) / s.MicroBatchSize)),
            Resume = s.Resume, StopAfterStep = s.StopAfterStep, LoadOptimizer = !s.NoLoadOptim, DumpTensorsDirectory = s.DumpTensors,
            ShowProgress = !s.NoProgress, TensorBoard = !s.NoTensorboard,
        };
        var runConfig = spec.ToJson();
        var saved = JsonSerializer.SerializeToNode(s, FinetuneSettings.Json)!.AsObject();
        foreach (var key in FinetuneSettings.PerInvocation) saved.Remove(key); // a resume must not look like a changed run
        runConfig["finetune"] = saved;
        log.WriteLine($"finetune: {model.NumParameters(trainableOnly: true):N0} trainable of {model.NumParameters():N0} parameters; " +
                      $"{maxSteps} steps of {plan.GlobalBatchSize} samples ({plan.MicroSteps} x {plan.MicroBatchSize}); data {data.TrainCount?.ToString() ?? "streamed"} train / {data.ValCount} val");
        var trainer = new Trainer<InternVLBatch>(new InternVLTrainable(model, reduction) { Log = log }, train, options, val, runConfig) { Log = log };
        trainer.Run();
        train.Dispose();
        if (data.Report.Total > 0) log.WriteLine($"data: {data.Report}");
        return trainer.Checkpoints.IterationDirectory(trainer.Step);
    }

    /// <summary>
    /// A collated data batch as model tensors. A packed batch (fewer rows than samples) also gets its position ids,
    /// segment ids and per-row <c>cu_seqlens</c>, so each sample attends only to itself and its tokens carry the
    /// weights of its own n_eff.
    /// </summary>
    public static InternVLBatch ToModelBatch(Batch b)
    {
        bool images = b.TileCount > 0;
        bool packed = b.Samples.Count > b.B;
        return new InternVLBatch
        {
            InputIds = b.InputIdsTensor(), Labels = b.LabelsTensor(),
            PixelValues = images ? b.PixelValuesTensor() : null,
            ImageFlags = images ? Tensor.FromArray(b.ImageFlags.Select(f => (long)f).ToArray(), b.ImageFlags.Length) : null,
            PositionIds = packed ? b.PositionIdsTensor() : null,
            SegmentIds = packed ? b.SegmentIdsTensor() : null,
            CuSeqlens = packed ? CuSeqlens(b) : null,
        };
    }

    /// <summary>[0, len0, len0+len1, …] of every row, from the segment ids (samples 0, 1, … in order, −1 on padding).</summary>
    static int[][] CuSeqlens(Batch b)
    {
        var rows = new int[b.B][];
        for (int r = 0; r < b.B; r++)
        {
            var seg = b.SegmentIds.AsSpan(r * b.T, b.T);
            var cu = new List<int> { 0 };
            for (int t = 0; t < b.T && seg[t] >= 0; t++)
                if (t + 1 == b.T || seg[t + 1] != seg[t]) cu.Add(t + 1);   // a sample ends here
            rows[r] = cu.ToArray();
        }
        return rows;
    }

    /// <summary>The training data as an <see cref="IBatchSource{TBatch}"/>; the previous batch is released when the next is taken.</summary>
    sealed class DataBatchSource(TrainingData data) : IBatchSource<InternVLBatch>, IDisposable
    {
        InternVLBatch? _last;

        public InternVLBatch Next()
        {
            _last?.Dispose();
            return _last = ToModelBatch(data.NextBatch());
        }

        public JsonNode GetState() => JsonNode.Parse(data.State.ToJson())!;

        public void SetState(JsonNode state) => data.Restore(DataState.FromJson(state.ToJsonString()));

        public void Dispose() => _last?.Dispose();
    }
}
