using System.Text.Json;
using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.Engine.IO;
using MMSharp.NN;

namespace MMSharp.Models.InternVL;

// InternVLChatModel (OpenGVLab modeling_internvl_chat.py): InternViT -> drop CLS -> pixel shuffle -> mlp1 ->
// vision tokens written over the <IMG_CONTEXT> embeddings -> Qwen2. Shapes: N tiles, C ViT hidden,
// r downsample ratio (0.5), Hl LLM hidden, B batch, T tokens, V vocab.

/// <summary>
/// pixel_shuffle of the official code: x [N, w, h, c] -> [N, h·r, w·r, c/r²] by the same view/permute sequence.
/// For ps_version v2 and r = ½: out[n, i, j, m·2c + k·c + d] = x[n, 2i + m, 2j + k, d] (2×2 blocks, channel
/// order TL | TR | BL | BR, tokens row-major). v1 omits the last permute (tokens column-major).
/// </summary>
public static class PixelShuffle
{
    public static Tensor Apply(Tensor x, double scale, string psVersion)
    {
        if (x.Rank != 4) throw new ArgumentException($"pixel_shuffle: x must be [N, w, h, c], got {x.Describe()}");
        int n = x.Shape[0], w = x.Shape[1], h = x.Shape[2], c = x.Shape[3];
        int hs = (int)(h * scale), ws = (int)(w * scale), cs = (int)(c / scale), css = (int)(c / (scale * scale));
        if (hs * (double)cs != (double)h * c || (double)ws * hs * css != (double)w * h * c)
            throw new ArgumentException($"pixel_shuffle: {x.Describe()} does not split by scale {scale}");
        using var a = Ops.Reshape(x, n, w, hs, cs);                               // [N, w, h·r, c/r]
        using var b = Ops.Permute(a, 0, 2, 1, 3);                                 // [N, h·r, w, c/r]
        using var bc = Ops.Contiguous(b);
        var y = Ops.Reshape(bc, n, hs, ws, css);                                  // [N, h·r, w·r, c/r²]
        if (psVersion == "v1") return y;
        using (y)
        using (var p = Ops.Permute(y, 0, 2, 1, 3))
            return Ops.Contiguous(p);
    }
}

/// <summary>
/// <c>mlp1</c>, the vision-to-LLM projector (an nn.Sequential): <c>0</c> LayerNorm(C/r², eps 1e-5 — PyTorch's default,
/// not the ViT's 1e-6), <c>1</c> Linear(C/r² → Hl), <c>2</c> GELU (exact erf, no parameters), <c>3</c> Linear(Hl → Hl).
/// </summary>
public sealed class InternVLProjector : Module
{
    public readonly LayerNorm Norm;
    public readonly Linear Fc1, Fc2;

    public InternVLProjector(int inFeatures, int hidden, DType dtype)
    {
        Norm = RegisterModule("0", new LayerNorm(inFeatures, 1e-5f, dtype: dtype));
        Fc1 = RegisterModule("1", new Linear(inFeatures, hidden, bias: true, dtype));
        Fc2 = RegisterModule("3", new Linear(hidden, hidden, bias: true, dtype));
    }

    public Tensor Forward(Tensor x)
    {
        using var n = Norm.Forward(x);
        using var h = Fc1.Forward(n);
        using var a = Ops.Gelu(h);
        return Fc2.Forward(a);
    }
}

/// <summary>
/// InternVL 2 / 2.5 / 3 chat model with a Qwen2 LLM: <c>vision_model</c>, <c>mlp1</c>, <c>language_model</c>.
/// Parameter names equal the Hugging Face checkpoint keys.
/// </summary>
public sealed class InternVLChatModel : Module
{
    public InternVLChatConfig Config { get; }
    public readonly InternVisionModel VisionModel;
    public readonly InternVLProjector Mlp1;
    public readonly Qwen2ForCausalLM LanguageModel;

