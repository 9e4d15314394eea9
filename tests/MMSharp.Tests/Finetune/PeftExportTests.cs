using System.Text.Json.Nodes;
using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.Engine.IO;
using MMSharp.Models.InternVL;
using MMSharp.NN;
using MMSharp.Tests.Models;
using MMSharp.Training;
using Xunit.Abstractions;

namespace MMSharp.Tests.Finetune;

/// <summary>
/// <c>mmsharp export</c> without <c>--merge-lora</c>: the official PEFT layout (use_*_lora = r, base_model.model. /
/// base_layer / lora_X.default keys), loaded back by FromPretrained with the same logits as the merged export.
/// </summary>
public sealed class PeftExportTests(ITestOutputHelper output)
{
    /// <summary>Trains LoRA r=4 (LLM) / r=2 (ViT) for 3 steps on the vit300m fixture; returns the checkpoint and the in-memory logits.</summary>
    static string TrainLora(IO.TempDir outDir, out Tensor logits, float? alpha = null, int llmRank = 4, int visionRank = 2, string? model = null)
    {
        var spec = new FinetuneModelSpec(model ?? InternVLFixtures.Dir("vit300m"), LoraLlm: llmRank, LoraVision: visionRank, LoraAlpha: alpha, LoraDropout: 0f);
        using var m = spec.Build(seed: 3);
        InternVLTraining.Freeze(m, true, true, true);
        using var ids = InternVLFixtures.Ref("vit300m", "input_ids");
        using var pixels = InternVLFixtures.Ref("vit300m", "pixel_values");
        using var batch = new InternVLBatch { InputIds = ids.Alias(), Labels = ids.Alias(), PixelValues = pixels.Alias() };
        new Trainer<InternVLBatch>(new InternVLTrainable(m, LossReduction.Token), new ListBatchSource<InternVLBatch>([batch], 1),
            new TrainerOptions { OutputDirectory = outDir.Path, MaxSteps = 3, Lr = 1e-2, ShowProgress = false, TensorBoard = false },
            runConfig: spec.ToJson()) { Log = TextWriter.Null }.Run();
        m.Eval();
        using var _ = GradMode.NoGrad();
        logits = m.Forward(ids, pixels);
        return Path.Combine(outDir.Path, "iter_0000003");
    }

    static Tensor Logits(string dir)
    {
        using var model = InternVLChatModel.FromPretrained(dir);
        using var ids = InternVLFixtures.Ref("vit300m", "input_ids");
        using var pixels = InternVLFixtures.Ref("vit300m", "pixel_values");
        using var _ = GradMode.NoGrad();
        return model.Forward(ids, pixels);
    }

