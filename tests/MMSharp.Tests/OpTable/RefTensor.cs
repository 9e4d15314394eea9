using MMSharp.Engine;

namespace MMSharp.Tests.OpTable;

/// <summary>A dense row-major float64 array used by the naive reference implementations.</summary>
public sealed class RefTensor
{
    public readonly int[] Shape;
    public readonly double[] Data;

    public RefTensor(int[] shape, double[]? data = null)
    {
        Shape = shape;
        long n = Tensor.Product(shape);
        Data = data ?? new double[n];
        if (Data.Length != n) throw new ArgumentException($"{Data.Length} values for shape {Tensor.ShapeString(shape)}");
    }

    public int Rank => Shape.Length;
    public int Size(int d) => Shape[d < 0 ? d + Rank : d];

    public static RefTensor From(Tensor t)
    {
        var f = t.ToFloatArray();
        return new RefTensor((int[])t.Shape.Clone(), f.Select(v => (double)v).ToArray());
    }

    public RefTensor Clone() => new((int[])Shape.Clone(), (double[])Data.Clone());

    public long[] Strides => Tensor.ContiguousStrides(Shape);

    public long Flat(params int[] idx)
    {
        long off = 0, s = 1;
        for (int d = Rank - 1; d >= 0; d--) { off += idx[d] * s; s *= Shape[d]; }
        return off;
    }

    public double this[params int[] idx]
    {
        get => Data[Flat(idx)];
        set => Data[Flat(idx)] = value;
    }

    /// <summary>Multi-index of flat position <paramref name="flat"/>.</summary>
    public static int[] Unflatten(long flat, int[] shape)
    {
        var idx = new int[shape.Length];
        for (int d = shape.Length - 1; d >= 0; d--) { idx[d] = (int)(flat % shape[d]); flat /= shape[d]; }
        return idx;
    }

    /// <summary>Value at an index of a broadcast shape (right-aligned, size-1 dims repeat).</summary>
    public double GetBroadcast(int[] outIdx)
    {
        long off = 0, s = 1;
        int lead = outIdx.Length - Rank;
        for (int d = Rank - 1; d >= 0; d--)
        {
            int i = Shape[d] == 1 ? 0 : outIdx[d + lead];
            off += i * s; s *= Shape[d];
        }
        return Data[off];
    }

    public static RefTensor Map(RefTensor a, Func<double, double> f) => new((int[])a.Shape.Clone(), a.Data.Select(f).ToArray());

    public static RefTensor Zip(RefTensor a, RefTensor b, Func<double, double, double> f)
    {
        var shape = Ops.BroadcastShape(a.Shape, b.Shape);
        var r = new RefTensor(shape);
        for (long i = 0; i < r.Data.Length; i++)
        {
            var idx = Unflatten(i, shape);
            r.Data[i] = f(a.GetBroadcast(idx), b.GetBroadcast(idx));
        }
        return r;
    }

    /// <summary>Materialises a view given as shape + strides + offset over this tensor's flat data.</summary>
    public RefTensor Gather(int[] shape, long[] strides, long offset)
    {
        var r = new RefTensor(shape);
        for (long i = 0; i < r.Data.Length; i++)
        {
            var idx = Unflatten(i, shape);
            long off = offset;
            for (int d = 0; d < shape.Length; d++) off += idx[d] * strides[d];
            r.Data[i] = Data[off];
        }
        return r;
    }
}
