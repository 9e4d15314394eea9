using System.CommandLine;
using System.Diagnostics;
using MMSharp.Data;
using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.Models.InternVL;
using MMSharp.Text;

namespace MMSharp.Cli;

/// <summary><c>mmsharp finetune</c>, <c>init</c>, <c>export</c> and <c>demo</c>.</summary>
static class FinetuneCommands
{
    // ---------------------------------------------------------------- finetune

    /// <summary>One flag: its option and how it overrides a settings field when given.</summary>
    sealed record Flag(Option Option, Action<FinetuneSettings, ParseResult> Apply);

    static Flag F<T>(List<Flag> flags, string name, string help, Action<FinetuneSettings, T> set)
    {
        var o = new Option<T>(name) { Description = help };
        var f = new Flag(o, (s, r) => set(s, r.GetValue(o)!));
        flags.Add(f);
        return f;
    }

    static Flag B(List<Flag> flags, string name, string help, Action<FinetuneSettings, bool> set) => F(flags, name, help, set);

    public static Command Finetune(CliConsole io)
    {
        var flags = new List<Flag>();
        F<string>(flags, "--model", "HF InternVL model directory to start from (config.json, safetensors, tokenizer files).", (s, v) => s.Model = v);
        F<string>(flags, "--data", "Training data: an InternVL meta file (.json: {name: {root, annotation, repeat_time, ...}}) or a JSONL file.", (s, v) => s.Data = v);
        F<string>(flags, "--output", "Output directory: iter_XXXXXXX checkpoints, metrics.jsonl, tensorboard/.", (s, v) => s.Output = v);
        F<string>(flags, "--val-data", "Validation data (meta or JSONL).", (s, v) => s.ValData = v);
        F<double>(flags, "--val-rate", "Fraction of the training records held out for validation (seeded split).", (s, v) => s.ValRate = v);
        F<int>(flags, "--eval-interval", "Evaluate the validation loss every N steps (0 = never).", (s, v) => s.EvalInterval = v);
        F<int>(flags, "--eval-iters", "Validation micro-batches per evaluation (default 10).", (s, v) => s.EvalIters = v);
        F<int>(flags, "--max-steps", "Optimizer steps to run.", (s, v) => s.MaxSteps = v);
        F<double>(flags, "--epochs", "Run length in passes over the data (instead of --max-steps).", (s, v) => s.Epochs = v);
        F<double>(flags, "--lr", "Peak learning rate (default 1e-5).", (s, v) => s.Lr = v);
        F<double>(flags, "--min-lr", "Learning rate at the end of the decay (default 0).", (s, v) => s.MinLr = v);
        F<string>(flags, "--lr-scheduler", "Decay after warmup: cosine (default) | linear | constant.", (s, v) => s.LrScheduler = v);
        F<double>(flags, "--weight-decay", "Decoupled weight decay (default 0.05; none on biases, norms, layer scales).", (s, v) => s.WeightDecay = v);
        F<double>(flags, "--warmup-ratio", "Warmup steps as a fraction of the run (default 0.03).", (s, v) => s.WarmupRatio = v);
        F<int>(flags, "--warmup-steps", "Warmup steps (overrides --warmup-ratio).", (s, v) => s.WarmupSteps = v);
        F<int>(flags, "--micro-batch-size", "Samples per forward/backward pass (default 1).", (s, v) => s.MicroBatchSize = v);
        F<int>(flags, "--global-batch-size", "Samples per optimizer step; a multiple of the micro-batch size (gradient accumulation).", (s, v) => s.GlobalBatchSize = v);
        F<double>(flags, "--max-grad-norm", "Clip the global gradient L2 norm to this (default 1.0; 0 = off).", (s, v) => s.MaxGradNorm = v);
        F<ulong>(flags, "--seed", "Seed of data order, LoRA init, dropout and drop-path (default 42).", (s, v) => s.Seed = v);
        F<int>(flags, "--log-interval", "Write metrics every N steps (default 1).", (s, v) => s.LogInterval = v);
        B(flags, "--freeze-vision", "Freeze the vision tower (vision_model).", (s, v) => s.FreezeVision = v);
        B(flags, "--freeze-mlp", "Freeze the projector (mlp1).", (s, v) => s.FreezeMlp = v);
        B(flags, "--freeze-llm", "Freeze the language model (language_model).", (s, v) => s.FreezeLlm = v);
        F<int>(flags, "--lora-llm", "LoRA rank on the LLM's q/k/v/o/gate/up/down projections (0 = off).", (s, v) => s.LoraLlm = v);
        F<int>(flags, "--lora-vision", "LoRA rank on the ViT's attn.qkv/attn.proj/mlp.fc1/mlp.fc2 (0 = off).", (s, v) => s.LoraVision = v);
        F<float>(flags, "--lora-alpha", "LoRA alpha (default 2 x rank, as the official scripts).", (s, v) => s.LoraAlpha = v);
        F<float>(flags, "--lora-dropout", "Dropout on the LoRA input (default 0.05).", (s, v) => s.LoraDropout = v);
        B(flags, "--recompute", "Gradient checkpointing: recompute each ViT and LLM layer in backward.", (s, v) => s.Recompute = v);
        F<string>(flags, "--loss-reduction", "token (mean over tokens, default) | sample (each sample weighs 1) | square (1/sqrt(n) per token).", (s, v) => s.LossReduction = v);
        F<int>(flags, "--save-interval", "Save a checkpoint every N steps (0 = only at the end).", (s, v) => s.SaveInterval = v);
        F<int>(flags, "--save-total-limit", "Keep only the K newest checkpoints (0 = all).", (s, v) => s.SaveTotalLimit = v);
        B(flags, "--no-save-optim", "Do not store the optimizer state in checkpoints.", (s, v) => s.NoSaveOptim = v);
        B(flags, "--resume", "Continue from the latest checkpoint in --output.", (s, v) => s.Resume = v);
        F<int>(flags, "--stop-after-step", "Stop (with a checkpoint) after this step although the schedule runs to --max-steps; continue later with --resume.", (s, v) => s.StopAfterStep = v);
        F<string>(flags, "--load", "Continue from the latest checkpoint of this output directory (same as --output DIR --resume).", (s, v) => { s.Output = v; s.Resume = true; });
        B(flags, "--no-load-optim", "On resume, start a fresh optimizer state.", (s, v) => s.NoLoadOptim = v);
        F<string>(flags, "--dump-tensors", "At step 1 write input_ids.npy, labels.npy, loss.npy and grad.<name>.npy into DIR.", (s, v) => s.DumpTensors = v);
        F<int>(flags, "--max-seq-length", "Truncate samples to this many tokens (default 8192).", (s, v) => s.MaxSeqLength = v);
        F<int>(flags, "--max-dynamic-patch", "Maximum tiles per image in dynamic tiling (default: the model's config).", (s, v) => s.MaxDynamicPatch = v);
        B(flags, "--group-by-length", "Batch samples of similar length together.", (s, v) => s.GroupByLength = v);
        B(flags, "--packing", "Pack each micro-batch's samples into rows of at most --max-packed-tokens tokens (first fit); attention stays inside each sample, positions restart at 0, and each token keeps its own sample's --loss-reduction weight.", (s, v) => s.Packing = v);
        F<int>(flags, "--max-packed-tokens", "Tokens per packed row with --packing (default 4096); a longer sample gets a row of its own.", (s, v) => s.MaxPackedTokens = v);
        B(flags, "--streaming", "Read JSONL in constant memory (resumable at the exact sample).", (s, v) => s.Streaming = v);
        F<long>(flags, "--max-samples", "Use at most N training samples.", (s, v) => s.MaxSamples = v);
        B(flags, "--no-progress", "Plain log lines instead of the progress bar.", (s, v) => s.NoProgress = v);
        B(flags, "--no-tensorboard", "Do not write TensorBoard event files.", (s, v) => s.NoTensorboard = v);
        var config = new Option<string>("--config") { Description = "JSON file with any of these options (names without \"--\", e.g. {\"lr\": 2e-5, \"freeze-vision\": true}); flags override it." };

        var cmd = new Command("finetune", "Fine-tune an InternVL model on InternVL chat data (full, frozen parts, or LoRA), with exact resume, metrics and checkpoints.");
        foreach (var f in flags) cmd.Options.Add(f.Option);
        cmd.Options.Add(config);
        cmd.SetAction(r =>
        {
            try
            {
                var s = r.GetValue(config) is string path ? FinetuneSettings.Load(path) : new FinetuneSettings();
                foreach (var f in flags)
                    if (r.GetResult(f.Option) is { Implicit: false }) f.Apply(s, r);
                string last = FinetuneRunner.Run(s, io.Out);
                io.Out.WriteLine($"finetune: last checkpoint {last}");
                return 0;
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or NotSupportedException or FileNotFoundException or DirectoryNotFoundException or InvalidDataException)
            {
                io.Err.WriteLine($"error: {e.Message}");
                return 1;
            }
        });
        return cmd;
    }

