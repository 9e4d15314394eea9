using System.Text.Json;
using System.Text.Json.Nodes;
using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.Engine.IO;
using MMSharp.Data;
using MMSharp.NN;
using MMSharp.Text;

namespace MMSharp.Models.InternVL;

/// <summary>
/// Small randomly initialised InternVL-architecture models in Hugging Face layout (<c>mmsharp init</c>): a config.json
/// with nested <c>vision_config</c> / <c>llm_config</c> as the official checkpoints have, and model.safetensors.
/// </summary>
public static class InternVLPresets
{
    /// <summary>Geometry of a preset. The demo's 42-pixel images with 7-pixel patches give 6×6 patches → 3×3 = 9 image tokens, one per cell of the shapes canvas.</summary>
    public sealed record Geometry(int ImageSize, int PatchSize, int VitHidden, int VitLayers, int VitHeads, int VitIntermediate,
        int LlmHidden, int LlmLayers, int LlmHeads, int LlmKvHeads, int LlmIntermediate, int MaxPositions, double DropPathRate = 0.0,
        double LlmInitStd = 0.02);

    /// <summary>
    /// The <c>demo</c> preset (≈ 0.3 M parameters plus the embeddings). Its LLM is initialised with std 0.08 (config
    /// <c>initializer_range</c>) instead of Qwen2's 0.02, which is sized for hidden ≥ 896: in a 96-wide model 0.02 leaves the
    /// attention almost uniform at the start, and the questions that must pick one shape out of several then sat on a
    /// plateau for thousands of steps (held-out accuracy 0.55–0.89 after 6000 steps against 0.955–0.98 with 0.08).
    /// </summary>
    public static readonly Geometry Demo = new(ImageSize: 42, PatchSize: 7, VitHidden: 64, VitLayers: 2, VitHeads: 2, VitIntermediate: 128,
        LlmHidden: 96, LlmLayers: 2, LlmHeads: 4, LlmKvHeads: 2, LlmIntermediate: 192, MaxPositions: 2048, LlmInitStd: 0.08);

    /// <summary>
    /// <c>initializer_factor</c> of the vision config, which InternViT uses as the initial layer scale (ls1, ls2): 0.1 keeps
    /// each patch's features mostly its own at the start (with 1.0 the untrained attention averages every patch of the image
    /// into every token, and small local differences such as shape are buried).
    /// </summary>
    public const double LayerScaleInit = 0.1;

    public static Geometry Named(string preset) => preset switch
    {
        "demo" => Demo,
        _ => throw new ArgumentException($"init: unknown preset '{preset}' (known: demo)"),
    };

    /// <summary>config.json of an InternVL3-style chat model (Qwen2 LLM, ViT-300M-style vision tower) with geometry <paramref name="g"/>.</summary>
    public static JsonObject ConfigJson(Geometry g, int vocabSize, int bosId, int eosId, string torchDtype = "float32") => new()
    {
        ["architectures"] = new JsonArray("InternVLChatModel"),
        ["model_type"] = "internvl_chat",
        ["torch_dtype"] = torchDtype,
        ["downsample_ratio"] = 0.5,
        ["dynamic_image_size"] = false,
        ["force_image_size"] = g.ImageSize,
        ["max_dynamic_patch"] = 1,
        ["min_dynamic_patch"] = 1,
        ["pad2square"] = false,
        ["ps_version"] = "v2",
        ["select_layer"] = -1,
        ["template"] = "internvl2_5",
        ["tie_word_embeddings"] = false,
        ["use_backbone_lora"] = 0,
        ["use_llm_lora"] = 0,
        ["use_thumbnail"] = false,
        ["vision_config"] = new JsonObject
        {
            ["architectures"] = new JsonArray("InternVisionModel"),
            ["model_type"] = "intern_vit_6b",
            ["num_channels"] = 3,
            ["image_size"] = g.ImageSize,
            ["patch_size"] = g.PatchSize,
            ["hidden_act"] = "gelu",
            ["layer_norm_eps"] = 1e-6,
            ["dropout"] = 0.0,
            ["attention_dropout"] = 0.0,
            ["drop_path_rate"] = g.DropPathRate,
            ["initializer_factor"] = LayerScaleInit,
            ["initializer_range"] = 0.02,
            ["hidden_size"] = g.VitHidden,
            ["num_hidden_layers"] = g.VitLayers,
            ["num_attention_heads"] = g.VitHeads,
            ["intermediate_size"] = g.VitIntermediate,
            ["qkv_bias"] = true,
            ["qk_normalization"] = false,
            ["norm_type"] = "layer_norm",
            ["use_flash_attn"] = false,
        },
        ["llm_config"] = new JsonObject
        {
            ["architectures"] = new JsonArray("Qwen2ForCausalLM"),
            ["model_type"] = "qwen2",
            ["attention_dropout"] = 0.0,
            ["bos_token_id"] = bosId,
            ["eos_token_id"] = eosId,
            ["hidden_act"] = "silu",
            ["initializer_range"] = g.LlmInitStd,
            ["hidden_size"] = g.LlmHidden,
            ["intermediate_size"] = g.LlmIntermediate,
            ["num_hidden_layers"] = g.LlmLayers,
            ["num_attention_heads"] = g.LlmHeads,
            ["num_key_value_heads"] = g.LlmKvHeads,
            ["max_position_embeddings"] = g.MaxPositions,
            ["max_window_layers"] = g.LlmLayers,
            ["rms_norm_eps"] = 1e-6,
            ["rope_theta"] = 10000.0,
            ["sliding_window"] = null,
            ["use_sliding_window"] = false,
            ["use_cache"] = true,
            ["tie_word_embeddings"] = false,
            ["vocab_size"] = vocabSize,
        },
    };

