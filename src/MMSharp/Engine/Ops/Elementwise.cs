using System.Runtime.Intrinsics;
using MMSharp.Engine.Kernels;
using V256 = System.Runtime.Intrinsics.Vector256<float>;
using V512 = System.Runtime.Intrinsics.Vector512<float>;

namespace MMSharp.Engine;

/// <summary>
/// Arithmetic with NumPy broadcasting: add, sub, mul, div of two tensors (any strides), the same with
/// a float on either side, and neg. Backward sums the gradient over broadcast dims (<see cref="SumToShape"/>).
/// </summary>
public static partial class Ops
{
    // ------------------------------------------------------------------ operator structs

    struct AddOp : IBinaryOp
    {
        public float Invoke(float a, float b) => a + b;
        public V256 Invoke(V256 a, V256 b) => a + b;
        public V512 Invoke(V512 a, V512 b) => a + b;
    }

    struct SubOp : IBinaryOp
    {
        public float Invoke(float a, float b) => a - b;
        public V256 Invoke(V256 a, V256 b) => a - b;
        public V512 Invoke(V512 a, V512 b) => a - b;
    }

    struct MulOp : IBinaryOp
    {
        public float Invoke(float a, float b) => a * b;
        public V256 Invoke(V256 a, V256 b) => a * b;
        public V512 Invoke(V512 a, V512 b) => a * b;
    }

    struct DivOp : IBinaryOp
    {
        public float Invoke(float a, float b) => a / b;
        public V256 Invoke(V256 a, V256 b) => a / b;
        public V512 Invoke(V512 a, V512 b) => a / b;
    }

    /// <summary>-(a / b): the gradient of a quotient's denominator from (g·y, b).</summary>
    struct NegDivOp : IBinaryOp
    {
        public float Invoke(float a, float b) => -(a / b);
        public V256 Invoke(V256 a, V256 b) => -(a / b);
        public V512 Invoke(V512 a, V512 b) => -(a / b);
    }

    struct AddScalarOp(float s) : IUnaryOp
    {
        public float Invoke(float x) => x + s;
        public V256 Invoke(V256 x) => x + Vector256.Create(s);
        public V512 Invoke(V512 x) => x + Vector512.Create(s);
    }

    struct MulScalarOp(float s) : IUnaryOp
    {
        public float Invoke(float x) => x * s;
        public V256 Invoke(V256 x) => x * Vector256.Create(s);
        public V512 Invoke(V512 x) => x * Vector512.Create(s);
    }

    struct DivScalarOp(float s) : IUnaryOp
    {
        public float Invoke(float x) => x / s;
        public V256 Invoke(V256 x) => x / Vector256.Create(s);
        public V512 Invoke(V512 x) => x / Vector512.Create(s);
    }

    /// <summary>s - x.</summary>
    struct RSubScalarOp(float s) : IUnaryOp
    {
        public float Invoke(float x) => s - x;
        public V256 Invoke(V256 x) => Vector256.Create(s) - x;
        public V512 Invoke(V512 x) => Vector512.Create(s) - x;
    }

    /// <summary>s / x.</summary>
    struct RDivScalarOp(float s) : IUnaryOp
    {
        public float Invoke(float x) => s / x;
        public V256 Invoke(V256 x) => Vector256.Create(s) / x;
        public V512 Invoke(V512 x) => Vector512.Create(s) / x;
    }

    struct NegOp : IUnaryOp
    {
        public float Invoke(float x) => -x;
        public V256 Invoke(V256 x) => -x;
        public V512 Invoke(V512 x) => -x;
    }

    // ------------------------------------------------------------------ tensor op tensor

    /// <summary>y = a + b (broadcast). da = sum_to(g), db = sum_to(g).</summary>
    public static Tensor Add(Tensor a, Tensor b)
    {
        var y = ZipNew(new AddOp(), a, b, "add");
        if (Tensor.AnyRequiresGrad(a, b))
        {
            var (sa, sb, ra, rb) = (a.Shape, b.Shape, a.RequiresGrad, b.RequiresGrad);
            y.WithGradFn("add", [a, b], [], g => [Reduced(g, sa, ra, temporary: false), Reduced(g, sb, rb, temporary: false)]);
        }
        return y;
    }

    /// <summary>y = a - b (broadcast). da = sum_to(g), db = -sum_to(g).</summary>
    public static Tensor Sub(Tensor a, Tensor b)
    {
        var y = ZipNew(new SubOp(), a, b, "sub");
        if (Tensor.AnyRequiresGrad(a, b))
        {
            var (sa, sb, ra, rb) = (a.Shape, b.Shape, a.RequiresGrad, b.RequiresGrad);
            y.WithGradFn("sub", [a, b], [], g => [Reduced(g, sa, ra, temporary: false), Reduced(rb ? MapNew(new NegOp(), g, "sub") : null, sb, rb)]);
        }
        return y;
    }

