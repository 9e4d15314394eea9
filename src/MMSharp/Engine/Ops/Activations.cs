using System.Runtime.Intrinsics;
using MMSharp.Engine.Kernels;
using V256 = System.Runtime.Intrinsics.Vector256<float>;
using V512 = System.Runtime.Intrinsics.Vector512<float>;

namespace MMSharp.Engine;

/// <summary>
/// Activation functions: GELU (exact erf form and tanh approximation), SiLU, the fused SiLU-gate of
/// the Qwen2 MLP, and ReLU. Backward kernels recompute from the saved input (one fused pass).
/// </summary>
public static partial class Ops
{
    const float InvSqrt2 = 0.70710678118654752f;
    const float InvSqrt2Pi = 0.39894228040143268f;
    const float Sqrt2OverPi = 0.79788456080286536f;
    const float GeluC = 0.044715f;

    /// <summary>x·Φ(x) = 0.5·x·(1 + erf(x/√2)).</summary>
    struct GeluOp : IUnaryOp
    {
        public float Invoke(float x) => 0.5f * x * (1f + VMath.Erf(x * InvSqrt2));
        public V256 Invoke(V256 x) => Vector256.Create(0.5f) * x * (V256.One + VMath.Erf(x * Vector256.Create(InvSqrt2)));
        public V512 Invoke(V512 x) => Vector512.Create(0.5f) * x * (V512.One + VMath.Erf(x * Vector512.Create(InvSqrt2)));
    }

    /// <summary>g·(Φ(x) + x·φ(x)).</summary>
    struct GeluGradOp : IBinaryOp
    {
        public float Invoke(float g, float x)
        {
            float cdf = 0.5f * (1f + VMath.Erf(x * InvSqrt2));
            float pdf = InvSqrt2Pi * MathF.Exp(-0.5f * x * x);
            return g * (cdf + x * pdf);
        }

        public V256 Invoke(V256 g, V256 x)
        {
            var cdf = Vector256.Create(0.5f) * (V256.One + VMath.Erf(x * Vector256.Create(InvSqrt2)));
            var pdf = Vector256.Create(InvSqrt2Pi) * Vector256.Exp(Vector256.Create(-0.5f) * x * x);
            return g * (cdf + x * pdf);
        }

        public V512 Invoke(V512 g, V512 x)
        {
            var cdf = Vector512.Create(0.5f) * (V512.One + VMath.Erf(x * Vector512.Create(InvSqrt2)));
            var pdf = Vector512.Create(InvSqrt2Pi) * Vector512.Exp(Vector512.Create(-0.5f) * x * x);
            return g * (cdf + x * pdf);
        }
    }

    /// <summary>0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).</summary>
    struct GeluTanhOp : IUnaryOp
    {
        public float Invoke(float x) => 0.5f * x * (1f + VMath.Tanh(Sqrt2OverPi * (x + GeluC * x * x * x)));
        public V256 Invoke(V256 x) => Vector256.Create(0.5f) * x * (V256.One + VMath.Tanh(Vector256.Create(Sqrt2OverPi) * (x + Vector256.Create(GeluC) * x * x * x)));
        public V512 Invoke(V512 x) => Vector512.Create(0.5f) * x * (V512.One + VMath.Tanh(Vector512.Create(Sqrt2OverPi) * (x + Vector512.Create(GeluC) * x * x * x)));
    }

    /// <summary>g·(0.5·(1 + t) + 0.5·x·(1 - t²)·√(2/π)·(1 + 3·0.044715·x²)), t = tanh(u).</summary>
    struct GeluTanhGradOp : IBinaryOp
    {
        public float Invoke(float g, float x)
        {
            float t = VMath.Tanh(Sqrt2OverPi * (x + GeluC * x * x * x));
            float du = Sqrt2OverPi * (1f + 3f * GeluC * x * x);
            return g * (0.5f * (1f + t) + 0.5f * x * (1f - t * t) * du);
        }

        public V256 Invoke(V256 g, V256 x)
        {
            var half = Vector256.Create(0.5f);
            var t = VMath.Tanh(Vector256.Create(Sqrt2OverPi) * (x + Vector256.Create(GeluC) * x * x * x));
            var du = Vector256.Create(Sqrt2OverPi) * (V256.One + Vector256.Create(3f * GeluC) * x * x);
            return g * (half * (V256.One + t) + half * x * (V256.One - t * t) * du);
        }

        public V512 Invoke(V512 g, V512 x)
        {
            var half = Vector512.Create(0.5f);
            var t = VMath.Tanh(Vector512.Create(Sqrt2OverPi) * (x + Vector512.Create(GeluC) * x * x * x));
            var du = Vector512.Create(Sqrt2OverPi) * (V512.One + Vector512.Create(3f * GeluC) * x * x);
            return g * (half * (V512.One + t) + half * x * (V512.One - t * t) * du);
        }
    }

