using MMSharp.Engine;

namespace MMSharp.NN;

/// <summary>
/// RMSNorm (Qwen2RMSNorm / InternRMSNorm) over the last dim with parameter <c>weight</c> [C].
/// </summary>
/// <remarks>
/// y = weight · (x · rsqrt(mean(x²) + eps)), fp32 (<see cref="Ops.RmsNorm"/>). The HF code casts the normalised
/// value to the input dtype before the weight multiply; activations here are fp32, so that cast is the identity.
/// </remarks>
public sealed class RMSNorm : Module, INormLayer
{
    public readonly Parameter Weight;
    public int Dim { get; }
    public float Eps { get; }

    public RMSNorm(int dim, float eps = 1e-6f, DType dtype = DType.F32)
    {
        Dim = dim;
        Eps = eps;
        Weight = RegisterParameter("weight", [dim], dtype);
    }

    public Tensor Forward(Tensor x)
    {
        using var _ = Profiler.Time(ProfileCategory.Norm);
        return Ops.RmsNorm(x, Weight, Eps);
    }

    public override string ToString() => $"RMSNorm({Dim}, eps={Eps})";
}
