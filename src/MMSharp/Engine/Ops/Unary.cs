using System.Runtime.Intrinsics;
using MMSharp.Engine.Kernels;
using V256 = System.Runtime.Intrinsics.Vector256<float>;
using V512 = System.Runtime.Intrinsics.Vector512<float>;

namespace MMSharp.Engine;

/// <summary>
/// Pointwise math: exp, log, sqrt, rsqrt, tanh, sigmoid, pow, square, abs, clamp. Each op's backward
/// is a fused binary kernel over (g, saved), saving the output where that is enough (exp, sqrt,
/// rsqrt, tanh, sigmoid) and the input otherwise.
/// </summary>
public static partial class Ops
{
    // ------------------------------------------------------------------ forward operator structs

    struct ExpOp : IUnaryOp
    {
        public float Invoke(float x) => MathF.Exp(x);
        public V256 Invoke(V256 x) => Vector256.Exp(x);
        public V512 Invoke(V512 x) => Vector512.Exp(x);
    }

    struct LogOp : IUnaryOp
    {
        public float Invoke(float x) => MathF.Log(x);
        public V256 Invoke(V256 x) => Vector256.Log(x);
        public V512 Invoke(V512 x) => Vector512.Log(x);
    }

    struct SqrtOp : IUnaryOp
    {
        public float Invoke(float x) => MathF.Sqrt(x);
        public V256 Invoke(V256 x) => Vector256.Sqrt(x);
        public V512 Invoke(V512 x) => Vector512.Sqrt(x);
    }

    /// <summary>1 / sqrt(x), correctly rounded division (not the 12-bit hardware estimate).</summary>
    struct RsqrtOp : IUnaryOp
    {
        public float Invoke(float x) => 1f / MathF.Sqrt(x);
        public V256 Invoke(V256 x) => V256.One / Vector256.Sqrt(x);
        public V512 Invoke(V512 x) => V512.One / Vector512.Sqrt(x);
    }

    struct TanhOp : IUnaryOp
    {
        public float Invoke(float x) => VMath.Tanh(x);
        public V256 Invoke(V256 x) => VMath.Tanh(x);
        public V512 Invoke(V512 x) => VMath.Tanh(x);
    }

    struct SigmoidOp : IUnaryOp
    {
        public float Invoke(float x) => VMath.Sigmoid(x);
        public V256 Invoke(V256 x) => VMath.Sigmoid(x);
        public V512 Invoke(V512 x) => VMath.Sigmoid(x);
    }

    struct AbsOp : IUnaryOp
    {
        public float Invoke(float x) => MathF.Abs(x);
        public V256 Invoke(V256 x) => Vector256.Abs(x);
        public V512 Invoke(V512 x) => Vector512.Abs(x);
    }

    /// <summary>min(max(x, lo), hi); NaN stays NaN (IEEE maximum/minimum).</summary>
    struct ClampOp(float lo, float hi) : IUnaryOp
    {
        public float Invoke(float x) => float.IsNaN(x) ? x : Math.Min(Math.Max(x, lo), hi);
        public V256 Invoke(V256 x)
        {
            var l = Vector256.Create(lo); var h = Vector256.Create(hi);
            x = Vector256.ConditionalSelect(Vector256.LessThan(x, l), l, x);
            return Vector256.ConditionalSelect(Vector256.GreaterThan(x, h), h, x);
        }

        public V512 Invoke(V512 x)
        {
            var l = Vector512.Create(lo); var h = Vector512.Create(hi);
            x = Vector512.ConditionalSelect(Vector512.LessThan(x, l), l, x);
            return Vector512.ConditionalSelect(Vector512.GreaterThan(x, h), h, x);
        }
    }

    /// <summary>x^p for a fixed exponent: exact products for small integer and ±0.5 exponents,
    /// exp(p·log|x|) otherwise with the sign of x for odd integer p and NaN for x &lt; 0 and fractional p.</summary>
    struct PowOp : IUnaryOp
    {
        readonly float _p;
        readonly int _mode; // 0 general, 1 x^0, 2 x, 3 x^2, 4 x^3, 5 sqrt, 6 rsqrt, 7 1/x
        readonly bool _int, _odd;

        public PowOp(float p)
        {
            _p = p;
            _mode = p switch { 0f => 1, 1f => 2, 2f => 3, 3f => 4, 0.5f => 5, -0.5f => 6, -1f => 7, _ => 0 };
            _int = MathF.Round(p) == p;
            _odd = _int && MathF.Abs(p) < 1 << 24 && ((long)p & 1) != 0;
        }