    /// <summary>Id of <c>&lt;IMG_CONTEXT&gt;</c> (151667 for InternVL3's Qwen2.5 tokenizer); read from the tokenizer files by <see cref="FromPretrained"/>.</summary>
    public int? ImgContextTokenId { get; set; }

    /// <summary>What <see cref="FromPretrained"/> decided about items the config does not settle (e.g. a missing lm_head).</summary>
    public IReadOnlyList<string> LoadNotes { get; private set; } = [];

    ActivationTap? _tap;

    /// <summary>Receives named activations of every stage ("vit.*", "vision_features", "inputs_embeds", "llm.*", "logits").</summary>
    public ActivationTap? Tap
    {
        get => _tap;
        set { _tap = value; VisionModel.Tap = value; }
    }

    /// <summary>A model with declared parameters only (no memory) in <paramref name="dtype"/>; load with <see cref="Module.LoadStateDict(ICheckpointReader, bool, DTypePolicy, string, Func{string, string}, WeightArena)"/>.</summary>
    public InternVLChatModel(InternVLChatConfig config, DType? dtype = null, bool tieLmHead = false)
    {
        Config = config;
        var dt = dtype ?? config.TorchDType;
        VisionModel = RegisterModule("vision_model", new InternVisionModel(config.Vision, dt));
        int shuffled = config.Vision.HiddenSize * config.ShuffleFactor * config.ShuffleFactor;
        Mlp1 = RegisterModule("mlp1", new InternVLProjector(shuffled, config.Llm.HiddenSize, dt));
        LanguageModel = RegisterModule("language_model", new Qwen2ForCausalLM(config.Llm, dt, tieLmHead));
    }

    // ---------------------------------------------------------------- vision

    /// <summary>A copy of pixel values rounded to the checkpoint's dtype (bf16/f16), as the model card's
    /// <c>.to(torch.bfloat16)</c> feeds them, in F32; an F32 checkpoint gets them unchanged.</summary>
    public Tensor RoundPixels(Tensor pixelValues)
    {
        if (Config.TorchDType is not (DType.BF16 or DType.F16)) return Ops.Clone(pixelValues);
        using var low = Ops.To(pixelValues, Config.TorchDType);
        return Ops.To(low, DType.F32);
    }

    /// <summary>
    /// extract_feature: pixel_values [N, 3, S, S] -> vision tokens [N, num_image_token, Hl] (F32).
    /// ViT (select_layer) -> drop CLS -> [N, h, w, C] -> pixel shuffle -> [N, h·w·r², C/r²] -> mlp1.
    /// </summary>
    public Tensor ExtractFeature(Tensor pixelValues)
    {
        using var vit = VisionModel.Forward(pixelValues, Config.VisionLayersUsed);   // [N, 1 + h·w, C]
        int N = vit.Shape[0], HW = vit.Shape[1] - 1, C = vit.Shape[2];
        int side = (int)Math.Sqrt(HW);
        if (side * side != HW)
            throw new ArgumentException($"InternVLChatModel.ExtractFeature: {HW} patches per tile are not a square grid (pixel_values {pixelValues.Describe()})");
        using var patches = Ops.Narrow(vit, 1, 1, HW);                               // [N, h·w, C] (CLS dropped)
        using var grid = Ops.Reshape(patches, N, side, side, C);                     // [N, h, w, C]
        using var shuffled = PixelShuffle.Apply(grid, Config.DownsampleRatio, Config.PsVersion); // [N, h·r, w·r, C/r²]
        using var tokens = Ops.Reshape(shuffled, N, -1, shuffled.Shape[3]);          // [N, h·w·r², C/r²]
        _tap?.Invoke("vision_tokens", tokens);
        var features = Mlp1.Forward(tokens);                                         // [N, h·w·r², Hl]
        _tap?.Invoke("vision_features", features);
        return features;
    }

    // ---------------------------------------------------------------- embeddings