    /// <summary>
    /// Initialises every parameter of a declared model as the official code does: LLM Linear and Embedding weights
    /// ~ N(0, 0.02²) (Qwen2 <c>_init_weights</c>); the vision tower and projector keep PyTorch's module defaults (Linear/Conv
    /// U(±1/√fan_in); CLS and position embeddings <c>torch.randn</c>, N(0, 1), as InternVisionEmbeddings creates them);
    /// biases 0, norm weights 1, layer scales <paramref name="layerScale"/>. Deterministic in <paramref name="seed"/>.
    /// </summary>
    public static void InitRandom(Module model, ulong seed, float std = 0.02f, float layerScale = 0.1f)
    {
        using var _ = GradMode.NoGrad();
        var normWeights = new HashSet<Parameter>(ReferenceEqualityComparer.Instance);
        foreach (var (_, m) in model.NamedModules())
        {
            if (m is LayerNorm ln && ln.Weight != null) normWeights.Add(ln.Weight);
            if (m is RMSNorm rn) normWeights.Add(rn.Weight);
        }
        ulong k = 0;
        foreach (var (name, p) in model.NamedParameters())
        {
            k++;
            string local = name[(name.LastIndexOf('.') + 1)..];
            Tensor t;
            if (normWeights.Contains(p)) t = Tensor.Full(p.Shape, 1f);
            else if (local is "ls1" or "ls2") t = Tensor.Full(p.Shape, layerScale);
            else if (local == "bias") t = Tensor.Zeros(p.Shape);
            else if (name is "vision_model.embeddings.class_embedding" or "vision_model.embeddings.position_embedding")
                t = Tensor.RandN(p.Shape, seed * 0x9E3779B97F4A7C15UL + k, 1f);
            else if (p.Shape.Length >= 2 && (name.StartsWith("vision_model.encoder.", StringComparison.Ordinal)
                     || name.StartsWith("vision_model.embeddings.patch_embedding.", StringComparison.Ordinal) || name.StartsWith("mlp1.", StringComparison.Ordinal)))
            {
                // PyTorch's default Linear/Conv init (kaiming_uniform a=√5: U(±1/√fan_in)), which the ViT and projector
                // keep (no _init_weights override); N(0, 0.02²) here makes every tile's features nearly equal
                float bound = 1f / MathF.Sqrt(p.NumEl / p.Shape[0]);
                t = Tensor.RandUniform(p.Shape, seed * 0x9E3779B97F4A7C15UL + k, -bound, bound);
            }
            else t = Tensor.RandN(p.Shape, seed * 0x9E3779B97F4A7C15UL + k, std);
            p.Set(t);
            t.Dispose();
        }
    }

    /// <summary>
    /// Writes config.json, model.safetensors (F32) and generation_config.json of a fresh preset model into
    /// <paramref name="outDir"/>; the tokenizer files (with <c>&lt;IMG_CONTEXT&gt;</c> among the added tokens) must be
    /// written there by the caller. Returns the number of parameters.
    /// </summary>
    public static long WriteRandomModel(string outDir, Geometry g, int vocabSize, int bosId, int eosId, ulong seed)
    {
        Directory.CreateDirectory(outDir);
        var json = ConfigJson(g, vocabSize, bosId, eosId);
        string text = json.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
        var config = InternVLChatConfig.Parse(text, Path.Combine(outDir, "config.json"));
        using var model = new InternVLChatModel(config, DType.F32);
        InitRandom(model, seed, std: (float)g.LlmInitStd, layerScale: (float)LayerScaleInit);
        SafeTensorsWriter.Write(Path.Combine(outDir, "model.safetensors"), model.StateDict(), new Dictionary<string, string> { ["format"] = "pt" });
        File.WriteAllText(Path.Combine(outDir, "config.json"), text);
        InternVLExport.WriteGenerationConfig(outDir, bosId, eosId);
        return model.NumParameters();
    }

    /// <summary>
    /// <c>mmsharp init</c>: a tokenizer of the shapes corpus (<see cref="TinyTokenizer"/>), then random weights of
    /// <paramref name="preset"/> with that vocabulary (bos = &lt;|endoftext|&gt;, eos = &lt;|im_end|&gt;). Returns the parameter count.
    /// </summary>
    public static long WriteShapesDemoModel(string dir, string preset, ulong seed, out int vocab)
    {
        var g = Named(preset);
        vocab = TinyTokenizer.Write(dir, ShapesDataset.CorpusTexts());
        var tok = Qwen2Tokenizer.FromDirectory(dir);
        int bos = tok.TokenToId("<|endoftext|>") ?? 0;
        int eos = tok.TokenToId("<|im_end|>") ?? throw new InvalidDataException("init: the tokenizer has no <|im_end|>");
        return WriteRandomModel(dir, g, vocab, bos, eos, seed);
    }
}