        public float Invoke(float x)
        {
            switch (_mode)
            {
                case 1: return 1f;
                case 2: return x;
                case 3: return x * x;
                case 4: return x * x * x;
                case 5: return MathF.Sqrt(x);
                case 6: return 1f / MathF.Sqrt(x);
                case 7: return 1f / x;
            }
            float r = MathF.Exp(_p * MathF.Log(MathF.Abs(x)));
            if (x < 0) r = _odd ? -r : _int ? r : float.NaN;
            return r;
        }

        public V256 Invoke(V256 x)
        {
            switch (_mode)
            {
                case 1: return V256.One;
                case 2: return x;
                case 3: return x * x;
                case 4: return x * x * x;
                case 5: return Vector256.Sqrt(x);
                case 6: return V256.One / Vector256.Sqrt(x);
                case 7: return V256.One / x;
            }
            var r = Vector256.Exp(Vector256.Create(_p) * Vector256.Log(Vector256.Abs(x)));
            if (_odd) return Vector256.CopySign(r, x);
            if (_int) return r;
            return Vector256.ConditionalSelect(Vector256.LessThan(x, V256.Zero), Vector256.Create(float.NaN), r);
        }

        public V512 Invoke(V512 x)
        {
            switch (_mode)
            {
                case 1: return V512.One;
                case 2: return x;
                case 3: return x * x;
                case 4: return x * x * x;
                case 5: return Vector512.Sqrt(x);
                case 6: return V512.One / Vector512.Sqrt(x);
                case 7: return V512.One / x;
            }
            var r = Vector512.Exp(Vector512.Create(_p) * Vector512.Log(Vector512.Abs(x)));
            if (_odd) return Vector512.CopySign(r, x);
            if (_int) return r;
            return Vector512.ConditionalSelect(Vector512.LessThan(x, V512.Zero), Vector512.Create(float.NaN), r);
        }
    }

    // ------------------------------------------------------------------ backward operator structs: (g, saved) -> dx

    /// <summary>g · 0.5 / y with y = sqrt(x).</summary>
    struct SqrtGradOp : IBinaryOp
    {
        public float Invoke(float g, float y) => 0.5f * g / y;
        public V256 Invoke(V256 g, V256 y) => Vector256.Create(0.5f) * g / y;
        public V512 Invoke(V512 g, V512 y) => Vector512.Create(0.5f) * g / y;
    }

    /// <summary>-0.5 · g · y³ with y = x^-1/2.</summary>
    struct RsqrtGradOp : IBinaryOp
    {
        public float Invoke(float g, float y) => -0.5f * g * y * y * y;
        public V256 Invoke(V256 g, V256 y) => Vector256.Create(-0.5f) * g * y * y * y;
        public V512 Invoke(V512 g, V512 y) => Vector512.Create(-0.5f) * g * y * y * y;
    }

    /// <summary>g · (1 - y²) with y = tanh(x).</summary>
    struct TanhGradOp : IBinaryOp
    {
        public float Invoke(float g, float y) => g * (1f - y * y);
        public V256 Invoke(V256 g, V256 y) => g * (V256.One - y * y);
        public V512 Invoke(V512 g, V512 y) => g * (V512.One - y * y);
    }

    /// <summary>g · y · (1 - y) with y = sigmoid(x).</summary>
    struct SigmoidGradOp : IBinaryOp
    {
        public float Invoke(float g, float y) => g * y * (1f - y);
        public V256 Invoke(V256 g, V256 y) => g * y * (V256.One - y);
        public V512 Invoke(V512 g, V512 y) => g * y * (V512.One - y);
    }

    /// <summary>g · sign(x), 0 at x = 0.</summary>
    struct AbsGradOp : IBinaryOp
    {
        public float Invoke(float g, float x) => x > 0 ? g : x < 0 ? -g : 0f;
        public V256 Invoke(V256 g, V256 x) =>
            Vector256.ConditionalSelect(Vector256.GreaterThan(x, V256.Zero), g, V256.Zero)
            - Vector256.ConditionalSelect(Vector256.LessThan(x, V256.Zero), g, V256.Zero);
        public V512 Invoke(V512 g, V512 x) =>
            Vector512.ConditionalSelect(Vector512.GreaterThan(x, V512.Zero), g, V512.Zero)
            - Vector512.ConditionalSelect(Vector512.LessThan(x, V512.Zero), g, V512.Zero);
    }

    /// <summary>g where lo ≤ x ≤ hi (the gradient passes at the bounds, as in PyTorch), 0 elsewhere.</summary>
    struct ClampGradOp(float lo, float hi) : IBinaryOp
    {
        public float Invoke(float g, float x) => x >= lo && x <= hi ? g : 0f;
        public V256 Invoke(V256 g, V256 x) => Vector256.ConditionalSelect(
            Vector256.GreaterThanOrEqual(x, Vector256.Create(lo)) & Vector256.LessThanOrEqual(x, Vector256.Create(hi)), g, V256.Zero);
        public V512 Invoke(V512 g, V512 x) => Vector512.ConditionalSelect(
            Vector512.GreaterThanOrEqual(x, Vector512.Create(lo)) & Vector512.LessThanOrEqual(x, Vector512.Create(hi)), g, V512.Zero);
    }