    /// <summary>x·σ(x).</summary>
    struct SiluOp : IUnaryOp
    {
        public float Invoke(float x) => x * VMath.Sigmoid(x);
        public V256 Invoke(V256 x) => x * VMath.Sigmoid(x);
        public V512 Invoke(V512 x) => x * VMath.Sigmoid(x);
    }

    /// <summary>g·σ(x)·(1 + x·(1 - σ(x))).</summary>
    struct SiluGradOp : IBinaryOp
    {
        public float Invoke(float g, float x)
        {
            float s = VMath.Sigmoid(x);
            return g * s * (1f + x * (1f - s));
        }

        public V256 Invoke(V256 g, V256 x)
        {
            var s = VMath.Sigmoid(x);
            return g * s * (V256.One + x * (V256.One - s));
        }

        public V512 Invoke(V512 g, V512 x)
        {
            var s = VMath.Sigmoid(x);
            return g * s * (V512.One + x * (V512.One - s));
        }
    }

    /// <summary>silu(a)·b — the gated MLP product.</summary>
    internal struct SiluMulOp : IBinaryOp
    {
        public float Invoke(float a, float b) => a * VMath.Sigmoid(a) * b;
        public V256 Invoke(V256 a, V256 b) => a * VMath.Sigmoid(a) * b;
        public V512 Invoke(V512 a, V512 b) => a * VMath.Sigmoid(a) * b;
    }

    /// <summary>max(x, 0); NaN stays NaN.</summary>
    struct ReluOp : IUnaryOp
    {
        public float Invoke(float x) => x > 0 || float.IsNaN(x) ? x : 0f;
        // compare-and-select rather than the IEEE Max helper: as NaN-safe (NaN < 0 is false) and cheaper
        public V256 Invoke(V256 x) => Vector256.ConditionalSelect(Vector256.LessThan(x, V256.Zero), V256.Zero, x);
        public V512 Invoke(V512 x) => Vector512.ConditionalSelect(Vector512.LessThan(x, V512.Zero), V512.Zero, x);
    }

    /// <summary>g where x &gt; 0, else 0.</summary>
    struct ReluGradOp : IBinaryOp
    {
        public float Invoke(float g, float x) => x > 0 ? g : 0f;
        public V256 Invoke(V256 g, V256 x) => Vector256.ConditionalSelect(Vector256.GreaterThan(x, V256.Zero), g, V256.Zero);
        public V512 Invoke(V512 g, V512 x) => Vector512.ConditionalSelect(Vector512.GreaterThan(x, V512.Zero), g, V512.Zero);
    }

    /// <summary>Exact GELU, y = x·Φ(x) = 0.5·x·(1 + erf(x/√2)) (erf accurate to ~1e-7 relative).
    /// dx = g·(Φ(x) + x·φ(x)).</summary>
    public static Tensor Gelu(Tensor x) => WithPointwiseGrad(MapNew(new GeluOp(), x, "gelu"), x, "gelu", new GeluGradOp(), saveOutput: false);

    /// <summary>GELU with the tanh approximation ("gelu_pytorch_tanh"), y = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).</summary>
    public static Tensor GeluTanh(Tensor x) => WithPointwiseGrad(MapNew(new GeluTanhOp(), x, "gelu_tanh"), x, "gelu_tanh", new GeluTanhGradOp(), saveOutput: false);

    /// <summary>SiLU (swish), y = x·σ(x). dx = g·σ(x)·(1 + x·(1 - σ(x))).</summary>
    public static Tensor Silu(Tensor x) => WithPointwiseGrad(MapNew(new SiluOp(), x, "silu"), x, "silu", new SiluGradOp(), saveOutput: false);

    /// <summary>ReLU, y = max(x, 0). dx = g where x &gt; 0.</summary>
    public static Tensor Relu(Tensor x) => WithPointwiseGrad(MapNew(new ReluOp(), x, "relu"), x, "relu", new ReluGradOp(), saveOutput: false);