    /// <summary>
    /// Token embeddings [B, T, Hl] with the rows of <c>&lt;IMG_CONTEXT&gt;</c> tokens replaced, in order, by the rows of
    /// <paramref name="visionFeatures"/> [N, n, Hl] (tile order, token order within a tile). Tiles with
    /// <paramref name="imageFlags"/>[i] == 0 (padding tiles of packed training) are skipped first. The number
    /// of context tokens must equal the number of feature rows.
    /// </summary>
    public Tensor EmbedInputs(Tensor inputIds, Tensor? visionFeatures, Tensor? imageFlags = null) =>
        EmbedInputs(inputIds, visionFeatures, imageFlags, allowTruncatedImages: false, out _);

    /// <summary>
    /// <see cref="EmbedInputs(Tensor, Tensor?, Tensor?)"/>; with <paramref name="allowTruncatedImages"/> fewer context tokens
    /// than feature rows (a <c>max_seq_length</c> cut) take the FIRST rows and set <paramref name="imageTokensTruncated"/>,
    /// as the official training forward does (its caller then multiplies the loss by 0). More tokens than rows is an error.
    /// </summary>
    public Tensor EmbedInputs(Tensor inputIds, Tensor? visionFeatures, Tensor? imageFlags, bool allowTruncatedImages, out bool imageTokensTruncated)
    {
        imageTokensTruncated = false;
        if (inputIds.Rank != 2) throw new ArgumentException($"InternVLChatModel: input_ids must be [B, T], got {inputIds.Describe()}");
        var embeds = LanguageModel.Model.EmbedTokens.Forward(inputIds);              // [B, T, Hl]
        if (visionFeatures == null) return embeds;
        using (embeds)
        {
            int id = ImgContextTokenId ?? throw new InvalidOperationException(
                "InternVLChatModel: ImgContextTokenId is not set (no <IMG_CONTEXT> in the checkpoint's tokenizer files); set it from the tokenizer");
            using var selected = SelectFlagged(visionFeatures, imageFlags);          // [N', n, Hl]
            using var mask = ContextMask(inputIds, id, out long count);              // [B, T, 1]
            int hidden = selected.Shape[^1];
            long rows = selected.NumEl / hidden;
            if (count != rows && !(allowTruncatedImages && count < rows))
                throw new ArgumentException($"InternVLChatModel: input_ids hold {count} <IMG_CONTEXT> tokens (id {id}) but the images give {rows} feature rows ({selected.Describe()})");
            imageTokensTruncated = count < rows;
            using var flat = Ops.Reshape(selected, checked((int)rows), hidden);
            using var used = Ops.Narrow(flat, 0, 0, checked((int)count));            // vit_embeds[:n_token]
            var merged = Ops.MaskedScatter(embeds, mask, used);
            _tap?.Invoke("inputs_embeds", merged);
            return merged;
        }
    }

    /// <summary>The feature rows [N', n, Hl] of the tiles whose image flag is 1 (all of them without flags).</summary>
    static Tensor SelectFlagged(Tensor features, Tensor? imageFlags)
    {
        if (imageFlags == null) return Ops.Contiguous(features);   // an alias that keeps the autograd link
        if (imageFlags.NumEl != features.Shape[0])
            throw new ArgumentException($"InternVLChatModel: image_flags {imageFlags.Describe()} must have one entry per tile ({features.Shape[0]})");
        var keep = new List<long>();
        for (long i = 0; i < imageFlags.NumEl; i++) if (imageFlags.GetFlat(i) == 1f) keep.Add(i);
        if (keep.Count == features.Shape[0]) return Ops.Contiguous(features);
        using var idx = Tensor.FromArray(keep.ToArray(), keep.Count);
        return Ops.IndexSelect(features, 0, idx);
    }

