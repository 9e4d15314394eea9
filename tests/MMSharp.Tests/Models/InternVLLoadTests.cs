using System.Text.Json.Nodes;
using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.Engine.IO;
using MMSharp.Models.InternVL;
using MMSharp.NN;
using Xunit.Abstractions;

namespace MMSharp.Tests.Models;

/// <summary>FromPretrained: storage dtypes, zero-copy mapping, tying, and one clear error per kind of broken checkpoint.</summary>
public sealed class InternVLLoadTests(ITestOutputHelper output)
{
    [Fact]
    public void FromPretrained_KeepsBF16WeightsMemoryMapped()
    {
        using var model = InternVLChatModel.FromPretrained(InternVLFixtures.Dir("vit300m"));
        foreach (var (name, p) in model.NamedParameters())
        {
            Assert.True(p.DType == DType.BF16, $"{name} is {p.DType}");
            Assert.True(p.Data.Storage.ReadOnly, $"{name} was copied out of the mapping");
        }
        Assert.False(model.LanguageModel.TiedLmHead);
        Assert.Empty(model.LoadNotes);
    }

    [Theory]
    [InlineData("vit300m")]
    [InlineData("vit6b")]
    public void FromPretrained_Unmapped_CopiesEveryWeightAndGivesTheSameLogitsAndIds(string fixture)
    {
        using var mapped = InternVLChatModel.FromPretrained(InternVLFixtures.Dir(fixture));
        using var copied = InternVLChatModel.FromPretrained(InternVLFixtures.Dir(fixture), mapped: false);
        var mappedParams = mapped.NamedParameters().ToDictionary(p => p.Name, p => p.Parameter);
        foreach (var (name, p) in copied.NamedParameters())
        {
            Assert.True(p.DType == mappedParams[name].DType, $"{name}: {p.DType} vs {mappedParams[name].DType}");
            Assert.False(p.Data.Storage.ReadOnly, $"{name} still views the mapping");
        }
        // the tied head stays one tensor
        Assert.Equal(mapped.LanguageModel.TiedLmHead, copied.LanguageModel.TiedLmHead);
        if (copied.LanguageModel.TiedLmHead)
            Assert.Same(copied.LanguageModel.Model.EmbedTokens.Weight, copied.LanguageModel.LmHead.Weight);

        using var ids = InternVLFixtures.Ref(fixture, "input_ids");
        using var pixels = InternVLFixtures.Ref(fixture, "pixel_values");
        using (GradMode.NoGrad())
        {
            using var a = mapped.Forward(ids, pixels);
            using var b = copied.Forward(ids, pixels);
            Assert.Equal(a.ToFloatArray(), b.ToFloatArray());
        }
        using var expected = InternVLFixtures.Ref(fixture, "greedy_ids");
        Assert.Equal(expected.ToLongArray(), copied.GenerateGreedy(ids, pixels, (int)expected.NumEl, eosTokenId: null, useCache: true));
    }

    [Fact]
    public void FromPretrained_Unmapped_RefusesWeightsLargerThanTheAvailableMemory_BeforeCopying()
    {
        // one F64 tensor of 2^40 bytes in a sparse file: the header is all that is read
        using var dir = InternVLFixtures.Copy("vit6b");
        string file = Path.Combine(dir.Path, "model.safetensors");
        const long dataBytes = 1L << 40;
        var header = System.Text.Encoding.UTF8.GetBytes(
            $"{{\"big.weight\":{{\"dtype\":\"F64\",\"shape\":[131072,1048576],\"data_offsets\":[0,{dataBytes}]}}}}".PadRight(96));
        using (var fs = new FileStream(file, FileMode.Create))
        {
            fs.Write(BitConverter.GetBytes((long)header.Length));
            fs.Write(header);
            fs.SetLength(8 + header.Length + dataBytes);
        }
        var e = Assert.Throws<ModelConfigException>(() => InternVLChatModel.FromPretrained(dir.Path, mapped: false));
        output.WriteLine(e.Message);
        Assert.Contains(dir.Path, e.Message);
        Assert.Contains("needs 1099.5 GB", e.Message);
        Assert.Contains("without --no-mmap", e.Message);
    }

    [Fact]
    public void FromPretrained_TiesLmHead_OnlyWhenTheCheckpointLacksIt()
    {
        using var model = InternVLChatModel.FromPretrained(InternVLFixtures.Dir("vit6b"));
        Assert.True(model.LanguageModel.TiedLmHead);
        Assert.Same(model.LanguageModel.Model.EmbedTokens.Weight, model.LanguageModel.LmHead.Weight);
        Assert.Contains(model.LoadNotes, n => n.Contains("lm_head is tied"));
    }

