using MMSharp.Engine;
using MMSharp.NN;

namespace MMSharp.Models.InternVL;

// Qwen2 / Qwen2.5 decoder (transformers modeling_qwen2.py). Shapes: B batch, T new tokens, P cached tokens,
// C hidden, nH query heads, nKV key/value heads, hd head dim.

/// <summary>
/// cos/sin tables of rotary embedding (rotate_half layout) for position ids, with the base given by
/// <see cref="Qwen2Config.RopeBase"/> (plain rope_theta, or dynamic NTK beyond max_position_embeddings).
/// Computed once per forward and shared by all layers.
/// </summary>
public static class Qwen2Rotary
{
    /// <summary>Position ids start, start + 1, … for <paramref name="T"/> tokens (I64 [T]).</summary>
    public static Tensor Positions(int start, int T)
    {
        var ids = Tensor.Empty([T], DType.I64);
        for (int i = 0; i < T; i++) ids.SetFlat(i, start + i);
        return ids;
    }

    /// <summary>Tables [T, hd] (or [B, T, hd] for position ids [B, T]) for the largest position in <paramref name="positionIds"/>.</summary>
    public static (Tensor Cos, Tensor Sin) Tables(Qwen2Config c, Tensor positionIds, long maxPosition) =>
        Ops.RotaryTables(positionIds, c.HeadDim, c.RopeBase(maxPosition));
}

/// <summary>
/// <c>self_attn</c>: q_proj [nH·hd, C] + bias, k_proj / v_proj [nKV·hd, C] + bias, o_proj [C, nH·hd] without bias.
/// Causal GQA attention (query head h reads kv head h / (nH/nKV)), scale hd^−½, RoPE on q and k.
/// </summary>
public sealed class Qwen2Attention : Module
{
    readonly Qwen2Config _c;
    public readonly Linear QProj, KProj, VProj, OProj;

    public Qwen2Attention(Qwen2Config c, DType dtype)
    {
        _c = c;
        int hd = c.HeadDim;
        QProj = RegisterModule("q_proj", new Linear(c.HiddenSize, c.NumAttentionHeads * hd, bias: true, dtype));
        KProj = RegisterModule("k_proj", new Linear(c.HiddenSize, c.NumKeyValueHeads * hd, bias: true, dtype));
        VProj = RegisterModule("v_proj", new Linear(c.HiddenSize, c.NumKeyValueHeads * hd, bias: true, dtype));
        OProj = RegisterModule("o_proj", new Linear(c.NumAttentionHeads * hd, c.HiddenSize, bias: false, dtype));
    }

    /// <summary>
    /// x [B, T, C] -> [B, T, C]. With a cache, the new keys/values are stored at the cache's current length and
    /// attention runs over all P + T cached positions (causal diagonal aligned to the end).
    /// <paramref name="keyValid"/> (Bool [B, P + T], the HF attention_mask) hides padding keys of left-padded batches.
    /// <paramref name="segmentIds"/> (I64 [B, T], no cache) keeps attention inside each packed sample (block-diagonal causal,
    /// as the official packed training's <c>flash_attn_varlen_func</c> with <c>cu_seqlens</c>).
    /// </summary>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, KvCache? cache, int layer, Tensor? keyValid = null, Tensor? segmentIds = null)
    {
        int B = x.Shape[0], T = x.Shape[1], hd = _c.HeadDim, nH = _c.NumAttentionHeads, nKV = _c.NumKeyValueHeads;
        // a decode step (one row) reads the three weights in one parallel pass; otherwise three GEMMs
        using var qkv = Linear.ForwardFused(x, QProj, KProj, VProj);               // [B, T, (nH + 2 nKV)·hd] or null
        using var qFlat = qkv != null ? Ops.Narrow(qkv, 2, 0, nH * hd) : QProj.Forward(x);
        using var kFlat = qkv != null ? Ops.Narrow(qkv, 2, nH * hd, nKV * hd) : KProj.Forward(x);
        using var vFlat = qkv != null ? Ops.Narrow(qkv, 2, (nH + nKV) * hd, nKV * hd) : VProj.Forward(x);
        using var q = SplitHeads(qFlat, B, T, nH, hd);                            // [B, nH, T, hd]
        using var k = SplitHeads(kFlat, B, T, nKV, hd);                           // [B, nKV, T, hd]
        using var v = SplitHeads(vFlat, B, T, nKV, hd);                           // [B, nKV, T, hd]
        Tensor qRot, kRot;
        using (Profiler.Time(ProfileCategory.Rope))
        {
            qRot = Ops.ApplyRotary(q, cos, sin);
            kRot = Ops.ApplyRotary(k, cos, sin);
        }
        using var qRotOwned = qRot;
        using var kRotOwned = kRot;

        Tensor o;
        if (cache == null)
            using (Profiler.Time(ProfileCategory.Attention))
                o = Ops.ScaledDotProductAttention(qRot, kRot, v, causal: true, keyValid: keyValid, segmentIds: segmentIds);
        else
        {
            Tensor kAll, vAll;
            using (Profiler.Time(ProfileCategory.KvCache))
                (kAll, vAll) = cache.Append(layer, kRot, v);                      // [B, nKV, P + T, hd]
            using (kAll)
            using (vAll)
            using (Profiler.Time(ProfileCategory.Attention))
                o = Ops.ScaledDotProductAttention(qRot, kAll, vAll, causal: true, keyValid: keyValid);
        }
        using (o)                                                                 // [B, nH, T, hd]
        using (var oTokens = Ops.Transpose(o, 1, 2))                              // [B, T, nH, hd]
        using (var merged = Ops.Reshape(oTokens, B, T, nH * hd))
            return OProj.Forward(merged);
    }

