using MMSharp.Engine.Kernels;

namespace MMSharp.Engine;

public static unsafe partial class Ops
{
    /// <summary>NumPy broadcasting of two shapes (right-aligned; size 1 stretches).</summary>
    public static int[] BroadcastShape(int[] a, int[] b)
    {
        int r = Math.Max(a.Length, b.Length);
        var s = new int[r];
        for (int i = 0; i < r; i++)
        {
            int da = i - (r - a.Length) >= 0 ? a[i - (r - a.Length)] : 1;
            int db = i - (r - b.Length) >= 0 ? b[i - (r - b.Length)] : 1;
            if (da != db && da != 1 && db != 1)
                throw new ArgumentException($"shapes {Tensor.ShapeString(a)} and {Tensor.ShapeString(b)} do not broadcast");
            s[i] = da == 1 ? db : da;
        }
        return s;
    }

    /// <summary>Strides that read <paramref name="x"/> as if expanded to <paramref name="shape"/> (0 on broadcast dims).</summary>
    public static long[] BroadcastStrides(Tensor x, int[] shape)
    {
        var st = new long[shape.Length];
        int lead = shape.Length - x.Rank;
        for (int i = 0; i < shape.Length; i++)
        {
            int src = i - lead;
            if (src < 0) { st[i] = 0; continue; }
            if (x.Shape[src] == shape[i]) st[i] = x.Strides[src];
            else if (x.Shape[src] == 1) st[i] = 0;
            else throw new ArgumentException($"{x.Describe()} does not broadcast to {Tensor.ShapeString(shape)}");
        }
        return st;
    }

    struct AccumulateRow(float* dst, float* src) : IRowOp2
    {
        public void Row(long d_o, long so, int n, long di, long si)
        {
            float* d = dst + d_o, s = src + so;
            if (di == 0)
            {
                float acc = 0;
                if (si == 1) acc = System.Numerics.Tensors.TensorPrimitives.Sum(new ReadOnlySpan<float>(s, n));
                else for (int i = 0; i < n; i++) acc += s[i * si];
                d[0] += acc;
            }
            else if (di == 1 && si == 1)
                System.Numerics.Tensors.TensorPrimitives.Add(new ReadOnlySpan<float>(d, n), new ReadOnlySpan<float>(s, n), new Span<float>(d, n));
            else for (int i = 0; i < n; i++) d[i * di] += s[i * si];
        }
    }

    /// <summary>Sums a broadcast gradient back to the shape of the operand that was broadcast. No autograd.</summary>
    public static Tensor SumToShape(Tensor g, int[] shape)
    {
        if (g.Shape.AsSpan().SequenceEqual(shape)) return Contiguous(g, DType.F32);
        var r = Tensor.Zeros(shape);
        using var gc = Contiguous(g, DType.F32);
        var dstStrides = BroadcastStrides(r, g.Shape);
        var op = new AccumulateRow(r.F32Ptr, gc.F32Ptr);
        Strided.ForEachRow(g.Shape, dstStrides, gc.Strides, ref op);
        return r;
    }
}