    /// <summary>
    /// Fused gate of the Qwen2/LLaMA MLP: y = silu(gate)·up (same shape, or broadcast).
    /// dgate = g·up·silu'(gate), dup = g·silu(gate); silu is recomputed in backward instead of stored.
    /// </summary>
    public static Tensor SiluMul(Tensor gate, Tensor up)
    {
        var y = ZipNew(new SiluMulOp(), gate, up, "silu_mul");
        if (Tensor.AnyRequiresGrad(gate, up))
        {
            var (sg, su, rg, ru) = (gate.Shape, up.Shape, gate.RequiresGrad, up.RequiresGrad);
            var keepG = gate.SaveForBackward();
            var keepU = up.SaveForBackward();
            y.WithGradFn("silu_mul", [gate, up], [keepG, keepU], g =>
            {
                if (rg && ru && SameContiguousF32(g, keepG, keepU)) return SiluMulGradFused(g, keepG, keepU);
                Tensor? dg = null, du = null;
                if (rg)
                {
                    using var gu = ZipNew(new MulOp(), g, keepU, "silu_mul");
                    dg = ZipNew(new SiluGradOp(), gu, keepG, "silu_mul");
                }
                if (ru) du = ZipNew(new SiluMulOp(), keepG, g, "silu_mul");
                return [Reduced(dg, sg, rg), Reduced(du, su, ru)];
            });
        }
        return y;
    }

    static bool SameContiguousF32(Tensor a, Tensor b, Tensor c) =>
        a.DType == DType.F32 && b.DType == DType.F32 && c.DType == DType.F32 && a.IsContiguous && b.IsContiguous && c.IsContiguous &&
        a.Shape.AsSpan().SequenceEqual(b.Shape) && a.Shape.AsSpan().SequenceEqual(c.Shape);

    /// <summary>
    /// Both gradients of <see cref="SiluMul"/> in one pass over g, gate and up (all contiguous, one shape: the MLP case):
    /// dgate = silu'(gate)·(g·up), dup = silu(gate)·g, each element with the same vector arithmetic as the separate
    /// passes (<see cref="MulOp"/> then <see cref="SiluGradOp"/>; <see cref="SiluMulOp"/>), so the bits are the same.
    /// </summary>
    static unsafe Tensor?[] SiluMulGradFused(Tensor g, Tensor gate, Tensor up)
    {
        var dg = Tensor.Empty(g.Shape);
        var du = Tensor.Empty(g.Shape);
        var k = new SiluMulGradKernel { G = g.F32Ptr, A = gate.F32Ptr, B = up.F32Ptr, DA = dg.F32Ptr, DB = du.F32Ptr };
        Par.ForChunks(g.NumEl, 1 << 14, (s, e) => k.Run(s, e));
        return [dg, du];
    }

    unsafe struct SiluMulGradKernel
    {
        public float* G, A, B, DA, DB;

        public readonly void Run(long start, long end)
        {
            var mul = new MulOp(); var grad = new SiluGradOp(); var silu = new SiluMulOp();
            long i = start;
            if (Vector512.IsHardwareAccelerated)
            {
                for (; i + 16 <= end; i += 16)
                {
                    var g = Vector512.Load(G + i); var a = Vector512.Load(A + i);
                    grad.Invoke(mul.Invoke(g, Vector512.Load(B + i)), a).Store(DA + i);
                    silu.Invoke(a, g).Store(DB + i);
                }
                if (i < end) Tail16(i, (int)(end - i));
            }
            else if (Vector256.IsHardwareAccelerated)
            {
                for (; i + 8 <= end; i += 8)
                {
                    var g = Vector256.Load(G + i); var a = Vector256.Load(A + i);
                    grad.Invoke(mul.Invoke(g, Vector256.Load(B + i)), a).Store(DA + i);
                    silu.Invoke(a, g).Store(DB + i);
                }
                for (; i < end; i++) Scalar(i);
            }
            else for (; i < end; i++) Scalar(i);
        }

        /// <summary>The last &lt; 16 elements through a zero-padded vector, as <see cref="VectorLoop"/> finishes a row.</summary>
        readonly void Tail16(long i, int m)
        {
            var mul = new MulOp(); var grad = new SiluGradOp(); var silu = new SiluMulOp();
            float* tg = stackalloc float[16], ta = stackalloc float[16], tb = stackalloc float[16];
            for (int j = 0; j < 16; j++) { tg[j] = j < m ? G[i + j] : 0; ta[j] = j < m ? A[i + j] : 0; tb[j] = j < m ? B[i + j] : 0; }
            var g = Vector512.Load(tg); var a = Vector512.Load(ta);
            grad.Invoke(mul.Invoke(g, Vector512.Load(tb)), a).Store(tb);
            silu.Invoke(a, g).Store(tg);
            for (int j = 0; j < m; j++) { DA[i + j] = tb[j]; DB[i + j] = tg[j]; }
        }

        readonly void Scalar(long i)
        {
            float g = G[i], a = A[i];
            DA[i] = new SiluGradOp().Invoke(new MulOp().Invoke(g, B[i]), a);
            DB[i] = new SiluMulOp().Invoke(a, g);
        }
    }
}