    static Tensor SplitHeads(Tensor flat, int B, int T, int heads, int hd)
    {
        using var split = Ops.Reshape(flat, B, T, heads, hd);                     // flat [B, T, heads·hd]
        return Ops.Transpose(split, 1, 2);                                        // [B, heads, T, hd]
    }
}

/// <summary><c>mlp</c>: down_proj(silu(gate_proj(x)) · up_proj(x)), no biases.</summary>
public sealed class Qwen2MLP : Module
{
    public readonly Linear GateProj, UpProj, DownProj;

    public Qwen2MLP(Qwen2Config c, DType dtype)
    {
        GateProj = RegisterModule("gate_proj", new Linear(c.HiddenSize, c.IntermediateSize, bias: false, dtype));
        UpProj = RegisterModule("up_proj", new Linear(c.HiddenSize, c.IntermediateSize, bias: false, dtype));
        DownProj = RegisterModule("down_proj", new Linear(c.IntermediateSize, c.HiddenSize, bias: false, dtype));
    }

    public Tensor Forward(Tensor x)
    {
        // a decode step (one row) reads both weights in one parallel pass; otherwise two GEMMs
        using var gateUp = Linear.ForwardFused(x, GateProj, UpProj);              // [B, T, 2·I] or null
        int inter = GateProj.OutFeatures;
        using var gate = gateUp != null ? Ops.Narrow(gateUp, gateUp.Rank - 1, 0, inter) : GateProj.Forward(x);
        using var up = gateUp != null ? Ops.Narrow(gateUp, gateUp.Rank - 1, inter, inter) : UpProj.Forward(x);
        using var act = Ops.SiluMul(gate, up);
        return DownProj.Forward(act);
    }
}

/// <summary>
/// <c>layers.{i}</c>: x = x + self_attn(input_layernorm(x)); x = x + mlp(post_attention_layernorm(x)).
/// </summary>
public sealed class Qwen2DecoderLayer : Module
{
    public readonly Qwen2Attention SelfAttn;
    public readonly Qwen2MLP Mlp;
    public readonly RMSNorm InputLayernorm, PostAttentionLayernorm;

    public Qwen2DecoderLayer(Qwen2Config c, DType dtype)
    {
        SelfAttn = RegisterModule("self_attn", new Qwen2Attention(c, dtype));
        Mlp = RegisterModule("mlp", new Qwen2MLP(c, dtype));
        InputLayernorm = RegisterModule("input_layernorm", new RMSNorm(c.HiddenSize, (float)c.RmsNormEps, dtype));
        PostAttentionLayernorm = RegisterModule("post_attention_layernorm", new RMSNorm(c.HiddenSize, (float)c.RmsNormEps, dtype));
    }

    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, KvCache? cache, int layer, ActivationTap? tap = null, Tensor? keyValid = null,
        Tensor? segmentIds = null)
    {
        Tensor h;
        using (var n1 = InputLayernorm.Forward(x))
        using (var attn = SelfAttn.Forward(n1, cos, sin, cache, layer, keyValid, segmentIds))
        {
            tap?.Invoke($"llm.layers.{layer}.attn_out", attn);
            h = Ops.Add(x, attn);
        }
        using (h)
        using (var n2 = PostAttentionLayernorm.Forward(h))
        using (var mlp = Mlp.Forward(n2))
        {
            tap?.Invoke($"llm.layers.{layer}.mlp_out", mlp);
            var y = Ops.Add(h, mlp);
            tap?.Invoke($"llm.layers.{layer}", y);
            return y;
        }
    }
}