    [Fact]
    public void F32Storage_GivesTheSameLogitsAsBF16Storage()
    {
        // same (bf16-representable) values stored as F32: only the GEMM path differs
        using var dir = InternVLFixtures.Copy("vit300m");
        foreach (var f in Directory.GetFiles(dir.Path, "*.safetensors*")) File.Delete(f);
        using (var reader = CheckpointReader.Open(InternVLFixtures.Dir("vit300m")))
        {
            var tensors = reader.Names.Select(n =>
            {
                using var t = reader.Get(n);
                return new KeyValuePair<string, Tensor>(n, Ops.Clone(t, DType.F32));
            }).ToList();
            SafeTensorsWriter.WriteSharded(dir.Path, tensors, maxShardBytes: 40_000);
            foreach (var kv in tensors) kv.Value.Dispose();
        }
        Assert.True(File.Exists(Path.Combine(dir.Path, "model.safetensors.index.json")));

        using var bf16 = InternVLChatModel.FromPretrained(InternVLFixtures.Dir("vit300m"));
        using var f32 = InternVLChatModel.FromPretrained(dir.Path);
        Assert.All(f32.Parameters(), p => Assert.Equal(DType.F32, p.DType));
        using var ids = InternVLFixtures.Ref("vit300m", "input_ids");
        using var pixels = InternVLFixtures.Ref("vit300m", "pixel_values");
        using var _ = GradMode.NoGrad();
        using var a = bf16.Forward(ids, pixels);
        using var b = f32.Forward(ids, pixels);
        double e = InternVLFixtures.RelErr(b, a);
        output.WriteLine($"F32 vs BF16 storage: max rel err of logits {e:E2}");
        Assert.True(e <= 1e-5, $"rel err {e}");
    }

    [Fact]
    public void Load_ThrowsNamingTensor_WhenMissing()
    {
        using var dir = InternVLFixtures.Copy("vit6b");
        RewriteSingleFile(dir.Path, drop: "vision_model.encoder.layers.1.attn.k_norm.weight");
        var e = Assert.Throws<StateDictMismatchException>(() => InternVLChatModel.FromPretrained(dir.Path));
        Assert.Equal(["vision_model.encoder.layers.1.attn.k_norm.weight"], e.Missing);
        Assert.Contains("vision_model.encoder.layers.1.attn.k_norm.weight", e.Message);
    }

    [Fact]
    public void Load_ThrowsNamingTensor_WhenShapeDiffers()
    {
        using var dir = InternVLFixtures.Copy("vit6b");
        RewriteSingleFile(dir.Path, replace: ("mlp1.1.weight", Tensor.Zeros([32, 100], DType.BF16)));
        var e = Assert.Throws<StateDictMismatchException>(() => InternVLChatModel.FromPretrained(dir.Path));
        var m = Assert.Single(e.Mismatched);
        Assert.Equal("mlp1.1.weight", m.Name);
        Assert.Contains("[32, 192]", m.Expected);
        Assert.Contains("[32, 100]", m.Found);
        Assert.Contains("mlp1.1.weight", e.Message);
    }

    [Fact]
    public void Load_ListsUnexpectedTensors_WhenConfigSaysAnotherViTVariant()
    {
        // checkpoint of the 6B-style ViT read with a config that claims the 300M style (layer_norm, qkv bias, no q/k norm)
        using var dir = InternVLFixtures.Copy("vit6b");
        EditConfig(dir.Path, c =>
        {
            c["vision_config"]!["norm_type"] = "layer_norm";
            c["vision_config"]!["qkv_bias"] = true;
            c["vision_config"]!["qk_normalization"] = false;
        });
        var e = Assert.Throws<StateDictMismatchException>(() => InternVLChatModel.FromPretrained(dir.Path));
        Assert.Contains("vision_model.encoder.layers.0.attn.q_norm.weight", e.Unexpected);
        Assert.Contains("vision_model.encoder.layers.0.attn.qkv.bias", e.Missing);
        Assert.Contains("vision_model.encoder.layers.0.norm1.bias", e.Missing);
    }

    [Theory]
    [InlineData("llm_config", "num_key_value_heads")]
    [InlineData("vision_config", "qk_normalization")]
    [InlineData(null, "ps_version")]
    [InlineData("llm_config", "rope_theta")]
    public void Config_ThrowsNamingFileAndField_WhenFieldMissing(string? section, string field)
    {
        using var dir = InternVLFixtures.Copy("vit300m");
        EditConfig(dir.Path, c => (section == null ? c : c[section]!.AsObject()).Remove(field));
        var e = Assert.Throws<ModelConfigException>(() => InternVLChatModel.FromPretrained(dir.Path, requireAllConfigFields: true));
        string dotted = section == null ? field : section + "." + field;
        Assert.Contains($"field '{dotted}' is missing", e.Message);
        Assert.Contains("config.json", e.Message);
    }

