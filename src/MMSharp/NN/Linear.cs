using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.Engine.Kernels;

namespace MMSharp.NN;

/// <summary>
/// Fully connected layer with the PyTorch/HF parameter layout: <c>weight</c> [out, in] (F32 or BF16, used as
/// stored) and optional <c>bias</c> [out].
/// </summary>
/// <remarks>y = x Wᵀ + b over the last dim (<see cref="Ops.Linear"/>).</remarks>
public sealed class Linear : Module
{
    public readonly Parameter Weight;
    public readonly Parameter? Bias;
    public int InFeatures => Weight.Shape[1];
    public int OutFeatures => Weight.Shape[0];

    /// <summary>A layer with declared (not yet loaded) parameters of <paramref name="dtype"/>.</summary>
    public Linear(int inFeatures, int outFeatures, bool bias = true, DType dtype = DType.F32)
    {
        Weight = RegisterParameter("weight", [outFeatures, inFeatures], dtype);
        if (bias) Bias = RegisterParameter("bias", [outFeatures], dtype);
    }

    /// <summary>
    /// A layer over existing parameters: registering a parameter owned by another module ties the two
    /// (e.g. an LM head sharing the token embedding matrix).
    /// </summary>
    public Linear(Parameter weight, Parameter? bias = null)
    {
        if (weight.Shape.Length != 2) throw new ArgumentException($"Linear: weight must be [out, in], got {weight}");
        Weight = RegisterParameter("weight", weight);
        if (bias != null) Bias = RegisterParameter("bias", bias);
    }

    /// <summary>The low-rank adapter added to this layer's output (see <see cref="LoraLinear"/>), or null.</summary>
    public LoraAdapter? Lora { get; private set; }

    /// <summary>y = x Wᵀ + b, plus the adapter's (alpha/r)·B·A·dropout(x) when one is attached.</summary>
    public Tensor Forward(Tensor x)
    {
        Tensor y;
        using (Profiler.Time(ProfileCategory.Linear)) y = Ops.Linear(x, Weight, Bias?.Data);
        if (Lora == null) return y;
        using (y)
        using (var delta = Lora.Forward(x))
            return Ops.Add(y, delta);
    }

    /// <summary>Whether <see cref="ForwardFused"/> may run (tests and benchmarks switch it off to compare with the separate calls).</summary>
    public static bool FusedInference { get; set; } = true;

    /// <summary>
    /// Inference only: [y_1 | y_2 | …] = x W_iᵀ + b_i for several layers reading the same single row x (a decode step's
    /// q/k/v or gate/up projections), concatenated along the last dim, in one parallel pass over the weights as stored
    /// (<see cref="GemvMulti"/>; bit-identical to separate <see cref="Forward"/> calls). Returns null, computing nothing,
    /// when that does not apply: more than one row, autograd needed, a LoRA adapter, differing input sizes or weight
    /// dtypes, a weight other than F32/BF16 with unit stride along its input dim, or no AVX-512.
    /// </summary>
    public static unsafe Tensor? ForwardFused(Tensor x, params ReadOnlySpan<Linear> layers)
    {
        const int MaxLayers = 8;
        if (!FusedInference || layers.Length == 0 || layers.Length > MaxLayers) return null;
        int k = layers[0].InFeatures;
        var dt = layers[0].Weight.DType;
        if (x.Rank < 1 || x.Shape[^1] != k || x.NumEl != k || k < 16 || Gemm.ActivePath != Gemm.Path.Avx512) return null;
        if (dt != DType.F32 && dt != DType.BF16) return null;
        bool grad = GradMode.Enabled && x.RequiresGrad;
        int outs = 0;
        foreach (var l in layers)
        {
            if (l.Lora != null || l.InFeatures != k || l.Weight.DType != dt || !l.Weight.IsMaterialized) return null;
            var w = l.Weight.Data;
            if (w.Strides[1] != 1 && w.Shape[1] > 1) return null;
            grad |= GradMode.Enabled && (w.RequiresGrad || (l.Bias?.Data.RequiresGrad ?? false));
            outs += l.OutFeatures;
        }
        if (grad) return null;

        using var _ = Profiler.Time(ProfileCategory.Linear);
        var y = Tensor.Empty([.. x.Shape[..^1], outs]);
        using var xc = Ops.Contiguous(x, DType.F32);
        var segs = stackalloc GemvSegment[MaxLayers];
        float* yp = y.F32Ptr;
        for (int i = 0, at = 0; i < layers.Length; i++)
        {
            var l = layers[i];
            var w = l.Weight.Data;
            segs[i] = new GemvSegment { W = w.DataPtr, Ldw = w.Strides[0], Rows = l.OutFeatures, Out = yp + at };
            if (l.Bias != null)
            {
                // as Ops.Linear: the bias (in fp32) is put into y first and the products are added to it
                var b = l.Bias.Data;
                MMSharp.Engine.Kernels.Convert.Row(b.DataPtr, b.DType, b.Strides[0], (byte*)(yp + at), DType.F32, 1, l.OutFeatures);
                segs[i].Bias = yp + at;
            }
            at += l.OutFeatures;
        }
        if (dt == DType.BF16) GemvMulti.Run<BF16Elem>(k, xc.F32Ptr, segs, layers.Length);
        else GemvMulti.Run<F32Elem>(k, xc.F32Ptr, segs, layers.Length);
        return y;
    }

    /// <summary>
    /// Attaches a LoRA adapter as children <c>lora_A</c> / <c>lora_B</c>; the base <c>weight</c>/<c>bias</c> keep their names.
    /// </summary>
    internal LoraAdapter AttachLora(LoraAdapter adapter)
    {
        if (Lora != null) throw new InvalidOperationException($"{this}: already has a LoRA adapter");
        if (adapter.InFeatures != InFeatures || adapter.OutFeatures != OutFeatures)
            throw new ArgumentException($"{this}: adapter is {adapter.InFeatures} -> {adapter.OutFeatures}");
        RegisterModule("lora_A", adapter.A);
        RegisterModule("lora_B", adapter.B);
        return Lora = adapter;
    }

    /// <summary>Removes the adapter (after <see cref="LoraLinear.Merge"/> folded it into <see cref="Weight"/>).</summary>
    internal void DetachLora()
    {
        if (Lora == null) return;
        RemoveModule("lora_A");
        RemoveModule("lora_B");
        Lora.Dispose();
        Lora = null;
    }

    public override string ToString() => $"Linear({InFeatures} -> {OutFeatures}, bias={Bias != null}, {Weight.DType})";
}