    static Tensor ContextMask(Tensor inputIds, int id, out long count)
    {
        int B = inputIds.Shape[0], T = inputIds.Shape[1];
        var mask = Tensor.Empty([B, T, 1], DType.Bool);
        count = 0;
        for (long i = 0; i < (long)B * T; i++)
        {
            bool hit = inputIds.GetFlatLong(i) == id;
            mask.SetFlat(i, hit ? 1 : 0);
            if (hit) count++;
        }
        return mask;
    }

    // ---------------------------------------------------------------- forward

    /// <summary>
    /// Full forward: input_ids [B, T] (I64/I32), pixel_values [N, 3, S, S] or null, image_flags [N] or null ->
    /// logits [B, T, V] (F32). Positions 0…T−1, causal attention, no cache. Packed training rows (several samples in one
    /// row) pass <paramref name="positionIds"/> (I64 [B, T], restarting at 0 in every sample) and
    /// <paramref name="segmentIds"/> (I64 [B, T], one id per sample): each sample then attends only to itself.
    /// </summary>
    public Tensor Forward(Tensor inputIds, Tensor? pixelValues = null, Tensor? imageFlags = null,
        Tensor? positionIds = null, Tensor? segmentIds = null) =>
        Forward(inputIds, pixelValues, imageFlags, positionIds, segmentIds, allowTruncatedImages: false, out _);

    /// <summary>
    /// <see cref="Forward(Tensor, Tensor?, Tensor?, Tensor?, Tensor?)"/> with the image-token rule of
    /// <see cref="EmbedInputs(Tensor, Tensor?, Tensor?, bool, out bool)"/> (training passes <paramref name="allowTruncatedImages"/>).
    /// </summary>
    public Tensor Forward(Tensor inputIds, Tensor? pixelValues, Tensor? imageFlags, Tensor? positionIds, Tensor? segmentIds,
        bool allowTruncatedImages, out bool imageTokensTruncated)
    {
        using var features = pixelValues != null ? ExtractFeature(pixelValues) : null;
        using var embeds = EmbedInputs(inputIds, features, imageFlags, allowTruncatedImages, out imageTokensTruncated);
        var logits = LanguageModel.Forward(embeds, cache: null, lastOnly: false, _tap, positionIds: positionIds, segmentIds: segmentIds);
        _tap?.Invoke("logits", logits);
        return logits;
    }

    // ---------------------------------------------------------------- loading