    /// <summary>y = a * b (broadcast). da = sum_to(g * b), db = sum_to(g * a).</summary>
    public static Tensor Mul(Tensor a, Tensor b)
    {
        var y = ZipNew(new MulOp(), a, b, "mul");
        if (Tensor.AnyRequiresGrad(a, b))
        {
            var (sa, sb, ra, rb) = (a.Shape, b.Shape, a.RequiresGrad, b.RequiresGrad);
            // each gradient needs the other operand only
            var keepB = ra ? b.SaveForBackward() : null;
            var keepA = rb ? a.SaveForBackward() : null;
            Tensor[] saved = keepA != null && keepB != null ? [keepA, keepB] : keepA != null ? [keepA] : [keepB!];
            y.WithGradFn("mul", [a, b], saved, g =>
                [Reduced(ra ? ZipNew(new MulOp(), g, keepB!, "mul") : null, sa, ra),
                 Reduced(rb ? ZipNew(new MulOp(), g, keepA!, "mul") : null, sb, rb)]);
        }
        return y;
    }

    /// <summary>y = a / b (broadcast). da = sum_to(g / b), db = sum_to(-g * y / b).</summary>
    public static Tensor Div(Tensor a, Tensor b)
    {
        var y = ZipNew(new DivOp(), a, b, "div");
        if (Tensor.AnyRequiresGrad(a, b))
        {
            var (sa, sb, ra, rb) = (a.Shape, b.Shape, a.RequiresGrad, b.RequiresGrad);
            var keepB = b.SaveForBackward();
            var keepY = rb ? y.SaveForBackward() : null;
            y.WithGradFn("div", [a, b], keepY != null ? [keepB, keepY] : [keepB], g =>
            {
                Tensor? gb = null;
                if (rb)
                {
                    using var gy = ZipNew(new MulOp(), g, keepY!, "div");
                    gb = ZipNew(new NegDivOp(), gy, keepB, "div");
                }
                return [Reduced(ra ? ZipNew(new DivOp(), g, keepB, "div") : null, sa, ra), Reduced(gb, sb, rb)];
            });
        }
        return y;
    }

    // ------------------------------------------------------------------ tensor op float

    /// <summary>y = x + s.</summary>
    public static Tensor Add(Tensor x, float s)
    {
        var y = MapNew(new AddScalarOp(s), x, "add");
        if (Tensor.AnyRequiresGrad(x)) y.WithGradFn("add_scalar", [x], [], g => [g]);
        return y;
    }

    /// <summary>y = x - s.</summary>
    public static Tensor Sub(Tensor x, float s) => Add(x, -s);

    /// <summary>y = s - x. dx = -g.</summary>
    public static Tensor Sub(float s, Tensor x)
    {
        var y = MapNew(new RSubScalarOp(s), x, "sub");
        if (Tensor.AnyRequiresGrad(x)) y.WithGradFn("rsub_scalar", [x], [], g => [MapNew(new NegOp(), g, "rsub")]);
        return y;
    }

    /// <summary>y = x * s. dx = g * s.</summary>
    public static Tensor Mul(Tensor x, float s)
    {
        var y = MapNew(new MulScalarOp(s), x, "mul");
        if (Tensor.AnyRequiresGrad(x)) y.WithGradFn("mul_scalar", [x], [], g => [MapNew(new MulScalarOp(s), g, "mul")]);
        return y;
    }

    /// <summary>y = x / s. dx = g / s.</summary>
    public static Tensor Div(Tensor x, float s)
    {
        var y = MapNew(new DivScalarOp(s), x, "div");
        if (Tensor.AnyRequiresGrad(x)) y.WithGradFn("div_scalar", [x], [], g => [MapNew(new DivScalarOp(s), g, "div")]);
        return y;
    }

    /// <summary>y = s / x. dx = -g * y / x.</summary>
    public static Tensor Div(float s, Tensor x)
    {
        var y = MapNew(new RDivScalarOp(s), x, "div");
        if (Tensor.AnyRequiresGrad(x))
        {
            var keepX = x.SaveForBackward();
            var keepY = y.SaveForBackward();
            y.WithGradFn("rdiv_scalar", [x], [keepX, keepY], g =>
            {
                using var gy = ZipNew(new MulOp(), g, keepY, "div");
                return [ZipNew(new NegDivOp(), gy, keepX, "div")];
            });
        }
        return y;
    }

    /// <summary>y = -x.</summary>
    public static Tensor Neg(Tensor x)
    {
        var y = MapNew(new NegOp(), x, "neg");
        if (Tensor.AnyRequiresGrad(x)) y.WithGradFn("neg", [x], [], g => [MapNew(new NegOp(), g, "neg")]);
        return y;
    }
}
