using System.Globalization;
using System.Text.Json;
using MMSharp.Engine;

namespace MMSharp.Models.InternVL;

/// <summary>A config.json is missing a field we need, or holds a value we do not support. The message names the file and field.</summary>
public sealed class ModelConfigException(string message) : Exception(message);

/// <summary>
/// InternViT config (<c>vision_config</c> of a chat checkpoint, class <c>InternVisionConfig</c>).
/// 300M: layer_norm, qkv bias, no q/k norm. 6B: rms_norm, no qkv bias, q/k RMSNorm over all heads.
/// </summary>
public sealed record InternVisionConfig(
    int HiddenSize,
    int NumHiddenLayers,
    int NumAttentionHeads,
    int IntermediateSize,
    int ImageSize,
    int PatchSize,
    int NumChannels,
    bool QkvBias,
    bool QkNormalization,
    string NormType,
    double LayerNormEps,
    string HiddenAct,
    double DropPathRate)
{
    public int HeadDim => HiddenSize / NumAttentionHeads;

    /// <summary>Patches per side of the position-embedding grid (image_size / patch_size; 32 at 448/14).</summary>
    public int GridSize => ImageSize / PatchSize;

    /// <summary>Rows of <c>position_embedding</c>: the grid plus the CLS row.</summary>
    public int NumPositions => GridSize * GridSize + 1;

    public bool UsesRmsNorm => NormType == "rms_norm";
}

/// <summary><c>rope_scaling</c> of the LLM config. Only "dynamic" (dynamic NTK) is implemented.</summary>
public sealed record RopeScaling(string Type, double Factor);

/// <summary>Qwen2 / Qwen2.5 decoder config (<c>llm_config</c>, <c>architectures[0] == "Qwen2ForCausalLM"</c>).</summary>
public sealed record Qwen2Config(
    string Architecture,
    int VocabSize,
    int HiddenSize,
    int IntermediateSize,
    int NumHiddenLayers,
    int NumAttentionHeads,
    int NumKeyValueHeads,
    int HeadDim,
    int MaxPositionEmbeddings,
    double RmsNormEps,
    double RopeTheta,
    RopeScaling? RopeScaling,
    bool TieWordEmbeddings,
    string HiddenAct,
    int? BosTokenId,
    int? EosTokenId)
{
    /// <summary>
    /// The RoPE base for a forward whose largest position id is <paramref name="maxPosition"/>.
    /// Default RoPE: rope_theta. Dynamic NTK (transformers <c>_compute_dynamic_ntk_parameters</c> via
    /// <c>dynamic_rope_update</c>): with seq_len = max position + 1 &gt; max_position_embeddings,
    /// base' = theta · (factor·seq_len/max_pos − (factor − 1))^(dim/(dim−2)), computed in float32 as the
    /// tensor path there does; at or below max_position_embeddings it is exactly theta.
    /// </summary>
    public double RopeBase(long maxPosition)
    {
        if (RopeScaling is not { Type: "dynamic" } rs) return RopeTheta;
        long seqLen = maxPosition + 1;
        if (seqLen <= MaxPositionEmbeddings) return RopeTheta;
        int dim = HeadDim;
        float ratio = (float)rs.Factor * seqLen / MaxPositionEmbeddings - (float)(rs.Factor - 1);
        float scale = MathF.Pow(ratio, (float)((double)dim / (dim - 2)));
        return (float)RopeTheta * scale;
    }
}