    /// <summary>
    /// Loads a Hugging Face InternVL chat checkpoint directory: config.json, then model.safetensors or a sharded
    /// model.safetensors.index.json. Weights keep their stored dtype and stay memory-mapped (no copy; mapped through huge
    /// pages where the page cache holds the file in 2 MiB folios, see <see cref="HugePages"/>), or with
    /// <paramref name="mapped"/> false are copied into a <see cref="WeightArena"/>, on huge pages whatever the page cache
    /// holds (decoding, which streams every weight per token, then runs at that speed even for a file written just now).
    /// Every missing, unexpected and wrongly shaped tensor is reported in one <see cref="StateDictMismatchException"/>.
    /// <c>language_model.lm_head.weight</c> is expected; only when the checkpoint lacks it is the head tied to the
    /// embeddings (recorded in <see cref="LoadNotes"/>). The <c>&lt;IMG_CONTEXT&gt;</c> id is taken from
    /// <paramref name="imgContextTokenId"/> or the directory's added_tokens.json / tokenizer.json / tokenizer_config.json.
    /// A directory saved with unmerged LoRA (<c>use_llm_lora</c> / <c>use_backbone_lora</c> = r &gt; 0 in config.json, PEFT key
    /// names, see <see cref="InternVLPeftLayout"/>) is wrapped like the official code does (LoRA rank r, alpha 2r, dropout
    /// 0.05 on the official targets) and loaded with errors naming the stored PEFT keys.
    /// Config fields absent from config.json take the official class defaults (listed in <see cref="LoadNotes"/>) unless
    /// <paramref name="requireAllConfigFields"/>, which makes each an error naming the field.
    /// </summary>
    public static InternVLChatModel FromPretrained(string directory, int? imgContextTokenId = null,
        DTypePolicy dtypes = DTypePolicy.KeepStored, bool requireAllConfigFields = false, bool mapped = true)
    {
        var config = InternVLChatConfig.Load(directory, requireAllConfigFields);
        using var reader = CheckpointReader.Open(directory);
        var notes = new List<string>(config.DefaultedFields);
        // use_llm_lora / use_backbone_lora > 0: unmerged LoRA in the PEFT layout; neither head nor embeddings are adapted,
        // so their stored keys only gain the tower's base_model.model. prefix.
        bool llmLora = config.UseLlmLora > 0, visionLora = config.UseBackboneLora > 0;
        string Stored(string name) => InternVLPeftLayout.ToPeft(name, new HashSet<string>(), llmLora, visionLora);
        string head = Stored("language_model.lm_head.weight"), embed = Stored("language_model.model.embed_tokens.weight");
        bool tie = !reader.Has(head);
        if (tie)
        {
            if (!reader.Has(embed))
                notes.Add($"{head} and {embed} are both missing");
            else
                notes.Add($"{head} is not in {reader.Source}: lm_head is tied to {embed}");
        }
        if (llmLora) notes.Add($"use_llm_lora {config.UseLlmLora}: language_model wrapped with LoRA r={config.UseLlmLora}, alpha={2 * config.UseLlmLora} (PEFT layout, unmerged)");
        if (visionLora) notes.Add($"use_backbone_lora {config.UseBackboneLora}: vision_model wrapped with LoRA r={config.UseBackboneLora}, alpha={2 * config.UseBackboneLora} (PEFT layout, unmerged)");
        if (config.PsVersion == "v1") notes.Add("ps_version v1: image tokens are column-major (as the official code warns)");
        if (config.SelectLayer != -1) notes.Add($"select_layer {config.SelectLayer}: vision features come from {config.VisionLayersUsed} of {config.Vision.NumHiddenLayers} layers");

        if (!mapped) CheckMemoryForCopy(directory, reader);
        var model = new InternVLChatModel(config, config.TorchDType, tieLmHead: tie);
        var arena = mapped ? null : new WeightArena();
        try
        {
            if (llmLora || visionLora)
            {
                // as the official __init__: wrap_backbone_lora / wrap_llm_lora with lora_alpha = 2r, then load over the adapters
                InternVLPeftLayout.Wrap(model, config.UseLlmLora, config.UseBackboneLora);
                model.LoadStateDict(reader, strict: true, dtypes, storedName: InternVLPeftLayout.StoredName(model, llmLora, visionLora), copyInto: arena);
            }
            else
                model.LoadStateDict(reader, strict: true, dtypes, copyInto: arena);
            model.ImgContextTokenId = imgContextTokenId ?? FindAddedTokenId(directory, "<IMG_CONTEXT>");
            if (model.ImgContextTokenId is int id && (id < 0 || id >= config.Llm.VocabSize))
                throw new ModelConfigException($"{directory}: <IMG_CONTEXT> id {id} is outside the vocabulary [0, {config.Llm.VocabSize})");
            if (model.ImgContextTokenId == null) notes.Add("<IMG_CONTEXT> id not found in the tokenizer files; set ImgContextTokenId before passing images");
        }
        catch
        {
            model.Dispose();
            throw;
        }
        model.LoadNotes = notes;
        model.Eval();
        return model;
    }

    /// <summary>Fails with a clear message, before anything is copied, when the weights to copy into memory exceed the
    /// memory Linux reports as available (MemAvailable, which counts reclaimable page cache).</summary>
    static void CheckMemoryForCopy(string directory, ICheckpointReader reader)
    {
        long need = reader.Names.Sum(n => reader.Info(n).ByteLength);
        long? available = MemAvailableBytes();
        if (available is long avail && need > avail)
            throw new ModelConfigException($"{directory}: copying the weights into memory (no mmap) needs {need / 1e9:F1} GB, " +
                $"but only {avail / 1e9:F1} GB are available; load them memory-mapped instead (without --no-mmap / no_mmap)");
    }