/// <summary><c>model</c>: <c>embed_tokens</c> [V, C], <c>layers</c>, final <c>norm</c>.</summary>
public sealed class Qwen2Model : Module
{
    public Qwen2Config Config { get; }
    public readonly Embedding EmbedTokens;
    public readonly ModuleList<Qwen2DecoderLayer> Layers;
    public readonly RMSNorm Norm;

    public Qwen2Model(Qwen2Config c, DType dtype)
    {
        Config = c;
        EmbedTokens = RegisterModule("embed_tokens", new Embedding(c.VocabSize, c.HiddenSize, dtype));
        Layers = RegisterModule("layers", new ModuleList<Qwen2DecoderLayer>());
        for (int i = 0; i < c.NumHiddenLayers; i++) Layers.Add(new Qwen2DecoderLayer(c, dtype));
        Norm = RegisterModule("norm", new RMSNorm(c.HiddenSize, (float)c.RmsNormEps, dtype));
    }

    /// <summary>Gradient checkpointing per decoder layer in training mode (without a KV cache).</summary>
    public bool Recompute { get; set; }

    /// <summary>
    /// inputs_embeds [B, T, C] -> final-normed hidden states [B, T, C]. Positions are P, …, P + T − 1 with P the
    /// cache length (0 without a cache); the cache is advanced by T.
    /// For left-padded batches pass <paramref name="attentionMask"/> (Bool [B, P + T]: true for real tokens, over the
    /// cached and the new positions, as HF's attention_mask) and <paramref name="positionIds"/> (I64 [B, T]; HF derives
    /// them as cumsum(attention_mask) − 1 so every row's real tokens start at 0). The dynamic-NTK base then follows
    /// the largest position id given.
    /// Packed training rows pass <paramref name="segmentIds"/> (I64 [B, T], one id per sample, no cache) with
    /// <paramref name="positionIds"/> restarting at 0 in every sample: attention stays inside each sample.
    /// </summary>
    public Tensor Forward(Tensor inputsEmbeds, KvCache? cache = null, ActivationTap? tap = null,
        Tensor? attentionMask = null, Tensor? positionIds = null, Tensor? segmentIds = null)
    {
        if (inputsEmbeds.Rank != 3 || inputsEmbeds.Shape[2] != Config.HiddenSize)
            throw new ArgumentException($"Qwen2Model: inputs_embeds must be [B, T, {Config.HiddenSize}], got {inputsEmbeds.Describe()}");
        int B = inputsEmbeds.Shape[0], T = inputsEmbeds.Shape[1];
        int start = cache?.Length ?? 0;
        cache?.EnsureRoom(B, T);
        if (attentionMask != null && (attentionMask.Rank != 2 || attentionMask.Shape[0] != B || attentionMask.Shape[1] != start + T))
            throw new ArgumentException($"Qwen2Model: attention_mask must be [B={B}, {start + T}] (cached + new tokens), got {attentionMask.Describe()}");
        if (positionIds != null && (positionIds.Rank != 2 || positionIds.Shape[0] != B || positionIds.Shape[1] != T))
            throw new ArgumentException($"Qwen2Model: position_ids must be [B={B}, T={T}], got {positionIds.Describe()}");
        if (segmentIds != null && (cache != null || segmentIds.Rank != 2 || segmentIds.Shape[0] != B || segmentIds.Shape[1] != T))
            throw new ArgumentException($"Qwen2Model: segment ids must be [B={B}, T={T}] and need no cache, got {segmentIds.Describe()}{(cache != null ? " with a cache" : "")}");
        using var positions = positionIds == null ? Qwen2Rotary.Positions(start, T) : null;
        long maxPosition = start + T - 1;
        if (positionIds != null)
        {
            maxPosition = 0;
            for (long i = 0; i < positionIds.NumEl; i++) maxPosition = Math.Max(maxPosition, positionIds.GetFlatLong(i));
        }
        var (cos, sin) = Qwen2Rotary.Tables(Config, positionIds ?? positions!, maxPosition); // [T, hd] or [B, T, hd]
        using (cos)
        using (sin)
        {
            Tensor h = inputsEmbeds;                                              // not owned; layer outputs are
            bool owned = false;
            try
            {
                for (int i = 0; i < Layers.Count; i++)
                {
                    var layer = Layers[i];
                    int li = i;
                    // cos/sin are checkpoint inputs (saved), not captured: they are disposed before backward runs
                    var next = Recompute && Training && cache == null && attentionMask == null
                        ? segmentIds == null
                            ? MMSharp.Engine.Autograd.Checkpoint.Run(t => layer.Forward(t[0], t[1], t[2], null, li), h, cos, sin)
                            : MMSharp.Engine.Autograd.Checkpoint.Run(t => layer.Forward(t[0], t[1], t[2], null, li, segmentIds: t[3]), h, cos, sin, segmentIds)
                        : layer.Forward(h, cos, sin, cache, i, tap, attentionMask, segmentIds);
                    if (owned) h.Dispose();
                    (h, owned) = (next, true);
                }
                cache?.Advance(T);
                var y = Norm.Forward(h);
                tap?.Invoke("llm.norm", y);
                return y;
            }
            finally { if (owned) h.Dispose(); }
        }
    }
}