    // ---------------------------------------------------------------- init

    public static Command Init()
    {
        var preset = new Option<string>("--preset") { Description = "Model geometry: demo.", DefaultValueFactory = _ => "demo" };
        var outDir = new Option<string>("--out") { Description = "Directory to write (HF layout).", Required = true };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the random weights.", DefaultValueFactory = _ => 0 };
        var cmd = new Command("init", "Write a small randomly initialised InternVL-architecture model in HF layout, with a small tokenizer for the shapes demo.");
        cmd.Options.Add(preset); cmd.Options.Add(outDir); cmd.Options.Add(seed);
        cmd.SetAction(r =>
        {
            long n = InternVLPresets.WriteShapesDemoModel(r.GetValue(outDir)!, r.GetValue(preset)!, r.GetValue(seed), out int vocab);
            Console.WriteLine($"init: {n:N0} parameters, vocabulary {vocab}, written to {r.GetValue(outDir)}");
            return 0;
        });
        return cmd;
    }

    // ---------------------------------------------------------------- export

    public static Command Export()
    {
        var ckpt = new Option<string>("--checkpoint") { Description = "A training checkpoint: OUTPUT/iter_XXXXXXX.", Required = true };
        var outDir = new Option<string>("--out") { Description = "HF model directory to write.", Required = true };
        var merge = new Option<bool>("--merge-lora")
        {
            Description = "Fold LoRA adapters into the base weights (plain HF names, use_llm_lora/use_backbone_lora 0). Without it a LoRA run is "
                + "written unmerged in the official InternVL/PEFT layout: config.json use_llm_lora/use_backbone_lora = r, keys "
                + "language_model.base_model.model.<path>.base_layer.weight, ….lora_A.default.weight [r,in], ….lora_B.default.weight [out,r] "
                + "(vision_model likewise); chat, finetune --model and the official code re-wrap it with alpha 2r (a run trained with "
                + "another --lora-alpha gets its scaling folded into lora_B).",
        };
        var dtype = new Option<string>("--dtype") { Description = "bf16 (default) | fp32.", DefaultValueFactory = _ => "bf16" };
        var shard = new Option<long>("--max-shard-size") { Description = "Bytes of tensor data per safetensors shard (default 5e9).", DefaultValueFactory = _ => 5_000_000_000 };
        var cmd = new Command("export", "Write a training checkpoint as a complete Hugging Face model directory (config, sharded safetensors + index, tokenizer, generation config).");
        foreach (var o in new Option[] { ckpt, outDir, merge, dtype, shard }) cmd.Options.Add(o);
        cmd.SetAction(r =>
        {
            var dt = r.GetValue(dtype) switch { "bf16" => DType.BF16, "fp32" => DType.F32, var x => throw new ArgumentException($"export: --dtype {x} is not bf16 or fp32") };
            try
            {
                var files = InternVLExport.Export(r.GetValue(ckpt)!, r.GetValue(outDir)!, r.GetValue(merge), dt, r.GetValue(shard), Console.Out);
                Console.WriteLine($"export: {files.Count} files in {r.GetValue(outDir)}");
                return 0;
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or InvalidDataException or FileNotFoundException or DirectoryNotFoundException)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 1;
            }
        });
        return cmd;
    }

    // ---------------------------------------------------------------- demo

    public static Command Demo()
    {
        var outDir = new Option<string>("--out") { Description = "Working directory (default: a new folder under the temp directory)." };
        var seed = new Option<ulong>("--seed") { Description = "Seed of data, model and training.", DefaultValueFactory = _ => 1 };
        var train = new Option<int>("--train") { Description = "Training examples.", DefaultValueFactory = _ => DemoDefaults.Train };
        var val = new Option<int>("--val") { Description = "Held-out examples.", DefaultValueFactory = _ => 200 };
        var steps = new Option<int>("--steps") { Description = "Optimizer steps.", DefaultValueFactory = _ => DemoDefaults.Steps };
        var batch = new Option<int>("--batch") { Description = "Samples per step.", DefaultValueFactory = _ => DemoDefaults.Batch };
        var lr = new Option<double>("--lr") { Description = "Peak learning rate.", DefaultValueFactory = _ => DemoDefaults.Lr };
        var maxCount = new Option<int>("--max-count") { Description = "Shapes per image at most (1-4).", DefaultValueFactory = _ => 4 };
        var questions = new Option<int>("--questions") { Description = "Questions per training image (turns of one conversation; held-out images get one).", DefaultValueFactory = _ => DemoDefaults.Questions };
        var singleShare = new Option<double>("--single-share") { Description = "Share of training images that show one shape.", DefaultValueFactory = _ => DemoDefaults.SingleShapeShare };
        var kinds = new Option<string>("--kinds") { Description = "Question kinds, comma-separated (count,color,shape,position).", DefaultValueFactory = _ => "count,color,shape,position" };
        var cmd = new Command("demo", "Train a tiny InternVL from scratch on a synthetic shapes VQA dataset, reload it and report held-out exact-match accuracy.");
        foreach (var o in new Option[] { outDir, seed, train, val, steps, batch, lr, maxCount, questions, singleShare, kinds }) cmd.Options.Add(o);
        cmd.SetAction(r => RunDemo(r.GetValue(outDir), r.GetValue(seed), r.GetValue(train), r.GetValue(val), r.GetValue(steps), r.GetValue(batch), r.GetValue(lr),
            r.GetValue(maxCount), r.GetValue(questions), r.GetValue(singleShare), r.GetValue(kinds)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)));
        return cmd;
    }

    static class DemoDefaults
    {
        public const int Train = 8000, Steps = 7500, Batch = 16, Questions = 4;
        public const double SingleShapeShare = 0.5;
        public const double Lr = 1e-3;
    }

    static int RunDemo(string? dir, ulong seed, int trainN, int valN, int steps, int batch, double lr, int maxCount, int questions, double singleShare, string[] kinds)
    {
        var clock = Stopwatch.StartNew();
        dir ??= Path.Combine(Path.GetTempPath(), $"mmsharp-demo-{DateTime.UtcNow:yyyyMMdd-HHmmss}");
        string dataDir = Path.Combine(dir, "data"), modelDir = Path.Combine(dir, "model"), runDir = Path.Combine(dir, "run"), finalDir = Path.Combine(dir, "final");
        Console.WriteLine($"demo: working in {dir}");
        var shapes = ShapesDataset.Generate(dataDir, trainN, valN, seed, InternVLPresets.Demo.ImageSize, maxCount, kinds, questions, singleShare);
        Console.WriteLine($"demo: {trainN} training and {valN} held-out shape questions in {dataDir} ({clock.Elapsed.TotalSeconds:F0} s)");
        long n = InternVLPresets.WriteShapesDemoModel(modelDir, "demo", seed, out int vocab);
        Console.WriteLine($"demo: random InternVL model with {n:N0} parameters, vocabulary {vocab}, in {modelDir}");

        var settings = new FinetuneSettings
        {
            Model = modelDir, Data = shapes.TrainJsonl, Output = runDir, MaxSteps = steps, Lr = lr, MinLr = lr * 0.02,
            WarmupRatio = 0.05, WeightDecay = 0.0, MicroBatchSize = batch, Seed = seed, LogInterval = 10, NoTensorboard = true,
            MaxSeqLength = 256,
        };
        string last = FinetuneRunner.Run(settings, Console.Out);
        InternVLExport.Export(last, finalDir, mergeLora: false, DType.F32);
        Console.WriteLine($"demo: exported {last} to {finalDir}; reloading it");

        using var model = InternVLChatModel.FromPretrained(finalDir);
        var tok = Qwen2Tokenizer.FromDirectory(finalDir);
        var cfg = model.Config;
        var builder = new SampleBuilder(tok, new SampleBuilderOptions
        {
            ImageSize = cfg.ImageSize, NumImageToken = (int)Math.Round(Math.Pow(cfg.ImageSize / cfg.Vision.PatchSize * cfg.DownsampleRatio, 2)),
            DynamicImageSize = cfg.DynamicImageSize, MaxDynamicPatch = cfg.MaxDynamicPatch, UseThumbnail = cfg.UseThumbnail, MaxSeqLength = 256,
        });
        var spec = new DatasetSpec("val", Path.GetFullPath(dataDir), Path.GetFullPath(shapes.ValJsonl));
        int eos = tok.TokenToId("<|im_end|>")!.Value;
        int correct = 0, total = 0, shown = 0;
        var perKind = new SortedDictionary<string, (int Correct, int Total)>(StringComparer.Ordinal);
        long line = 0;
        string resultsPath = Path.Combine(dir, "results.jsonl");
        using var results = new StreamWriter(resultsPath) { NewLine = "\n" };   // one line per held-out question, for a closer look
        foreach (var text in File.ReadLines(shapes.ValJsonl))
        {
            line++;
            var record = DataRecord.Parse(System.Text.Encoding.UTF8.GetBytes(text), new SourceLocation(shapes.ValJsonl, line, 0));
            var sample = builder.Build(record, spec);
            int first = Array.FindIndex(sample.Labels, l => l != TrainingSample.IgnoreIndex);
            string question = record.Conversations.First(t => t.From == "human").Value.Replace("<image>\n", "");
            string answer = record.Conversations.First(t => t.From == "gpt").Value;
            using var ids = Tensor.FromArray(sample.InputIds[..first], 1, first);
            using var pixels = Tensor.FromArray(sample.PixelValues, sample.TileCount, 3, sample.ImageSize, sample.ImageSize);
            var generated = model.GenerateGreedy(ids, pixels, maxNewTokens: 6, eosTokenId: eos);
            string reply = tok.Decode(generated.Select(x => (int)x).ToArray(), skipSpecial: true);
            bool ok = ShapesDataset.IsCorrect(reply, answer);
            correct += ok ? 1 : 0;
            total++;
            using var json = System.Text.Json.JsonDocument.Parse(text);
            string kind = json.RootElement.TryGetProperty("kind", out var k) ? k.GetString() ?? "?" : "?";
            var (kc, kt) = perKind.GetValueOrDefault(kind);
            perKind[kind] = (kc + (ok ? 1 : 0), kt + 1);
            int shapeCount = json.RootElement.TryGetProperty("shapes", out var sc) ? sc.GetInt32() : 0;
            results.WriteLine(System.Text.Json.JsonSerializer.Serialize(new { id = record.Id, kind, shapes = shapeCount, question, answer, reply = reply.Trim(), ok }));
            if (shown++ < 6) Console.WriteLine($"  Q: {question,-36} A: {reply.Trim(),-10} (expected {answer}) {(ok ? "ok" : "WRONG")}");
        }
        Console.WriteLine($"demo: every answer in {resultsPath}");
        Console.WriteLine("demo: by question kind: " + string.Join(", ", perKind.Select(p => FormattableString.Invariant($"{p.Key} {p.Value.Correct}/{p.Value.Total}"))));
        double acc = total == 0 ? 0 : (double)correct / total;
        Console.WriteLine(FormattableString.Invariant($"demo: held-out exact-match accuracy {acc:F3} ({correct}/{total}) in {clock.Elapsed.TotalSeconds:F0} s"));
        return 0;
    }
}