    /// <summary>MemAvailable of /proc/meminfo in bytes; null where there is no such file.</summary>
    static long? MemAvailableBytes()
    {
        if (!File.Exists("/proc/meminfo")) return null;
        foreach (var line in File.ReadLines("/proc/meminfo"))
            if (line.StartsWith("MemAvailable:", StringComparison.Ordinal)
                && long.TryParse(line["MemAvailable:".Length..].Trim().Split(' ')[0], out long kb))
                return kb * 1024;
        return null;
    }

    /// <summary>
    /// Id of an added token from the tokenizer files next to a checkpoint: added_tokens.json ({token: id}),
    /// tokenizer.json (added_tokens[].content/id) or tokenizer_config.json (added_tokens_decoder); null when absent.
    /// </summary>
    public static int? FindAddedTokenId(string directory, string token)
    {
        string added = Path.Combine(directory, "added_tokens.json");
        if (File.Exists(added))
        {
            using var d = JsonDocument.Parse(File.ReadAllText(added));
            if (d.RootElement.TryGetProperty(token, out var v) && v.TryGetInt32(out int id)) return id;
        }
        string tok = Path.Combine(directory, "tokenizer.json");
        if (File.Exists(tok))
        {
            using var d = JsonDocument.Parse(File.ReadAllText(tok));
            if (d.RootElement.TryGetProperty("added_tokens", out var list) && list.ValueKind == JsonValueKind.Array)
                foreach (var t in list.EnumerateArray())
                    if (t.TryGetProperty("content", out var c) && c.GetString() == token && t.TryGetProperty("id", out var i)) return i.GetInt32();
        }
        string cfg = Path.Combine(directory, "tokenizer_config.json");
        if (File.Exists(cfg))
        {
            using var d = JsonDocument.Parse(File.ReadAllText(cfg));
            if (d.RootElement.TryGetProperty("added_tokens_decoder", out var dec) && dec.ValueKind == JsonValueKind.Object)
                foreach (var p in dec.EnumerateObject())
                    if (p.Value.TryGetProperty("content", out var c) && c.GetString() == token && int.TryParse(p.Name, out int id)) return id;
        }
        return null;
    }

    // ---------------------------------------------------------------- generation

    /// <summary>A KV cache for this model's LLM holding up to <paramref name="maxLength"/> tokens per row.</summary>
    public KvCache NewCache(int batch, int maxLength) => KvCache.For(Config.Llm, batch, maxLength);

    /// <summary>
    /// Prefill: runs the prompt (with images) through the model, storing keys/values in <paramref name="cache"/>
    /// (which must be empty or hold the preceding tokens), and returns the logits of the last position [B, V].
    /// Runs without autograd. Left-padded batches pass <paramref name="attentionMask"/> (Bool [B, T], true = real token)
    /// and <paramref name="positionIds"/> (I64 [B, T]); see <see cref="Qwen2Model.Forward"/>. Instead of pixel values a
    /// caller may pass the images' <paramref name="visionFeatures"/> ([tiles, n, Hl], what <see cref="ExtractFeature"/>
    /// returned for them) when it has encoded them already.
    /// </summary>
    public Tensor Prefill(Tensor inputIds, Tensor? pixelValues, KvCache cache, Tensor? imageFlags = null,
        Tensor? attentionMask = null, Tensor? positionIds = null, Tensor? visionFeatures = null)
    {
        if (pixelValues != null && visionFeatures != null)
            throw new ArgumentException("InternVLChatModel.Prefill: pass pixel_values or vision features, not both");
        using var _ = GradMode.NoGrad();
        using var scope = TensorScope.Begin();
        using var extracted = pixelValues != null ? ExtractFeature(pixelValues) : null;
        using var embeds = EmbedInputs(inputIds, extracted ?? visionFeatures, imageFlags);
        using var logits = LanguageModel.Forward(embeds, cache, lastOnly: true, _tap, attentionMask, positionIds); // [B, 1, V]
        return scope.Keep(Ops.Reshape(logits, logits.Shape[0], logits.Shape[2]));
    }

