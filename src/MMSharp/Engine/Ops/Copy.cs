using MMSharp.Engine.Kernels;

namespace MMSharp.Engine;

/// <summary>Tensor operations. Each op lives with its backward in one file of Engine/Ops.</summary>
public static unsafe partial class Ops
{
    struct CopyRow(byte* src, DType sdt, byte* dst, DType ddt) : IRowOp2
    {
        public void Row(long so, long d_o, int n, long si, long di) =>
            Kernels.Convert.Row(src + so * sdt.SizeOf(), sdt, si, dst + d_o * ddt.SizeOf(), ddt, di, n);
    }

    /// <summary>Copies (and converts) the elements of <paramref name="src"/> into <paramref name="dst"/> of the same shape. No autograd.</summary>
    public static void CopyInto(Tensor src, Tensor dst)
    {
        if (!src.Shape.AsSpan().SequenceEqual(dst.Shape))
            throw new ArgumentException($"copy from {src.Describe()} into {dst.Describe()}: shapes differ");
        if (dst.Storage.ReadOnly) throw new InvalidOperationException($"{dst.Describe()} is read-only (memory-mapped)");
        var op = new CopyRow(src.DataPtr, src.DType, dst.DataPtr, dst.DType);
        Strided.ForEachRow(src.Shape, src.Strides, dst.Strides, ref op);
        dst.BumpVersion();
    }

    /// <summary>A contiguous copy in <paramref name="dtype"/> (default: same dtype). Differentiable for float types.</summary>
    public static Tensor Clone(Tensor x, DType? dtype = null)
    {
        var dt = dtype ?? x.DType;
        var y = Tensor.Empty(x.Shape, dt);
        CopyInto(x, y);
        if (Tensor.AnyRequiresGrad(x) && dt.IsFloat())
            y.WithGradFn("clone", [x], [], g => [g]);
        return y;
    }

    /// <summary>The same tensor when it is already contiguous in <paramref name="dtype"/> (a new object over the same
    /// memory), a contiguous copy otherwise.</summary>
    public static Tensor Contiguous(Tensor x, DType? dtype = null)
    {
        var dt = dtype ?? x.DType;
        if (x.IsContiguous && dt == x.DType)
        {
            var a = x.Alias();
            if (Tensor.AnyRequiresGrad(x)) a.WithGradFn("contiguous", [x], [], g => [g]);
            return a;
        }
        return Clone(x, dt);
    }

    /// <summary>Conversion to another dtype (a copy; gradients flow back as F32 for float types).</summary>
    public static Tensor To(Tensor x, DType dtype) => dtype == x.DType ? Contiguous(x) : Clone(x, dtype);
}

public sealed partial class Tensor
{
    public Tensor Contiguous() => Ops.Contiguous(this);
    public Tensor Clone() => Ops.Clone(this);
    public Tensor To(DType dtype) => Ops.To(this, dtype);
}
