using MMSharp.Engine.Kernels;

namespace MMSharp.Engine;

public static unsafe partial class Ops
{
    /// <summary>Contiguous I64 copy (or alias) of an integer index tensor; throws naming the op for other dtypes.</summary>
    internal static Tensor IndexAsI64(Tensor index, string op)
    {
        if (index.DType.IsFloat() || index.DType == DType.Bool)
            throw new ArgumentException($"{op}: index {index.Describe()} must be an integer tensor (I64, I32 or U8)");
        using (Autograd.GradMode.NoGrad()) return Contiguous(index, DType.I64);
    }

    /// <summary>
    /// Rows of <paramref name="x"/> picked along <paramref name="dim"/> by a 1-d integer <paramref name="index"/>
    /// (any dtype; duplicates allowed).
    /// </summary>
    /// <remarks>
    /// y[o, i, c] = x[o, index[i], c] with x seen as [outer, n, inner] around dim; each row of inner
    /// elements is one memcpy. Backward: dx = zeros, dx[o, index[i], c] += g[o, i, c] (duplicates accumulate
    /// in index order).
    /// </remarks>
    public static Tensor IndexSelect(Tensor x, int dim, Tensor index)
    {
        if (index.Rank > 1) throw new ArgumentException($"IndexSelect: index {index.Describe()} must be 0-d or 1-d");
        int d = x.NormDim(dim);
        using var idx = IndexAsI64(index, "IndexSelect");
        int m = (int)idx.NumEl;
        var (outer, n, inner) = Rows.Around(x.Shape, d);
        long* ip = (long*)idx.DataPtr;
        Rows.CheckRange(ip, m, n, "IndexSelect", $"dim {d} of {x.Describe()}");

        var shape = (int[])x.Shape.Clone();
        shape[d] = m;
        var y = Tensor.Empty(shape, x.DType);
        using (var xc = Contiguous(x))
        {
            long es = x.DType.SizeOf();
            long rowBytes = inner * es;
            byte* src = xc.DataPtr, dst = y.DataPtr;
            long rows = outer * m;
            int items = Rows.Items(rows * rowBytes, rows);
            Par.For(items, c =>
            {
                long s = rows * c / items, e = rows * (c + 1) / items;
                if (rowBytes == 4)
                {
                    int* sp = (int*)src, dp = (int*)dst;
                    for (long r = s; r < e; r++) dp[r] = sp[r / m * n + ip[r % m]];
                }
                else
                    for (long r = s; r < e; r++)
                        Rows.Copy(src + (r / m * n + ip[r % m]) * rowBytes, dst + r * rowBytes, rowBytes);
            });
        }

        if (Tensor.AnyRequiresGrad(x))
        {
            var si = idx.SaveForBackward();
            var inShape = x.Shape;
            y.WithGradFn("index_select", [x], [si], g =>
            {
                var gx = Tensor.Zeros(inShape);
                Rows.IndexAdd(gx.F32Ptr, n, g.F32Ptr, m, (long*)si.DataPtr, outer, inner);
                return [gx];
            });
        }
        return y;
    }
}
