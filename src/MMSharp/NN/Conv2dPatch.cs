using MMSharp.Engine;

namespace MMSharp.NN;

/// <summary>
/// nn.Conv2d whose stride equals its kernel (ViT patch embedding) with parameters <c>weight</c>
/// [out, in, k, k] and <c>bias</c> [out].
/// </summary>
/// <remarks>x [B, in, H, W] -> [B, out, H/k, W/k] (<see cref="Ops.Conv2dPatch"/>).</remarks>
public sealed class Conv2dPatch : Module
{
    public readonly Parameter Weight;
    public readonly Parameter? Bias;
    public int KernelSize => Weight.Shape[2];

    public Conv2dPatch(int inChannels, int outChannels, int kernelSize, bool bias = true, DType dtype = DType.F32)
    {
        Weight = RegisterParameter("weight", [outChannels, inChannels, kernelSize, kernelSize], dtype);
        if (bias) Bias = RegisterParameter("bias", [outChannels], dtype);
    }

    public Tensor Forward(Tensor x) => Ops.Conv2dPatch(x, Weight, Bias?.Data);
}
