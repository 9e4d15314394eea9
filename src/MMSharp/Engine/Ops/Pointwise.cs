using System.Runtime.Intrinsics;
using MMSharp.Engine.Autograd;
using MMSharp.Engine.Kernels;

namespace MMSharp.Engine;

/// <summary>Shared plumbing of the pointwise ops: dtype widening, broadcasting, and running an
/// operator struct over whole tensors through <see cref="VectorLoop"/>. No autograd here.</summary>
public static unsafe partial class Ops
{
    /// <summary>An F32 tensor over <paramref name="x"/>'s elements (any strides): a plain alias when it is
    /// already F32, a converted copy otherwise (BF16/F16 widen; integer and Bool tensors become their
    /// values, so a Bool mask multiplies as 0/1). Never records a graph node; dispose after use.</summary>
    internal static Tensor AsF32(Tensor x, string op)
    {
        if (x.DType == DType.F32) return x.Alias(register: false);
        using (GradMode.NoGrad()) return Clone(x, DType.F32);
    }

    /// <summary>A contiguous F32 tensor with <paramref name="x"/>'s elements (alias if possible). No graph.</summary>
    internal static Tensor ContiguousF32(Tensor x, string op)
    {
        if (x.DType == DType.F32 && x.IsContiguous) return x.Alias(register: false);
        if (x.DType == DType.F32)
        {
            // strided F32: the parallel, tiled copy of the pointwise driver (transposes are common here)
            var y = Tensor.Empty(x.Shape);
            VectorLoop.Map(new IdentityOp(), x.Shape, x.F32Ptr, x.Strides, y.F32Ptr);
            return y;
        }
        using (GradMode.NoGrad()) return Clone(x, DType.F32);
    }

    /// <summary>y = op(x) elementwise, a new contiguous F32 tensor.</summary>
    internal static Tensor MapNew<T>(T op, Tensor x, string name) where T : struct, IUnaryOp
    {
        using var xf = AsF32(x, name);
        var y = Tensor.Empty(x.Shape);
        VectorLoop.Map(op, y.Shape, xf.F32Ptr, xf.Strides, y.F32Ptr);
        return y;
    }

    /// <summary>y = op(a, b) elementwise with NumPy broadcasting, a new contiguous F32 tensor.</summary>
    internal static Tensor ZipNew<T>(T op, Tensor a, Tensor b, string name) where T : struct, IBinaryOp
    {
        int[] shape;
        try { shape = BroadcastShape(a.Shape, b.Shape); }
        catch (ArgumentException) { throw new ArgumentException($"{name}: {a.Describe()} and {b.Describe()} do not broadcast"); }
        using var af = AsF32(a, name);
        using var bf = AsF32(b, name);
        var y = Tensor.Empty(shape);
        VectorLoop.Zip(op, shape, af.F32Ptr, BroadcastStrides(af, shape), bf.F32Ptr, BroadcastStrides(bf, shape), y.F32Ptr);
        return y;
    }

    /// <summary>A contiguous F32 copy of <paramref name="x"/> broadcast to <paramref name="shape"/>. No graph.</summary>
    internal static Tensor BroadcastTo(Tensor x, int[] shape)
    {
        using var xf = AsF32(x, "broadcast");
        var y = Tensor.Empty(shape);
        VectorLoop.Map(new IdentityOp(), shape, xf.F32Ptr, BroadcastStrides(xf, shape), y.F32Ptr);
        return y;
    }

    /// <summary>Gradient of a broadcast operand: <paramref name="g"/> summed over the broadcast dims, or null when
    /// not needed. A temporary <paramref name="g"/> (made by the backward itself) is disposed when replaced;
    /// the incoming output gradient is shared and never disposed here.</summary>
    static Tensor? Reduced(Tensor? g, int[] shape, bool needed, bool temporary = true)
    {
        if (!needed || g == null) { if (temporary) g?.Dispose(); return null; }
        if (g.Shape.AsSpan().SequenceEqual(shape)) return g;
        var r = SumLeadingDims(g, shape) ?? SumToShape(g, shape);
        if (temporary) g.Dispose();
        return r;
    }

    struct IdentityOp : IUnaryOp
    {
        public float Invoke(float x) => x;
        public Vector256<float> Invoke(Vector256<float> x) => x;
        public Vector512<float> Invoke(Vector512<float> x) => x;
    }
}
