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

    public Tensor Forward(Tensor x)
    {
        using var _ = Profiler.Time(ProfileCategory.Linear);
        return Ops.Linear(x, Weight, Bias?.Data);
    }

    public override string ToString() => $"Linear({InFeatures} -> {OutFeatures}, bias={Bias != null}, {Weight.DType})";
}
