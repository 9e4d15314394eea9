using System.Globalization;
using MMSharp.Engine;
using MMSharp.Models.InternVL;

namespace MMSharp.Tests.Models;

/// <summary>
/// Shape approval: each InternVL3 preset built from a config.json (values of spec §1.1, §3.2–3.5) with declared
/// parameters only, compared name by name and shape by shape with the tensor lists of spec §3.2–3.4.
/// </summary>
public sealed class InternVLShapeApprovalTests
{
    sealed record Vit(int C, int L, int Heads, int I, bool Is6B);
    sealed record Llm(int H, int I, int L, int Heads, int Kv, int Vocab = 151674);

    static readonly Vit Vit300M = new(1024, 24, 16, 4096, false);
    static readonly Vit Vit6B = new(3200, 45, 25, 12800, true);

    static readonly Dictionary<string, (Vit V, Llm L)> Presets = new()
    {
        ["InternVL3-1B"] = (Vit300M, new Llm(896, 4864, 24, 14, 2)),
        ["InternVL3-2B"] = (Vit300M, new Llm(1536, 8960, 28, 12, 2)),
        ["InternVL3-8B"] = (Vit300M, new Llm(3584, 18944, 28, 28, 4)),
        ["InternVL3-38B"] = (Vit6B, new Llm(5120, 27648, 64, 40, 8)),
    };

    static string ConfigJson(Vit v, Llm l) => string.Create(CultureInfo.InvariantCulture, $$"""
    {
      "architectures": ["InternVLChatModel"], "model_type": "internvl_chat", "torch_dtype": "bfloat16",
      "downsample_ratio": 0.5, "dynamic_image_size": true, "force_image_size": 448, "max_dynamic_patch": 12,
      "min_dynamic_patch": 1, "ps_version": "v2", "select_layer": -1, "system_message": null, "template": "internvl2_5",
      "tie_word_embeddings": false, "use_thumbnail": true, "use_backbone_lora": 0, "use_llm_lora": 0,
      "vision_config": {
        "architectures": ["InternVisionModel"], "model_type": "intern_vit_6b", "_name_or_path": "OpenGVLab/InternViT-6B-448px-V1-5",
        "hidden_size": {{v.C}}, "num_hidden_layers": {{v.L}}, "num_attention_heads": {{v.Heads}}, "intermediate_size": {{v.I}},
        "image_size": 448, "patch_size": 14, "num_channels": 3, "qkv_bias": {{(v.Is6B ? "false" : "true")}},
        "qk_normalization": {{(v.Is6B ? "true" : "false")}}, "norm_type": "{{(v.Is6B ? "rms_norm" : "layer_norm")}}",
        "layer_norm_eps": 1e-06, "hidden_act": "gelu", "drop_path_rate": 0.1, "initializer_factor": 0.1,
        "use_flash_attn": true, "use_moe": false, "num_experts": 8
      },
      "llm_config": {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "_name_or_path": "./pretrained/Qwen2.5-32B-Instruct",
        "hidden_size": {{l.H}}, "intermediate_size": {{l.I}}, "num_hidden_layers": {{l.L}}, "num_attention_heads": {{l.Heads}},
        "num_key_value_heads": {{l.Kv}}, "vocab_size": {{l.Vocab}}, "max_position_embeddings": 32768, "max_window_layers": 70,
        "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "rope_scaling": {"factor": 2.0, "rope_type": "dynamic", "type": "dynamic"},
        "hidden_act": "silu", "bos_token_id": 151643, "eos_token_id": 151643, "sliding_window": null,
        "use_sliding_window": false, "tie_word_embeddings": false, "use_cache": false, "attention_dropout": 0.0
      }
    }
    """);

