using System.Text.Json;
using System.Text.Json.Nodes;
using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.Engine.IO;
using MMSharp.NN;
using MMSharp.Training;

namespace MMSharp.Models.InternVL;

/// <summary>
/// The fine-tuning settings a checkpoint needs to be rebuilt (saved as <c>model_config</c> in its run configuration):
/// the base model directory and the LoRA adapters that were attached.
/// </summary>
public sealed record FinetuneModelSpec(string Model, int LoraLlm = 0, int LoraVision = 0, float? LoraAlpha = null, float LoraDropout = 0.05f)
{
    public JsonObject ToJson() => new()
    {
        ["model"] = Path.GetFullPath(Model), ["lora_llm"] = LoraLlm, ["lora_vision"] = LoraVision,
        ["lora_alpha"] = LoraAlpha, ["lora_dropout"] = LoraDropout,
    };

    public static FinetuneModelSpec FromJson(JsonNode n) => new(
        n["model"]?.GetValue<string>() ?? throw new InvalidDataException("run configuration has no model_config.model"),
        n["lora_llm"]?.GetValue<int>() ?? 0, n["lora_vision"]?.GetValue<int>() ?? 0,
        n["lora_alpha"]?.GetValue<float>(), n["lora_dropout"]?.GetValue<float>() ?? 0.05f);

    /// <summary>The base model with the adapters attached (fresh adapter values; load the trained ones over them).</summary>
    public InternVLChatModel Build(ulong seed = 0)
    {
        var model = InternVLChatModel.FromPretrained(Model);
        InternVLTraining.ApplyLora(model, LoraLlm, LoraVision, LoraAlpha, LoraDropout, seed);
        return model;
    }
}

/// <summary><c>mmsharp export</c>: a training checkpoint -> a complete Hugging Face model directory.</summary>
public static class InternVLExport
{
    /// <summary>Files of a model directory that are weights or config, not tokenizer (never copied as tokenizer files).</summary>
    static bool IsWeightOrConfig(string file)
    {
        string n = Path.GetFileName(file);
        return n.EndsWith(".safetensors", StringComparison.Ordinal) || n.EndsWith(".safetensors.index.json", StringComparison.Ordinal)
            || n.EndsWith(".bin", StringComparison.Ordinal) || n.EndsWith(".bin.index.json", StringComparison.Ordinal)
            || n is "config.json" or "generation_config.json";
    }

    /// <summary>
    /// Loads the base model named by the checkpoint's run configuration, re-attaches its LoRA adapters, loads the
    /// checkpoint's tensors over it, optionally merges the adapters, and writes <paramref name="outDir"/>: config.json
    /// (the base config with <c>torch_dtype</c> updated), <c>model-0000k-of-0000n.safetensors</c> + index (or one
    /// model.safetensors when it fits one shard), the base directory's tokenizer files and generation_config.json.
    /// With LoRA adapters and <paramref name="mergeLora"/> they are folded into the base weights (plain HF names,
    /// <c>use_*_lora = 0</c>); without it they are written unmerged in the layout the official InternVL training saves
    /// (<see cref="InternVLPeftLayout"/>: <c>use_llm_lora</c> / <c>use_backbone_lora</c> = r, PEFT key names), which
    /// <see cref="InternVLChatModel.FromPretrained"/> and the official code load by re-wrapping with alpha 2r.
    /// </summary>
    /// <returns>The files written.</returns>
    public static IReadOnlyList<string> Export(string checkpointDir, string outDir, bool mergeLora, DType dtype,
        long maxShardBytes = 5_000_000_000, TextWriter? log = null)
    {
        if (dtype is not (DType.F32 or DType.BF16)) throw new ArgumentException($"export: dtype {dtype} is not bf16 or fp32");
        var (spec, modelPath) = ReadCheckpoint(checkpointDir);
        using var model = spec.Build();
        int loaded = LoadCheckpointTensors(model, modelPath);
        log?.WriteLine($"export: {loaded} tensors from {modelPath} over base {spec.Model}");
        if (LoraLinear.HasAdapters(model))
        {
            if (mergeLora)
            {
                int n = LoraLinear.Merge(model);
                log?.WriteLine($"export: merged {n} LoRA adapters");
            }
            else
            {
                var (rl, rv) = InternVLPeftLayout.Ranks(model);
                log?.WriteLine($"export: LoRA adapters kept unmerged in the PEFT layout (use_llm_lora {rl}, use_backbone_lora {rv})");
                if (spec.LoraAlpha is float a && ((rl > 0 && a != 2f * rl) || (rv > 0 && a != 2f * rv)))
                    log?.WriteLine($"export: trained with lora_alpha {a}; the official loader uses alpha 2r, so lora_B is written scaled by alpha/(2r) (same logits)");
            }
        }
        return WriteHfDirectory(model, spec.Model, outDir, dtype, maxShardBytes);
    }