    [Fact]
    public void ExportUnmerged_WritesTheOfficialPeftLayout()
    {
        using var run = new IO.TempDir();
        using var hf = new IO.TempDir();
        string ckpt = TrainLora(run, out var logits);
        logits.Dispose();
        InternVLExport.Export(ckpt, hf.Path, mergeLora: false, DType.F32);

        var config = JsonNode.Parse(File.ReadAllText(hf.File("config.json")))!;
        Assert.Equal(4, config["use_llm_lora"]!.GetValue<int>());
        Assert.Equal(2, config["use_backbone_lora"]!.GetValue<int>());

        using var reader = CheckpointReader.Open(hf.Path);
        var shapes = reader.Names.ToDictionary(n => n, n => reader.Info(n).Shape);
        // vit300m fixture: LLM hidden 32, 4 heads / 2 kv heads of 8, MLP 64; ViT hidden 32, MLP 128, qkv bias; vocab 300
        const string L = "language_model.base_model.model.", V = "vision_model.base_model.model.";
        var expected = new Dictionary<string, int[]>
        {
            [L + "model.embed_tokens.weight"] = [300, 32],
            [L + "lm_head.weight"] = [300, 32],
            [L + "model.norm.weight"] = [32],
            [L + "model.layers.0.input_layernorm.weight"] = [32],
            [L + "model.layers.0.self_attn.q_proj.base_layer.weight"] = [32, 32],
            [L + "model.layers.0.self_attn.q_proj.base_layer.bias"] = [32],
            [L + "model.layers.0.self_attn.q_proj.lora_A.default.weight"] = [4, 32],
            [L + "model.layers.0.self_attn.q_proj.lora_B.default.weight"] = [32, 4],
            [L + "model.layers.0.self_attn.k_proj.base_layer.weight"] = [16, 32],
            [L + "model.layers.0.self_attn.k_proj.lora_B.default.weight"] = [16, 4],
            [L + "model.layers.1.self_attn.o_proj.base_layer.weight"] = [32, 32],
            [L + "model.layers.1.self_attn.o_proj.lora_A.default.weight"] = [4, 32],
            [L + "model.layers.1.mlp.gate_proj.lora_B.default.weight"] = [64, 4],
            [L + "model.layers.1.mlp.up_proj.base_layer.weight"] = [64, 32],
            [L + "model.layers.1.mlp.down_proj.lora_A.default.weight"] = [4, 64],
            [L + "model.layers.1.mlp.down_proj.lora_B.default.weight"] = [32, 4],
            [V + "embeddings.class_embedding"] = [1, 1, 32],
            [V + "encoder.layers.0.norm1.weight"] = [32],
            [V + "encoder.layers.0.attn.qkv.base_layer.weight"] = [96, 32],
            [V + "encoder.layers.0.attn.qkv.base_layer.bias"] = [96],
            [V + "encoder.layers.0.attn.qkv.lora_A.default.weight"] = [2, 32],
            [V + "encoder.layers.0.attn.qkv.lora_B.default.weight"] = [96, 2],
            [V + "encoder.layers.1.attn.proj.lora_B.default.weight"] = [32, 2],
            [V + "encoder.layers.1.mlp.fc1.lora_A.default.weight"] = [2, 32],
            [V + "encoder.layers.1.mlp.fc2.base_layer.bias"] = [32],
            [V + "encoder.layers.1.mlp.fc2.lora_B.default.weight"] = [32, 2],
            ["mlp1.1.weight"] = [32, 128],
        };
        foreach (var (name, shape) in expected)
        {
            Assert.True(shapes.ContainsKey(name), $"missing {name}");
            Assert.Equal(shape, shapes[name]);
        }
        Assert.DoesNotContain(L + "model.layers.0.self_attn.o_proj.base_layer.bias", shapes.Keys);   // o_proj has no bias
        Assert.All(shapes.Keys, n => Assert.True(n.StartsWith(L) || n.StartsWith(V) || n.StartsWith("mlp1."), n));
        Assert.All(shapes.Keys.Where(n => n.Contains(".lora_")), n => Assert.Matches(@"\.lora_[AB]\.default\.weight$", n));
        // 2 layers × (7 LLM + 4 ViT targets) adapted, A and B each
        Assert.Equal(2 * 11 * 2, shapes.Keys.Count(n => n.Contains(".lora_")));
        Assert.Equal(2 * 11, shapes.Keys.Count(n => n.EndsWith(".base_layer.weight")));
        using var plain = CheckpointReader.Open(InternVLFixtures.Dir("vit300m"));
        Assert.Equal(plain.Names.Count + 2 * 11 * 2, shapes.Count);
    }

    [Fact]
    public void ExportUnmerged_ReloadsWithTheLogitsOfTheMergedExport()
    {
        using var run = new IO.TempDir();
        using var peft = new IO.TempDir();
        using var merged = new IO.TempDir();
        string ckpt = TrainLora(run, out var inMemory);
        using (inMemory)
        {
            InternVLExport.Export(ckpt, peft.Path, mergeLora: false, DType.F32, maxShardBytes: 40_000);
            InternVLExport.Export(ckpt, merged.Path, mergeLora: true, DType.F32);
            using (var loaded = InternVLChatModel.FromPretrained(peft.Path))
            {
                Assert.True(LoraLinear.HasAdapters(loaded));
                Assert.All(loaded.NamedModules().Select(x => x.Module).OfType<Linear>().Where(l => l.Lora != null),
                    l => Assert.Equal(2f * l.Lora!.Rank, l.Lora.Alpha));
                Assert.Contains(loaded.LoadNotes, n => n.Contains("use_llm_lora 4"));
            }
            using var a = Logits(peft.Path);
            using var b = Logits(merged.Path);
            double e = InternVLFixtures.RelErr(a, b), e0 = InternVLFixtures.RelErr(a, inMemory);
            using var baseLogits = Logits(InternVLFixtures.Dir("vit300m"));
            double moved = InternVLFixtures.RelErr(baseLogits, inMemory);
            output.WriteLine($"unmerged export vs merged export: rel err {e:E2}; vs in-memory {e0:E2}; adapters moved the logits by {moved:E2}");
            Assert.True(moved > 1e-4, "the trained adapters do not change the logits; the test would prove nothing");
            Assert.True(e <= 1e-5, $"rel err {e}");
            Assert.True(e0 <= 1e-5, $"rel err {e0}");
            // the chat path (prefill with KV cache, then one decode step) agrees too
            using var p = PrefillAndStep(peft.Path);
            using var q = PrefillAndStep(merged.Path);
            double ec = InternVLFixtures.RelErr(p, q);
            output.WriteLine($"chat path (prefill + decode step), unmerged vs merged: rel err {ec:E2}");
            Assert.True(ec <= 1e-5, $"rel err {ec}");
        }
    }

