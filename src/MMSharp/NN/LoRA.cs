using MMSharp.Engine;
using MMSharp.Engine.Autograd;

namespace MMSharp.NN;

/// <summary>
/// A LoRA adapter (Hu et al. 2021, as PEFT's <c>lora.Linear</c>) for a <see cref="Linear"/> layer W [out, in]:
/// Δy = (alpha / r) · B · A · dropout(x), with A [r, in] and B [out, r].
/// </summary>
/// <remarks>
/// Init as PEFT: A ~ kaiming_uniform(a = √5) = U(−1/√in, 1/√in), B = 0, so a fresh adapter leaves the model unchanged.
/// Parameter names: the base layer keeps <c>….q_proj.weight</c> / <c>.bias</c>; the adapter adds
/// <c>….q_proj.lora_A.weight</c> [r, in] and <c>….q_proj.lora_B.weight</c> [out, r]. PEFT saves the same tensors as
/// <c>base_model.model.….q_proj.lora_A.default.weight</c> and the base as <c>….q_proj.base_layer.weight</c>; we keep the
/// HF names of the base so a merged export needs no renaming, and map to PEFT's names when writing or reading the
/// unmerged layout (<c>MMSharp.Models.InternVL.InternVLPeftLayout</c>).
/// </remarks>
public sealed class LoraAdapter : IDisposable
{
    public readonly Linear A, B;
    public int Rank { get; }
    public float Alpha { get; }
    /// <summary>Dropout on the adapter's input in training (settable: a run continuing loaded adapters may choose its own).</summary>
    public float DropoutP
    {
        get;
        set => field = value is >= 0 and < 1 ? value : throw new ArgumentOutOfRangeException(nameof(DropoutP), "LoRA dropout must be in [0, 1)");
    }
    public float Scaling => Alpha / Rank;
    public int InFeatures => A.InFeatures;
    public int OutFeatures => B.OutFeatures;

    public LoraAdapter(int inFeatures, int outFeatures, int rank, float alpha, float dropout, ulong seed)
    {
        if (rank < 1) throw new ArgumentOutOfRangeException(nameof(rank), "LoRA rank must be at least 1");
        if (dropout < 0 || dropout >= 1) throw new ArgumentOutOfRangeException(nameof(dropout), "LoRA dropout must be in [0, 1)");
        Rank = rank;
        Alpha = alpha;
        DropoutP = dropout;
        float bound = 1f / MathF.Sqrt(inFeatures);
        using var a = Tensor.RandUniform([rank, inFeatures], seed, -bound, bound);
        using var b = Tensor.Zeros([outFeatures, rank]);
        A = new Linear(new Parameter(a));
        B = new Linear(new Parameter(b));
    }

    /// <summary>(alpha/r) · (dropout(x) Aᵀ) Bᵀ, x [..., in] -> [..., out].</summary>
    public Tensor Forward(Tensor x)
    {
        using var xd = Ops.Dropout(x, DropoutP, A.Training);
        using var h = A.Forward(xd);                                              // [..., r]
        using var d = B.Forward(h);                                               // [..., out]
        return Ops.Mul(d, Scaling);
    }

    /// <summary>The dense update (alpha/r) · B · A [out, in] in F32.</summary>
    public Tensor DeltaWeight()
    {
        using var _ = GradMode.NoGrad();
        using var a = Ops.Contiguous(A.Weight, DType.F32);
        using var b = Ops.Contiguous(B.Weight, DType.F32);
        using var ba = Ops.MatMul(b, a);
        return Ops.Mul(ba, Scaling);
    }

    public void Dispose()
    {
        A.Dispose();
        B.Dispose();
    }
}

/// <summary>Applying and merging LoRA adapters over a model's <see cref="Linear"/> layers.</summary>
public static class LoraLinear
{
    /// <summary>PEFT targets of the official InternVL <c>wrap_llm_lora</c> for Qwen2/Llama LLMs.</summary>
    public static readonly string[] LlmTargets =
        ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj", "mlp.up_proj"];

    /// <summary>PEFT targets of the official <c>wrap_backbone_lora</c> (InternViT).</summary>
    public static readonly string[] VisionTargets = ["attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"];

    /// <summary>
    /// Attaches an adapter to every <see cref="Linear"/> under <paramref name="prefix"/> whose module path ends with one of
    /// <paramref name="targets"/> (PEFT's suffix match), and freezes the base weights and biases of those layers.
    /// Adapters get seeds derived from <paramref name="seed"/> and their module order (deterministic).
    /// Returns the names of the adapted layers; throws when nothing matches.
    /// </summary>
    public static List<string> Apply(Module model, string prefix, IReadOnlyList<string> targets, int rank, float alpha,
        float dropout, ulong seed = 0)
    {
        var adapted = new List<string>();
        ulong k = 0;
        foreach (var (name, m) in model.NamedModules().ToList())
        {
            k++;
            if (m is not Linear lin || lin.Lora != null) continue;
            if (prefix.Length > 0 && !name.StartsWith(prefix + ".", StringComparison.Ordinal)) continue;
            if (!targets.Any(t => name == t || name.EndsWith("." + t, StringComparison.Ordinal))) continue;
            lin.Weight.RequiresGrad = false;
            if (lin.Bias != null) lin.Bias.RequiresGrad = false;
            lin.AttachLora(new LoraAdapter(lin.InFeatures, lin.OutFeatures, rank, alpha, dropout, seed * 0x9E3779B97F4A7C15UL + k));
            adapted.Add(name);
        }
        if (adapted.Count == 0)
            throw new ArgumentException($"LoRA: no Linear under '{prefix}' matches any of [{string.Join(", ", targets)}]");
        return adapted;
    }

    /// <summary>
    /// Folds every adapter into its base weight (W ← W + (alpha/r)·B·A, computed in F32; the weight becomes F32) and
    /// removes it, so the model has exactly the HF parameter names again. Returns the number of layers merged.
    /// </summary>
    public static int Merge(Module model)
    {
        int n = 0;
        using var _ = GradMode.NoGrad();
        foreach (var (_, m) in model.NamedModules().ToList())
        {
            if (m is not Linear { Lora: { } lora } lin) continue;
            using var delta = lora.DeltaWeight();
            using var w = Ops.Contiguous(lin.Weight, DType.F32);
            using var merged = Ops.Add(w, delta);
            bool trainable = lin.Weight.RequiresGrad;
            lin.Weight.Set(merged);
            lin.Weight.RequiresGrad = trainable;
            lin.DetachLora();
            n++;
        }
        return n;
    }

    /// <summary>Whether any layer of <paramref name="model"/> carries an adapter.</summary>
    public static bool HasAdapters(Module model) => model.NamedModules().Any(x => x.Module is Linear { Lora: not null });
}