/// <summary>
/// <c>language_model</c>: <c>model</c> (<see cref="Qwen2Model"/>) and <c>lm_head</c> [V, C] without bias.
/// InternVL checkpoints store an untied head; a tied head (constructor flag) shares
/// <c>model.embed_tokens.weight</c> (registered under both names).
/// </summary>
public sealed class Qwen2ForCausalLM : Module
{
    public Qwen2Config Config { get; }
    public readonly Qwen2Model Model;
    public readonly Linear LmHead;
    public bool TiedLmHead { get; }

    public Qwen2ForCausalLM(Qwen2Config c, DType dtype, bool tieLmHead = false)
    {
        Config = c;
        Model = RegisterModule("model", new Qwen2Model(c, dtype));
        TiedLmHead = tieLmHead;
        LmHead = RegisterModule("lm_head", tieLmHead
            ? new Linear(Model.EmbedTokens.Weight)
            : new Linear(c.HiddenSize, c.VocabSize, bias: false, dtype));
    }

    /// <summary>
    /// Whether a decode step of one sequence (one token, a cache, no tap, mask or position ids) runs as one parallel
    /// region (<see cref="Qwen2TeamDecode"/>, bit-identical logits) instead of op by op. Tests and benchmarks switch it
    /// off to compare.
    /// </summary>
    public static bool TeamDecode { get; set; } = true;

    Qwen2TeamDecode? _team;
    readonly object _teamGate = new();

    public override void Dispose()
    {
        lock (_teamGate)
        {
            _team?.Dispose();
            _team = null;
        }
        base.Dispose();
    }

    /// <summary>
    /// inputs_embeds [B, T, C] -> logits [B, T, V], or [B, 1, V] for the last position only when
    /// <paramref name="lastOnly"/> (prefill and decoding need no more, and the head is the largest matmul).
    /// </summary>
    public Tensor Forward(Tensor inputsEmbeds, KvCache? cache = null, bool lastOnly = false, ActivationTap? tap = null,
        Tensor? attentionMask = null, Tensor? positionIds = null, Tensor? segmentIds = null)
    {
        if (TeamDecode && tap == null && attentionMask == null && positionIds == null && segmentIds == null
            && Qwen2TeamDecode.Applies(this, inputsEmbeds, cache))
        {
            int members = Math.Max(1, MMSharp.Engine.Kernels.Par.Threads);
            lock (_teamGate)                                                    // the step's buffers are per model
            {
                if (_team == null || _team.Members != members)
                {
                    _team?.Dispose();
                    _team = new Qwen2TeamDecode(this, members);
                }
                return _team.Step(inputsEmbeds, cache!);
            }
        }
        using var h = Model.Forward(inputsEmbeds, cache, tap, attentionMask, positionIds, segmentIds);
        using var _ = Profiler.Time(ProfileCategory.LmHead);
        if (!lastOnly) return LmHead.Forward(h);
        using var last = Ops.Narrow(h, 1, h.Shape[1] - 1, 1);                    // [B, 1, C]
        return LmHead.Forward(last);
    }
}