    /// <summary>The tensor list of spec §3.2–3.4, written out independently of the model code.</summary>
    static List<(string Name, int[] Shape)> SpecTensors(Vit v, Llm l)
    {
        var t = new List<(string, int[])>();
        int C = v.C, H = l.H, hd = l.H / l.Heads;
        t.Add(("vision_model.embeddings.class_embedding", [1, 1, C]));
        t.Add(("vision_model.embeddings.patch_embedding.weight", [C, 3, 14, 14]));
        t.Add(("vision_model.embeddings.patch_embedding.bias", [C]));
        t.Add(("vision_model.embeddings.position_embedding", [1, 1025, C]));
        for (int i = 0; i < v.L; i++)
        {
            string p = $"vision_model.encoder.layers.{i}.";
            t.Add((p + "attn.qkv.weight", [3 * C, C]));
            if (!v.Is6B) t.Add((p + "attn.qkv.bias", [3 * C]));
            if (v.Is6B) { t.Add((p + "attn.q_norm.weight", [C])); t.Add((p + "attn.k_norm.weight", [C])); }
            t.Add((p + "attn.proj.weight", [C, C]));
            t.Add((p + "attn.proj.bias", [C]));
            t.Add((p + "mlp.fc1.weight", [v.I, C]));
            t.Add((p + "mlp.fc1.bias", [v.I]));
            t.Add((p + "mlp.fc2.weight", [C, v.I]));
            t.Add((p + "mlp.fc2.bias", [C]));
            t.Add((p + "norm1.weight", [C]));
            if (!v.Is6B) t.Add((p + "norm1.bias", [C]));
            t.Add((p + "norm2.weight", [C]));
            if (!v.Is6B) t.Add((p + "norm2.bias", [C]));
            t.Add((p + "ls1", [C]));
            t.Add((p + "ls2", [C]));
        }
        t.Add(("mlp1.0.weight", [4 * C]));
        t.Add(("mlp1.0.bias", [4 * C]));
        t.Add(("mlp1.1.weight", [H, 4 * C]));
        t.Add(("mlp1.1.bias", [H]));
        t.Add(("mlp1.3.weight", [H, H]));
        t.Add(("mlp1.3.bias", [H]));
        t.Add(("language_model.model.embed_tokens.weight", [l.Vocab, H]));
        for (int i = 0; i < l.L; i++)
        {
            string p = $"language_model.model.layers.{i}.";
            t.Add((p + "self_attn.q_proj.weight", [l.Heads * hd, H]));
            t.Add((p + "self_attn.q_proj.bias", [l.Heads * hd]));
            t.Add((p + "self_attn.k_proj.weight", [l.Kv * hd, H]));
            t.Add((p + "self_attn.k_proj.bias", [l.Kv * hd]));
            t.Add((p + "self_attn.v_proj.weight", [l.Kv * hd, H]));
            t.Add((p + "self_attn.v_proj.bias", [l.Kv * hd]));
            t.Add((p + "self_attn.o_proj.weight", [H, l.Heads * hd]));
            t.Add((p + "mlp.gate_proj.weight", [l.I, H]));
            t.Add((p + "mlp.up_proj.weight", [l.I, H]));
            t.Add((p + "mlp.down_proj.weight", [H, l.I]));
            t.Add((p + "input_layernorm.weight", [H]));
            t.Add((p + "post_attention_layernorm.weight", [H]));
        }
        t.Add(("language_model.model.norm.weight", [H]));
        t.Add(("language_model.lm_head.weight", [l.Vocab, H]));
        return t;
    }

    static string Line((string Name, int[] Shape) x) => x.Name + " " + Tensor.ShapeString(x.Shape);

    [Theory]
    [InlineData("InternVL3-1B")]
    [InlineData("InternVL3-2B")]
    [InlineData("InternVL3-8B")]
    [InlineData("InternVL3-38B")]
    public void Preset_DeclaresExactlyTheCheckpointTensors(string preset)
    {
        var (v, l) = Presets[preset];
        var config = InternVLChatConfig.Parse(ConfigJson(v, l), preset + "/config.json");
        using var model = new InternVLChatModel(config);

        var declared = model.StateSlots().Select(s => Line((s.Name, s.Slot.Shape))).ToList();
        var expected = SpecTensors(v, l).Select(Line).ToList();
        Assert.Equal(expected.Order(StringComparer.Ordinal), declared.Order(StringComparer.Ordinal));
        Assert.All(model.Parameters(), p => Assert.False(p.IsMaterialized));
        Assert.All(model.Parameters(), p => Assert.Equal(DType.BF16, p.DType));
        Assert.Equal(256, config.NumImageToken);
    }

    [Theory]
    [InlineData("InternVL3-1B", 938_193_024L)]
    [InlineData("InternVL3-8B", 7_944_373_760L)]
    public void Preset_ParameterCountMatchesTheHubFileSize(string preset, long count)
    {
        // spec §3.2/§3.3: counts derived from the hub's safetensors sizes (1.88 GB, 15.9 GB in bf16)
        var (v, l) = Presets[preset];
        using var model = new InternVLChatModel(InternVLChatConfig.Parse(ConfigJson(v, l)));
        Assert.Equal(count, model.NumParameters());
    }
}
