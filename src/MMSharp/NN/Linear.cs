using MMSharp.Engine;

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