/// <summary>
/// Config of an InternVL chat checkpoint (<c>InternVLChatConfig</c>, <c>architectures ["InternVLChatModel"]</c>)
/// with its nested <c>vision_config</c> and <c>llm_config</c>. Unknown fields are ignored; fields the model needs are
/// validated with errors naming the file and field (the class defaults of the Python code differ from every
/// released checkpoint, e.g. ps_version "v1", so those fields are required rather than defaulted).
/// </summary>
public sealed record InternVLChatConfig(
    InternVisionConfig Vision,
    Qwen2Config Llm,
    int? ForceImageSize,
    double DownsampleRatio,
    string PsVersion,
    int SelectLayer,
    string? Template,
    bool DynamicImageSize,
    bool UseThumbnail,
    int MinDynamicPatch,
    int MaxDynamicPatch,
    string? SystemMessage,
    DType TorchDType,
    string Source)
{
    /// <summary>
    /// Fields that were absent from the file and took the default of the Python config class (as the official
    /// loader does; Hugging Face saves nested configs as a diff against those defaults), one line each with the value used.
    /// </summary>
    public IReadOnlyList<string> DefaultedFields { get; init; } = [];

    /// <summary>
    /// <c>use_llm_lora</c>: the LoRA rank r the official training wrapped <c>language_model</c> with (0 = none). When r &gt; 0
    /// the official <c>InternVLChatModel.__init__</c> re-wraps with <c>wrap_llm_lora(r, lora_alpha=2r)</c> (dropout 0.05)
    /// and the weights are in the PEFT layout (<see cref="InternVLPeftLayout"/>).
    /// </summary>
    public int UseLlmLora { get; init; }

    /// <summary><c>use_backbone_lora</c>: the same for <c>vision_model</c> (<c>wrap_backbone_lora(r, lora_alpha=2r)</c>).</summary>
    public int UseBackboneLora { get; init; }

    /// <summary>Input tile size: force_image_size, or the ViT's image_size when null.</summary>
    public int ImageSize => ForceImageSize ?? Vision.ImageSize;

    /// <summary>Channels 1/r² times wider after pixel shuffle with ratio r (4C for r = 0.5).</summary>
    public int ShuffleFactor => (int)Math.Round(1.0 / DownsampleRatio);

    /// <summary>int((image_size // patch_size)² · downsample_ratio²): 256 per 448×448 tile.</summary>
    public int NumImageToken
    {
        get
        {
            int g = ImageSize / Vision.PatchSize;
            return (int)(g * g * (DownsampleRatio * DownsampleRatio));
        }
    }

    /// <summary>Encoder layers that run: all for select_layer −1, L + select_layer + 1 for other negative values.</summary>
    public int VisionLayersUsed => SelectLayer < 0 ? Vision.NumHiddenLayers + SelectLayer + 1 : SelectLayer;

    /// <summary>Reads config.json (or <paramref name="path"/>/config.json). See <see cref="Parse"/>.</summary>
    public static InternVLChatConfig Load(string path, bool requireAllFields = false)
    {
        if (Directory.Exists(path)) path = Path.Combine(path, "config.json");
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: config.json not found", path);
        return Parse(File.ReadAllText(path), path, requireAllFields);
    }

    /// <summary>
    /// Parses an InternVLChatModel config. A field the model needs that is absent takes the default of the official
    /// config class (InternVLChatConfig, InternVisionConfig, Qwen2Config — what Python would use) and is listed in
    /// <see cref="DefaultedFields"/>; with <paramref name="requireAllFields"/> it is an error naming the file and field
    /// instead. Wrong types, unsupported values (architecture, activation, rope_scaling type, sliding window) and
    /// inconsistent geometry are always errors.
    /// </summary>
    public static InternVLChatConfig Parse(string json, string source = "config.json", bool requireAllFields = false)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json, new JsonDocumentOptions { AllowTrailingCommas = true }); }
        catch (JsonException e) { throw new ModelConfigException($"{source}: not valid JSON ({e.Message})"); }
        using (doc)
        {
            var defaulted = new List<string>();
            var root = new Fields(doc.RootElement, source, "", "InternVLChatConfig", requireAllFields, defaulted);
            var arch = root.StringList("architectures");
            if (arch != null && arch.Count > 0 && arch[0] != "InternVLChatModel")
                throw new ModelConfigException($"{source}: field 'architectures' is [{string.Join(", ", arch)}], expected InternVLChatModel");

            var vision = ParseVision(root.Object("vision_config", "InternVisionConfig"));
            var llm = ParseQwen2(root.Object("llm_config", "Qwen2Config"));

            double ratio = root.Double("downsample_ratio", 0.5);
            string ps = root.String("ps_version", "v1");
            if (ps != "v1" && ps != "v2")
                throw new ModelConfigException($"{source}: field 'ps_version' is '{ps}', expected 'v1' or 'v2'");
            int select = root.Int("select_layer", -1);
            if (select == 0 || select < -vision.NumHiddenLayers - 1 || select > vision.NumHiddenLayers)
                throw new ModelConfigException($"{source}: field 'select_layer' is {select}, outside [-{vision.NumHiddenLayers + 1}, {vision.NumHiddenLayers}] \\ {{0}}");
            int? force = root.IntOrNull("force_image_size");
            int imageSize = force ?? vision.ImageSize;
            double inv = 1.0 / ratio;
            if (ratio <= 0 || ratio > 1 || Math.Abs(inv - Math.Round(inv)) > 1e-9)
                throw new ModelConfigException($"{source}: field 'downsample_ratio' is {ratio}; pixel shuffle needs 1/ratio to be an integer");
            int grid = imageSize / vision.PatchSize;
            if (imageSize % vision.PatchSize != 0 || grid % (int)Math.Round(inv) != 0)
                throw new ModelConfigException($"{source}: image size {imageSize} / patch {vision.PatchSize} does not give a patch grid divisible by 1/downsample_ratio = {inv}");

            string dtypeName = root.StringOr("torch_dtype", "bfloat16");
            var dtype = dtypeName switch
            {
                "bfloat16" => DType.BF16,
                "float32" => DType.F32,
                "float16" => DType.F16,
                _ => throw new ModelConfigException($"{source}: field 'torch_dtype' is '{dtypeName}', expected bfloat16, float16 or float32"),
            };

            return new InternVLChatConfig(vision, llm, force, ratio, ps, select,
                root.StringOrNull("template"),
                root.BoolOr("dynamic_image_size", false),
                root.BoolOr("use_thumbnail", false),
                root.IntOr("min_dynamic_patch", 1),
                root.IntOr("max_dynamic_patch", 6),
                root.StringOrNull("system_message"),
                dtype, source)
            {
                DefaultedFields = defaulted,
                UseLlmLora = NonNegative(root, "use_llm_lora"),
                UseBackboneLora = NonNegative(root, "use_backbone_lora"),
            };
        }
    }

    static int NonNegative(Fields root, string field)
    {
        int r = root.IntOr(field, 0);   // class default 0 = no adapter; not listed as defaulted (plain checkpoints omit nothing we need)
        if (r < 0) throw root.Error(field, $"is {r}; a LoRA rank must be 0 (none) or positive");
        return r;
    }

    static InternVisionConfig ParseVision(Fields v)
    {
        // defaults: InternVisionConfig.__init__ (the InternViT-6B-224px original)
        int hidden = v.Int("hidden_size", 3200), heads = v.Int("num_attention_heads", 25);
        int image = v.Int("image_size", 224), patch = v.Int("patch_size", 14);
        string norm = v.String("norm_type", "rms_norm");
        if (norm != "layer_norm" && norm != "rms_norm")
            throw v.Error("norm_type", $"is '{norm}', expected 'layer_norm' or 'rms_norm'");
        string act = v.StringOr("hidden_act", "gelu");
        if (act != "gelu") throw v.Error("hidden_act", $"is '{act}'; only 'gelu' (exact erf) is supported");
        if (heads <= 0 || hidden % heads != 0) throw v.Error("num_attention_heads", $"({heads}) does not divide hidden_size {hidden}");
        if (patch <= 0 || image % patch != 0) throw v.Error("image_size", $"({image}) is not a multiple of patch_size {patch}");
        return new InternVisionConfig(
            hidden, v.Int("num_hidden_layers", 48), heads, v.Int("intermediate_size", 12800), image, patch,
            v.Int("num_channels", 3), v.Bool("qkv_bias", false), v.Bool("qk_normalization", true), norm,
            v.Double("layer_norm_eps", 1e-6), act, v.DoubleOr("drop_path_rate", 0.0));
    }

    static Qwen2Config ParseQwen2(Fields l)
    {
        var arch = l.StringList("architectures") ?? throw l.Error("architectures", "is missing (needed to pick the LLM class)");
        if (arch.Count == 0 || arch[0] != "Qwen2ForCausalLM")
            throw l.Error("architectures", $"is [{string.Join(", ", arch)}]; unsupported LLM architecture (only Qwen2ForCausalLM is implemented)");
        // defaults: transformers Qwen2Config.__init__
        int hidden = l.Int("hidden_size", 4096), heads = l.Int("num_attention_heads", 32), kv = l.Int("num_key_value_heads", 32);
        if (heads <= 0 || kv <= 0 || heads % kv != 0)
            throw l.Error("num_key_value_heads", $"({kv}) does not divide num_attention_heads {heads}");
        int? headDim = l.IntOrNull("head_dim");
        if (headDim == null && hidden % heads != 0) throw l.Error("num_attention_heads", $"({heads}) does not divide hidden_size {hidden}");
        int hd = headDim ?? hidden / heads;
        if (hd % 2 != 0) throw l.Error("head_dim", $"({hd}) must be even for rotary embedding");
        string act = l.StringOr("hidden_act", "silu");
        if (act != "silu") throw l.Error("hidden_act", $"is '{act}'; only 'silu' is supported");
        if (l.BoolOr("use_sliding_window", false))
            throw l.Error("use_sliding_window", "is true; sliding-window attention is not supported");

        RopeScaling? scaling = null;
        if (l.ObjectOrNull("rope_scaling") is Fields rs)
        {
            string type = rs.StringOrNull("rope_type") ?? rs.StringOrNull("type")
                ?? throw rs.Error("rope_type", "is missing (neither 'rope_type' nor 'type' given)");
            if (type != "default")
            {
                if (type != "dynamic")
                    throw rs.Error(rs.Has("rope_type") ? "rope_type" : "type", $"is '{type}': unsupported rope_scaling type '{type}' (only 'dynamic' and 'default' are implemented)");
                double factor = rs.Double("factor", null);
                if (factor < 1) throw rs.Error("factor", $"is {factor}; dynamic NTK needs factor >= 1");
                scaling = new RopeScaling(type, factor);
            }
        }
        return new Qwen2Config("Qwen2ForCausalLM", l.Int("vocab_size", 151936), hidden, l.Int("intermediate_size", 22016),
            l.Int("num_hidden_layers", 32), heads, kv, hd, l.Int("max_position_embeddings", 32768), l.Double("rms_norm_eps", 1e-6),
            l.Double("rope_theta", 10000.0), scaling, l.BoolOr("tie_word_embeddings", false), act,
            l.IntOrNull("bos_token_id"), l.IntOrNull("eos_token_id"));
    }

    /// <summary>
    /// Typed access to one JSON object with errors naming the file and the dotted field path. Getters taking a
    /// default apply the Python class default <paramref name="owner"/> uses for an absent field, and record it
    /// (or throw when <paramref name="strict"/>).
    /// </summary>
    sealed class Fields(JsonElement e, string source, string path, string owner, bool strict, List<string> defaulted)
    {
        string Name(string f) => path.Length == 0 ? f : path + "." + f;

        public ModelConfigException Error(string field, string what) =>
            new($"{source}: field '{Name(field)}' {what}");

        public bool Has(string f) => e.TryGetProperty(f, out var x) && x.ValueKind != JsonValueKind.Null;

        JsonElement Req(string f) =>
            e.TryGetProperty(f, out var x) && x.ValueKind != JsonValueKind.Null ? x : throw Error(f, "is missing");

        JsonElement? Opt(string f) =>
            e.TryGetProperty(f, out var x) && x.ValueKind != JsonValueKind.Null ? x : null;

        T Default<T>(string f, T? d) where T : struct
        {
            if (d is not T value || strict) throw Error(f, "is missing");
            defaulted.Add(string.Create(CultureInfo.InvariantCulture, $"{source}: '{Name(f)}' absent, using the {owner} default {FormatValue(value)}"));
            return value;
        }

        static string FormatValue(object v) => v switch
        {
            bool b => b ? "true" : "false",
            double d => d.ToString("R", CultureInfo.InvariantCulture),
            _ => Convert.ToString(v, CultureInfo.InvariantCulture) ?? "",
        };

        public Fields Object(string f, string childOwner)
        {
            var x = Req(f);
            if (x.ValueKind != JsonValueKind.Object) throw Error(f, $"is a {x.ValueKind}, expected an object");
            return new Fields(x, source, Name(f), childOwner, strict, defaulted);
        }

        public Fields? ObjectOrNull(string f) => Opt(f) is JsonElement x
            ? (x.ValueKind == JsonValueKind.Object ? new Fields(x, source, Name(f), owner, strict, defaulted) : throw Error(f, $"is a {x.ValueKind}, expected an object or null"))
            : null;

        public int Int(string f, int? d = null) => Opt(f) is JsonElement x ? ToInt(f, x) : Default(f, d);
        public int IntOr(string f, int d) => Opt(f) is JsonElement x ? ToInt(f, x) : d;
        public int? IntOrNull(string f) => Opt(f) is JsonElement x ? ToInt(f, x) : null;

        int ToInt(string f, JsonElement x)
        {
            if (x.ValueKind == JsonValueKind.Number && x.TryGetInt32(out int v)) return v;
            // 448.0 is an integer too
            if (x.ValueKind == JsonValueKind.Number && x.TryGetDouble(out double d) && d == Math.Floor(d) && Math.Abs(d) < int.MaxValue) return (int)d;
            throw Error(f, $"is {x.GetRawText()}, expected an integer");
        }

        public double Double(string f, double? d) => Opt(f) is JsonElement x ? ToDouble(f, x) : Default(f, d);
        public double DoubleOr(string f, double d) => Opt(f) is JsonElement x ? ToDouble(f, x) : d;

        double ToDouble(string f, JsonElement x) =>
            x.ValueKind == JsonValueKind.Number ? x.GetDouble() : throw Error(f, $"is {x.GetRawText()}, expected a number");

        public bool Bool(string f, bool? d) => Opt(f) is JsonElement x ? ToBool(f, x) : Default(f, d);
        public bool BoolOr(string f, bool d) => Opt(f) is JsonElement x ? ToBool(f, x) : d;

        bool ToBool(string f, JsonElement x) => x.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Error(f, $"is {x.GetRawText()}, expected true or false"),
        };

        /// <summary>A string with a class default (absent: recorded or, when strict, an error).</summary>
        public string String(string f, string d)
        {
            if (Opt(f) is JsonElement x) return ToStr(f, x);
            if (strict) throw Error(f, "is missing");
            defaulted.Add($"{source}: '{Name(f)}' absent, using the {owner} default '{d}'");
            return d;
        }
        public string StringOr(string f, string d) => Opt(f) is JsonElement x ? ToStr(f, x) : d;
        public string? StringOrNull(string f) => Opt(f) is JsonElement x ? ToStr(f, x) : null;

        string ToStr(string f, JsonElement x) =>
            x.ValueKind == JsonValueKind.String ? x.GetString()! : throw Error(f, $"is {x.GetRawText()}, expected a string");

        public List<string>? StringList(string f)
        {
            if (Opt(f) is not JsonElement x) return null;
            if (x.ValueKind != JsonValueKind.Array) throw Error(f, $"is {x.GetRawText()}, expected a list of strings");
            return x.EnumerateArray().Select(i => i.ValueKind == JsonValueKind.String ? i.GetString()! : throw Error(f, "holds a non-string")).ToList();
        }
    }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"InternVLChatConfig(ViT {Vision.HiddenSize}x{Vision.NumHiddenLayers} {Vision.NormType}, LLM {Llm.HiddenSize}x{Llm.NumHiddenLayers} {Llm.NumAttentionHeads}/{Llm.NumKeyValueHeads} heads, vocab {Llm.VocabSize}, {NumImageToken} tokens/tile)");
}
