using MMSharp.Engine;

namespace MMSharp.NN;

/// <summary>A normalisation layer over the last dim (lets a block hold either LayerNorm or RMSNorm).</summary>
public interface INormLayer
{
    Tensor Forward(Tensor x);
}

/// <summary>
/// nn.LayerNorm over the last dim with parameters <c>weight</c> [C] and <c>bias</c> [C] (when affine).
/// </summary>
/// <remarks>y = (x − mean) / sqrt(var + eps) · weight + bias, biased variance, fp32 (<see cref="Ops.LayerNorm"/>).</remarks>
public sealed class LayerNorm : Module, INormLayer
{
    public readonly Parameter? Weight;
    public readonly Parameter? Bias;
    public int Dim { get; }
    public float Eps { get; }

    public LayerNorm(int dim, float eps = 1e-5f, bool elementwiseAffine = true, bool bias = true, DType dtype = DType.F32)
    {
        Dim = dim;
        Eps = eps;
        if (elementwiseAffine)
        {
            Weight = RegisterParameter("weight", [dim], dtype);
            if (bias) Bias = RegisterParameter("bias", [dim], dtype);
        }
    }

    public Tensor Forward(Tensor x) => Ops.LayerNorm(x, Weight?.Data, Bias?.Data, Eps);

    public override string ToString() => $"LayerNorm({Dim}, eps={Eps})";
}