    /// <summary>g · p · x^(p-1).</summary>
    struct PowGradOp(float p) : IBinaryOp
    {
        PowOp _pm1 = new(p - 1);
        public float Invoke(float g, float x) => g * p * _pm1.Invoke(x);
        public V256 Invoke(V256 g, V256 x) => g * Vector256.Create(p) * _pm1.Invoke(x);
        public V512 Invoke(V512 g, V512 x) => g * Vector512.Create(p) * _pm1.Invoke(x);
    }

    // ------------------------------------------------------------------ ops

    /// <summary>Records a pointwise backward dx = op(g, saved) where saved is the input or the output.</summary>
    static Tensor WithPointwiseGrad<TGrad>(Tensor y, Tensor x, string name, TGrad grad, bool saveOutput) where TGrad : struct, IBinaryOp
    {
        if (!Tensor.AnyRequiresGrad(x)) return y;
        var keep = saveOutput ? y.SaveForBackward() : x.SaveForBackward();
        return y.WithGradFn(name, [x], [keep], g => [ZipNew(grad, g, keep, name)]);
    }

    /// <summary>y = e^x. dx = g·y.</summary>
    public static Tensor Exp(Tensor x) => WithPointwiseGrad(MapNew(new ExpOp(), x, "exp"), x, "exp", new MulOp(), saveOutput: true);

    /// <summary>y = ln x. dx = g / x.</summary>
    public static Tensor Log(Tensor x) => WithPointwiseGrad(MapNew(new LogOp(), x, "log"), x, "log", new DivOp(), saveOutput: false);

    /// <summary>y = √x. dx = g / (2y).</summary>
    public static Tensor Sqrt(Tensor x) => WithPointwiseGrad(MapNew(new SqrtOp(), x, "sqrt"), x, "sqrt", new SqrtGradOp(), saveOutput: true);

    /// <summary>y = 1/√x. dx = -g·y³/2.</summary>
    public static Tensor Rsqrt(Tensor x) => WithPointwiseGrad(MapNew(new RsqrtOp(), x, "rsqrt"), x, "rsqrt", new RsqrtGradOp(), saveOutput: true);

    /// <summary>y = tanh x. dx = g·(1 - y²).</summary>
    public static Tensor Tanh(Tensor x) => WithPointwiseGrad(MapNew(new TanhOp(), x, "tanh"), x, "tanh", new TanhGradOp(), saveOutput: true);

    /// <summary>y = 1 / (1 + e^-x). dx = g·y·(1 - y).</summary>
    public static Tensor Sigmoid(Tensor x) => WithPointwiseGrad(MapNew(new SigmoidOp(), x, "sigmoid"), x, "sigmoid", new SigmoidGradOp(), saveOutput: true);

    /// <summary>y = |x|. dx = g·sign(x) (0 at 0).</summary>
    public static Tensor Abs(Tensor x) => WithPointwiseGrad(MapNew(new AbsOp(), x, "abs"), x, "abs", new AbsGradOp(), saveOutput: false);

    /// <summary>y = min(max(x, lo), hi). dx = g where lo ≤ x ≤ hi, else 0. NaN propagates.</summary>
    public static Tensor Clamp(Tensor x, float lo = float.NegativeInfinity, float hi = float.PositiveInfinity)
    {
        if (lo > hi) throw new ArgumentException($"clamp of {x.Describe()}: lo {lo} > hi {hi}");
        return WithPointwiseGrad(MapNew(new ClampOp(lo, hi), x, "clamp"), x, "clamp", new ClampGradOp(lo, hi), saveOutput: false);
    }

    /// <summary>y = x^p. dx = g·p·x^(p-1). Negative x gives NaN unless p is an integer.</summary>
    public static Tensor Pow(Tensor x, float p) => WithPointwiseGrad(MapNew(new PowOp(p), x, "pow"), x, "pow", new PowGradOp(p), saveOutput: false);

    /// <summary>y = x². dx = 2·g·x.</summary>
    public static Tensor Square(Tensor x) => Pow(x, 2f);

    /// <summary>y = a^b (broadcast) for a &gt; 0, computed as exp(b·ln a); gradients follow from the composition:
    /// da = g·b·a^(b-1), db = g·y·ln a.</summary>
    public static Tensor Pow(Tensor a, Tensor b)
    {
        using var la = Log(a);
        using var e = Mul(b, la);
        return Exp(e);
    }
}