    /// <summary>The run's model spec and the model-weights path of an <c>OUTPUT/iter_XXXXXXX</c> directory.</summary>
    public static (FinetuneModelSpec Spec, string ModelPath) ReadCheckpoint(string checkpointDir)
    {
        string full = Path.GetFullPath(checkpointDir.TrimEnd('/', Path.DirectorySeparatorChar));
        string name = Path.GetFileName(full);
        if (!name.StartsWith("iter_", StringComparison.Ordinal) || !long.TryParse(name[5..], out long iteration))
            throw new ArgumentException($"export: {checkpointDir} is not an OUTPUT/iter_XXXXXXX checkpoint directory");
        var ckpt = new CheckpointManager(Path.GetDirectoryName(full)!).Load(iteration);
        var mc = ckpt.Config?["model_config"] ?? throw new InvalidDataException($"export: {checkpointDir} has no model_config in its run configuration");
        return (FinetuneModelSpec.FromJson(mc), ckpt.ModelPath);
    }

    /// <summary>Copies every tensor of the checkpoint over the parameter of the same name (shape checked); returns the count.</summary>
    public static int LoadCheckpointTensors(Module model, string modelPath)
    {
        using var reader = CheckpointReader.Open(modelPath);
        using var _ = GradMode.NoGrad();
        var byName = model.NamedParameters().ToDictionary(x => x.Name, x => x.Parameter);
        int n = 0;
        foreach (string name in reader.Names)
        {
            if (!byName.TryGetValue(name, out var p))
                throw new InvalidDataException($"checkpoint {modelPath}: tensor '{name}' is not a parameter of the model");
            using var t = reader.Get(name);
            if (!t.Shape.AsSpan().SequenceEqual(p.Shape))
                throw new InvalidDataException($"checkpoint {modelPath}: '{name}' is {t.Describe()}, the model has {Tensor.ShapeString(p.Shape)}");
            using var copy = Ops.Clone(t, DType.F32);   // the reader's mapping is closed after this
            p.Set(copy);
            n++;
        }
        return n;
    }

    /// <summary>
    /// Writes <paramref name="model"/> as an HF directory next to the base's config and tokenizer: plain HF names, or,
    /// when it carries LoRA adapters, the official PEFT layout (<see cref="InternVLPeftLayout"/>; lora_B scaled by
    /// <see cref="InternVLPeftLayout.ExportScaleOfB"/> when alpha ≠ 2r).
    /// </summary>
    public static IReadOnlyList<string> WriteHfDirectory(InternVLChatModel model, string baseDir, string outDir, DType dtype, long maxShardBytes)
    {
        var (llmRank, visionRank) = InternVLPeftLayout.Ranks(model);   // (0, 0) without adapters; throws for layouts PEFT cannot hold
        var storedName = InternVLPeftLayout.StoredName(model, llmRank > 0, visionRank > 0);
        var scaleOfB = new Dictionary<string, float>(StringComparer.Ordinal);
        foreach (var (name, m) in model.NamedModules())
            if (m is Linear { Lora: { } lora } && InternVLPeftLayout.ExportScaleOfB(lora) is var f && f != 1f)
                scaleOfB[name + ".lora_B.weight"] = f;
        Directory.CreateDirectory(outDir);
        var tensors = new List<KeyValuePair<string, Tensor>>();
        try
        {
            using (GradMode.NoGrad())
                foreach (var (name, t) in model.StateDict())
                {
                    if (scaleOfB.TryGetValue(name, out float f))
                    {
                        using var b = Ops.Contiguous(t, DType.F32);
                        using var scaled = Ops.Mul(b, f);
                        tensors.Add(new(storedName(name), Ops.Clone(scaled, dtype)));
                    }
                    else tensors.Add(new(storedName(name), Ops.Clone(t, dtype)));
                }
            var files = SafeTensorsWriter.WriteSharded(outDir, tensors, maxShardBytes, new Dictionary<string, string> { ["format"] = "pt" }).ToList();

            var config = JsonNode.Parse(File.ReadAllText(Path.Combine(baseDir, "config.json")))!.AsObject();
            config["torch_dtype"] = dtype == DType.BF16 ? "bfloat16" : "float32";
            config["use_llm_lora"] = llmRank;
            config["use_backbone_lora"] = visionRank;
            string cfgPath = Path.Combine(outDir, "config.json");
            File.WriteAllText(cfgPath, config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            files.Add(cfgPath);

            if (!Path.GetFullPath(baseDir).Equals(Path.GetFullPath(outDir), StringComparison.Ordinal))
                foreach (var f in Directory.GetFiles(baseDir))
                {
                    if (IsWeightOrConfig(f)) continue;
                    string dst = Path.Combine(outDir, Path.GetFileName(f));
                    File.Copy(f, dst, overwrite: true);
                    files.Add(dst);
                }
            string gen = Path.Combine(baseDir, "generation_config.json");
            string genOut = Path.Combine(outDir, "generation_config.json");
            if (File.Exists(gen)) File.Copy(gen, genOut, overwrite: true);
            else WriteGenerationConfig(outDir, model.Config.Llm.BosTokenId, model.Config.Llm.EosTokenId);
            files.Add(genOut);
            return files;
        }
        finally
        {
            foreach (var kv in tensors) kv.Value.Dispose();
        }
    }

    /// <summary>A minimal generation_config.json (greedy defaults of the InternVL chat scripts).</summary>
    public static void WriteGenerationConfig(string dir, long? bosId, long? eosId)
    {
        var o = new JsonObject { ["_from_model_config"] = true, ["bos_token_id"] = bosId, ["eos_token_id"] = eosId, ["do_sample"] = false };
        File.WriteAllText(Path.Combine(dir, "generation_config.json"), o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }
}