    [Fact]
    public void ExportUnmergedBf16_LoadsAndRuns_CloseToTheMergedExport()
    {
        using var run = new IO.TempDir();
        using var peft = new IO.TempDir();
        using var merged = new IO.TempDir();
        string ckpt = TrainLora(run, out var inMemory);
        inMemory.Dispose();
        InternVLExport.Export(ckpt, peft.Path, mergeLora: false, DType.BF16);
        InternVLExport.Export(ckpt, merged.Path, mergeLora: true, DType.BF16);
        using (var reader = CheckpointReader.Open(peft.Path))
            Assert.Equal(DType.BF16, reader.Info("language_model.base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight").DType);
        using var a = Logits(peft.Path);
        using var b = Logits(merged.Path);
        double e = InternVLFixtures.RelErr(a, b);
        output.WriteLine($"bf16 unmerged vs bf16 merged: rel err {e:E2} (different bf16 roundings of W and of W + ΔW)");
        Assert.True(e <= 3e-2, $"rel err {e}");
    }

    [Theory]
    [InlineData("use_llm_lora")]
    [InlineData("use_backbone_lora")]
    public void Config_ReadsLoraRanks_AndRejectsANegativeOne(string field)
    {
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(InternVLFixtures.Dir("vit300m"), "config.json")))!.AsObject();
        json[field] = 16;
        var c = InternVLChatConfig.Parse(json.ToJsonString());
        Assert.Equal(16, field == "use_llm_lora" ? c.UseLlmLora : c.UseBackboneLora);
        json[field] = -1;
        var ex = Assert.Throws<ModelConfigException>(() => InternVLChatConfig.Parse(json.ToJsonString()));
        Assert.Contains(field, ex.Message);
    }

    /// <summary>Logits [1, V] of prefill over the fixture prompt followed by one decode step (the path mmsharp chat runs).</summary>
    static Tensor PrefillAndStep(string dir)
    {
        using var model = InternVLChatModel.FromPretrained(dir);
        using var ids = InternVLFixtures.Ref("vit300m", "input_ids");
        using var pixels = InternVLFixtures.Ref("vit300m", "pixel_values");
        using var cache = model.NewCache(1, ids.Shape[1] + 1);
        using var first = model.Prefill(ids, pixels, cache);
        using var next = Tensor.FromArray(new long[] { 5 }, 1);
        using var step = model.DecodeStep(next, cache);
        var both = first.ToFloatArray().Concat(step.ToFloatArray()).ToArray();
        return Tensor.FromArray(both, 2, first.Shape[1]);
    }

    [Fact]
    public void ExportUnmerged_FoldsANonOfficialAlphaIntoLoraB()
    {
        using var run = new IO.TempDir();
        using var peft = new IO.TempDir();
        string ckpt = TrainLora(run, out var inMemory, alpha: 3f);   // official re-wrap uses 2r = 8 (LLM) / 4 (ViT)
        using (inMemory)
        {
            var log = new StringWriter();
            InternVLExport.Export(ckpt, peft.Path, mergeLora: false, DType.F32, log: log);
            Assert.Contains("lora_alpha 3", log.ToString());
            using var a = Logits(peft.Path);
            double e = InternVLFixtures.RelErr(a, inMemory);
            output.WriteLine($"alpha 3 folded into lora_B: rel err vs in-memory {e:E2}");
            Assert.True(e <= 1e-5, $"rel err {e}");
        }
    }

    [Fact]
    public void Load_ThrowsNamingTheTensor_WhenLoraBIsMissing()
    {
        using var run = new IO.TempDir();
        using var peft = new IO.TempDir();
        string ckpt = TrainLora(run, out var logits);
        logits.Dispose();
        InternVLExport.Export(ckpt, peft.Path, mergeLora: false, DType.F32);
        const string gone = "language_model.base_model.model.model.layers.1.mlp.down_proj.lora_B.default.weight";
        using var broken = new IO.TempDir();
        foreach (var f in Directory.GetFiles(peft.Path).Where(f => !f.EndsWith(".safetensors")))
            File.Copy(f, Path.Combine(broken.Path, Path.GetFileName(f)));
        using (var reader = CheckpointReader.Open(peft.Path))
        {
            var kept = reader.Names.Where(n => n != gone).Select(n => new KeyValuePair<string, Tensor>(n, reader.Get(n))).ToList();
            SafeTensorsWriter.Write(broken.File("model.safetensors"), kept);
            foreach (var kv in kept) kv.Value.Dispose();
        }
        var ex = Assert.Throws<StateDictMismatchException>(() => InternVLChatModel.FromPretrained(broken.Path));
        output.WriteLine(ex.Message);
        Assert.Equal([gone], ex.Missing);
        Assert.Contains(gone, ex.Message);
    }

    [Fact]
    public void Load_ThrowsNamingTheTensor_WhenAPlainKeySitsInAWrappedTower()
    {
        using var run = new IO.TempDir();
        using var peft = new IO.TempDir();
        string ckpt = TrainLora(run, out var logits);
        logits.Dispose();
        InternVLExport.Export(ckpt, peft.Path, mergeLora: false, DType.F32);
        // the adapted layer's base weight stored without base_layer: one missing, one unexpected, both named
        const string peftName = "vision_model.base_model.model.encoder.layers.0.attn.qkv.base_layer.weight";
        const string plainName = "vision_model.base_model.model.encoder.layers.0.attn.qkv.weight";
        using var broken = new IO.TempDir();
        foreach (var f in Directory.GetFiles(peft.Path).Where(f => !f.EndsWith(".safetensors")))
            File.Copy(f, Path.Combine(broken.Path, Path.GetFileName(f)));
        using (var reader = CheckpointReader.Open(peft.Path))
        {
            var renamed = reader.Names.Select(n => new KeyValuePair<string, Tensor>(n == peftName ? plainName : n, reader.Get(n))).ToList();
            SafeTensorsWriter.Write(broken.File("model.safetensors"), renamed);
            foreach (var kv in renamed) kv.Value.Dispose();
        }
        var ex = Assert.Throws<StateDictMismatchException>(() => InternVLChatModel.FromPretrained(broken.Path));
        Assert.Equal([peftName], ex.Missing);
        Assert.Equal([plainName], ex.Unexpected);
    }

    [Fact]
    public void Finetune_ContinuesFromAnUnmergedExport_AndRejectsAnotherRank()
    {
        using var run = new IO.TempDir();
        using var peft = new IO.TempDir();
        string ckpt = TrainLora(run, out var logits);
        logits.Dispose();
        InternVLExport.Export(ckpt, peft.Path, mergeLora: false, DType.F32);

        // same ranks: the loaded adapters keep training, and the continued run exports again (here merged)
        using var run2 = new IO.TempDir();
        using var merged = new IO.TempDir();
        string ckpt2 = TrainLora(run2, out var logits2, model: peft.Path);
        using (logits2)
        {
            InternVLExport.Export(ckpt2, merged.Path, mergeLora: true, DType.F32);
            using var reloaded = Logits(merged.Path);
            double e = InternVLFixtures.RelErr(reloaded, logits2);
            output.WriteLine($"continued run, merged export vs in-memory: rel err {e:E2}");
            Assert.True(e <= 1e-5, $"rel err {e}");
        }

        using var m = InternVLChatModel.FromPretrained(peft.Path);
        var ex = Assert.Throws<ArgumentException>(() => InternVLTraining.ApplyLora(m, 8, 0, null, 0f, 0));
        Assert.Contains("rank 4", ex.Message);
        Assert.Contains("--lora-llm", ex.Message);
    }
}