    [Fact]
    public void Config_ThrowsNamingField_WhenValueHasTheWrongType()
    {
        using var dir = InternVLFixtures.Copy("vit300m");
        EditConfig(dir.Path, c => c["vision_config"]!["hidden_size"] = "1024");
        var e = Assert.Throws<ModelConfigException>(() => InternVLChatModel.FromPretrained(dir.Path));
        Assert.Contains("field 'vision_config.hidden_size' is \"1024\", expected an integer", e.Message);
    }

    [Fact]
    public void Config_UsesAndReportsTheClassDefault_WhenAFieldIsAbsent()
    {
        // HF saves nested configs as a diff against the class defaults, so real files may omit default-valued fields
        using var dir = InternVLFixtures.Copy("vit300m");
        EditConfig(dir.Path, c => c["llm_config"]!.AsObject().Remove("rms_norm_eps"));
        using var model = InternVLChatModel.FromPretrained(dir.Path);
        Assert.Equal(1e-6, model.Config.Llm.RmsNormEps);
        Assert.Contains(model.LoadNotes, n => n.Contains("'llm_config.rms_norm_eps' absent, using the Qwen2Config default 1E-06"));
    }

    [Fact]
    public void Config_DefaultThatContradictsTheWeights_IsCaughtByTheTensorCheck()
    {
        // qk_normalization absent -> InternVisionConfig default true -> q_norm/k_norm expected but not stored
        using var dir = InternVLFixtures.Copy("vit300m");
        EditConfig(dir.Path, c => c["vision_config"]!.AsObject().Remove("qk_normalization"));
        var e = Assert.Throws<StateDictMismatchException>(() => InternVLChatModel.FromPretrained(dir.Path));
        Assert.Contains("vision_model.encoder.layers.0.attn.q_norm.weight", e.Missing);
    }

    [Fact]
    public void Config_ThrowsNamingField_WhenLlmArchitecturesAbsent()
    {
        using var dir = InternVLFixtures.Copy("vit300m");
        EditConfig(dir.Path, c => c["llm_config"]!.AsObject().Remove("architectures"));
        var e = Assert.Throws<ModelConfigException>(() => InternVLChatModel.FromPretrained(dir.Path));
        Assert.Contains("field 'llm_config.architectures' is missing", e.Message);
    }

    [Fact]
    public void Config_ThrowsNamingType_WhenRopeScalingUnsupported()
    {
        using var dir = InternVLFixtures.Copy("vit300m");
        EditConfig(dir.Path, c => c["llm_config"]!["rope_scaling"] = new JsonObject { ["rope_type"] = "yarn", ["factor"] = 4.0 });
        var e = Assert.Throws<ModelConfigException>(() => InternVLChatModel.FromPretrained(dir.Path));
        Assert.Contains("unsupported rope_scaling type 'yarn'", e.Message);
        Assert.Contains("llm_config.rope_scaling.rope_type", e.Message);
    }

    [Fact]
    public void Config_ThrowsNamingArchitecture_WhenLlmIsNotQwen2()
    {
        using var dir = InternVLFixtures.Copy("vit300m");
        EditConfig(dir.Path, c => c["llm_config"]!["architectures"] = new JsonArray("InternLM2ForCausalLM"));
        var e = Assert.Throws<ModelConfigException>(() => InternVLChatModel.FromPretrained(dir.Path));
        Assert.Contains("InternLM2ForCausalLM", e.Message);
        Assert.Contains("llm_config.architectures", e.Message);
    }

    [Fact]
    public void Config_ReadsDynamicRopeScaling_AndKeepsThetaBelowMaxPositions()
    {
        var c = InternVLChatConfig.Load(InternVLFixtures.Dir("vit300m"));
        Assert.Equal(new RopeScaling("dynamic", 2.0), c.Llm.RopeScaling);
        Assert.Equal(1e6, c.Llm.RopeBase(32767));
        Assert.True(c.Llm.RopeBase(40000) > 1e6);
        Assert.Equal(4, c.NumImageToken);
        Assert.Equal(2, c.VisionLayersUsed);
    }

    // ------------------------------------------------------------------ helpers

    static void EditConfig(string dir, Action<JsonObject> edit)
    {
        string path = Path.Combine(dir, "config.json");
        var json = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(json);
        File.WriteAllText(path, json.ToJsonString());
    }

    /// <summary>Rewrites dir/model.safetensors without <paramref name="drop"/> and/or with one tensor replaced.</summary>
    static void RewriteSingleFile(string dir, string? drop = null, (string Name, Tensor Value)? replace = null)
    {
        string file = Path.Combine(dir, "model.safetensors");
        var tensors = new List<KeyValuePair<string, Tensor>>();
        using (var reader = new SafeTensorsReader(file))
            foreach (var n in reader.Names)
            {
                if (n == drop) continue;
                using var t = reader.Get(n);
                tensors.Add(new(n, replace is { } r && r.Name == n ? r.Value : Ops.Clone(t)));
            }
        File.Delete(file);
        SafeTensorsWriter.Write(file, tensors);
        foreach (var kv in tensors) kv.Value.Dispose();
    }
}