    /// <summary>
    /// One decoding step: token ids [B] (or [B, 1]) at position cache.Length -> logits [B, V]; appends to the cache
    /// in place. Intermediates return to the pool at the end of the step. Left-padded batches pass
    /// <paramref name="attentionMask"/> (Bool [B, cache.Length + 1]) and <paramref name="positionIds"/> (I64 [B, 1]).
    /// </summary>
    public Tensor DecodeStep(Tensor tokenIds, KvCache cache, Tensor? attentionMask = null, Tensor? positionIds = null)
    {
        using var _ = GradMode.NoGrad();
        using var scope = TensorScope.Begin();
        int B = tokenIds.Shape[0];
        using var ids = Ops.Reshape(tokenIds, B, 1);
        using var embeds = LanguageModel.Model.EmbedTokens.Forward(ids);          // [B, 1, Hl]
        using var logits = LanguageModel.Forward(embeds, cache, lastOnly: true, _tap, attentionMask, positionIds); // [B, 1, V]
        return scope.Keep(Ops.Reshape(logits, B, logits.Shape[2]));
    }

    /// <summary>
    /// Greedy decoding of one sequence (B = 1): up to <paramref name="maxNewTokens"/> argmax tokens, stopping after
    /// <paramref name="eosTokenId"/>. With <paramref name="useCache"/> one prefill and then one-token steps on a
    /// preallocated <see cref="KvCache"/>; without, the whole sequence is recomputed for every token (reference mode).
    /// Returns only the new tokens.
    /// </summary>
    public long[] GenerateGreedy(Tensor inputIds, Tensor? pixelValues, int maxNewTokens, long? eosTokenId = null,
        bool useCache = true, Tensor? imageFlags = null)
    {
        if (inputIds.Rank != 2 || inputIds.Shape[0] != 1)
            throw new ArgumentException($"GenerateGreedy: input_ids must be [1, T], got {inputIds.Describe()}");
        var output = new List<long>(maxNewTokens);
        if (maxNewTokens <= 0) return [];
        int T = inputIds.Shape[1];
        using var noGrad = GradMode.NoGrad();
        if (useCache)
        {
            using var cache = NewCache(1, T + maxNewTokens);
            var logits = Prefill(inputIds, pixelValues, cache, imageFlags);
            using var step = Tensor.Empty([1], DType.I64);
            while (true)
            {
                long next = ArgMaxLast(logits);
                logits.Dispose();
                output.Add(next);
                if (output.Count == maxNewTokens || next == eosTokenId) break;
                step.SetFlat(0, next);
                logits = DecodeStep(step, cache);
            }
            return output.ToArray();
        }

        using var features = pixelValues != null ? ExtractFeature(pixelValues) : null;
        var ids = inputIds.ToLongArray().ToList();
        while (true)
        {
            using var scope = TensorScope.Begin();
            using var idsT = Tensor.FromArray(ids.ToArray(), 1, ids.Count);
            using var embeds = EmbedInputs(idsT, features, imageFlags);
            using var logits = LanguageModel.Forward(embeds, cache: null, lastOnly: true, _tap);
            long next = ArgMaxLast(logits);
            output.Add(next);
            ids.Add(next);
            if (output.Count == maxNewTokens || next == eosTokenId) break;
        }
        return output.ToArray();
    }

    static long ArgMaxLast(Tensor logits)
    {
        using var am = Ops.ArgMax(logits, -1);
        return am.GetFlatLong(am.NumEl - 1);
    }
}
