using MMSharp.Engine.Kernels;

namespace MMSharp.Engine;

/// <summary>torch.gather and torch.scatter_add (each the other's backward).</summary>
public static unsafe partial class Ops
{
    /// <summary>
    /// Element addressing shared by gather and scatter-add. The index space has the index tensor's shape,
    /// seen as [A, m, B] around dim; a tensor t is addressed at position (a, j, b) as
    /// t[offA[a] + j' * dimStride + offB[b]] where j' is j (for the operand shaped like the index) or
    /// index[a, j, b] (for the indexed operand).
    /// </summary>
    readonly struct IndexSpace
    {
        public readonly long A, M, B;
        public IndexSpace(int[] indexShape, int dim) { (A, int m, B) = Rows.Around(indexShape, dim); M = m; }
    }

    readonly struct Addressing(long[] offA, long[] offB, long dimStride)
    {
        public readonly long[] OffA = offA, OffB = offB;
        public readonly long DimStride = dimStride;

        public static Addressing Of(int[] indexShape, long[] strides, int dim) =>
            new(Rows.DimOffsets(indexShape, strides, 0, dim), Rows.DimOffsets(indexShape, strides, dim + 1, indexShape.Length), strides[dim]);
    }

    /// <summary>dst[at(a, j, b)] = src[at(a, index[a,j,b], b)] over the index space (no autograd).</summary>
    static void GatherCore(IndexSpace sp, long* idx, float* src, Addressing sa, float* dst, Addressing da)
    {
        long rows = sp.A * sp.M;
        int items = Rows.Items(rows * sp.B * 8, rows);
        Par.For(items, c =>
        {
            long s = rows * c / items, e = rows * (c + 1) / items;
            for (long r = s; r < e; r++)
            {
                long a = r / sp.M, j = r % sp.M;
                long* ix = idx + r * sp.B;
                float* sBase = src + sa.OffA[a];
                float* dBase = dst + da.OffA[a] + j * da.DimStride;
                for (long b = 0; b < sp.B; b++) dBase[da.OffB[b]] = sBase[ix[b] * sa.DimStride + sa.OffB[b]];
            }
        });
    }

    /// <summary>dst[at(a, index[a,j,b], b)] += src[at(a, j, b)] over the index space (no autograd). Parallel over
    /// a and b, never j, so duplicate targets accumulate in increasing j.</summary>
    static void ScatterAddCore(IndexSpace sp, long* idx, float* src, Addressing sa, float* dst, Addressing da)
    {
        long bChunks = sp.A >= Par.Threads ? 1 : Math.Max(1, Math.Min(Par.Threads, sp.B / 64));
        long itemsWanted = sp.A * bChunks;
        int items = Rows.Items(sp.A * sp.M * sp.B * 8, itemsWanted);
        Par.For(items, c =>
        {
            long s = itemsWanted * c / items, e = itemsWanted * (c + 1) / items;
            for (long it = s; it < e; it++)
            {
                long a = it / bChunks, bc = it % bChunks;
                long b0 = sp.B * bc / bChunks, b1 = sp.B * (bc + 1) / bChunks;
                float* sBase = src + sa.OffA[a];
                float* dBase = dst + da.OffA[a];
                for (long j = 0; j < sp.M; j++)
                {
                    long* ix = idx + (a * sp.M + j) * sp.B;
                    float* sRow = sBase + j * sa.DimStride;
                    for (long b = b0; b < b1; b++) dBase[ix[b] * da.DimStride + da.OffB[b]] += sRow[sa.OffB[b]];
                }
            }
        });
    }

    static void CheckIndexShape(string op, Tensor index, int d, Tensor x, string xName, bool includeDim)
    {
        if (index.Rank != x.Rank)
            throw new ArgumentException($"{op}: index {index.Describe()} must have the same number of dims as {xName} {x.Describe()}");
        for (int i = 0; i < x.Rank; i++)
            if ((i != d || includeDim) && index.Shape[i] > x.Shape[i])
                throw new ArgumentException($"{op}: index {index.Describe()} is larger than {xName} {x.Describe()} in dim {i}");
    }

    /// <summary>Picks elements along <paramref name="dim"/> by an index of the same rank (torch.gather; F32 result).</summary>
    /// <remarks>
    /// For dim = 1: y[i, j, k] = x[i, index[i, j, k], k]; y has the index's shape, which may be smaller than
    /// x in every dim but dim. Backward: dx = zeros, dx[i, index[i, j, k], k] += g[i, j, k].
    /// </remarks>
    public static Tensor Gather(Tensor x, int dim, Tensor index)
    {
        int d = x.NormDim(dim);
        CheckIndexShape("Gather", index, d, x, "input", includeDim: false);
        using var idx = IndexAsI64(index, "Gather");
        int n = x.Shape[d];
        Rows.CheckRange((long*)idx.DataPtr, idx.NumEl, n, "Gather", $"dim {d} of {x.Describe()}");
        var y = Tensor.Empty(index.Shape);
        var sp = new IndexSpace(index.Shape, d);
        var yAddr = Addressing.Of(index.Shape, y.Strides, d);
        using (var xc = Contiguous(x, DType.F32))
            GatherCore(sp, (long*)idx.DataPtr, xc.F32Ptr, Addressing.Of(index.Shape, xc.Strides, d), y.F32Ptr, yAddr);

        if (Tensor.AnyRequiresGrad(x))
        {
            var si = idx.SaveForBackward();
            var inShape = x.Shape;
            y.WithGradFn("gather", [x], [si], g =>
            {
                var gx = Tensor.Zeros(inShape);
                ScatterAddCore(sp, (long*)si.DataPtr, g.F32Ptr, yAddr, gx.F32Ptr, Addressing.Of(si.Shape, gx.Strides, d));
                return [gx];
            });
        }
        return y;
    }

    /// <summary>Adds <paramref name="src"/> into a copy of <paramref name="x"/> at positions given along
    /// <paramref name="dim"/> by <paramref name="index"/> (torch.scatter_add, out of place; F32 result).</summary>
    /// <remarks>
    /// For dim = 0: y = x.clone(); y[index[i][j]][j] += src[i][j]. index has x's rank and is no larger than src
    /// in any dim and no larger than x outside dim; duplicates accumulate in index order.
    /// Backward: dx = g; dsrc[i][j] = g[index[i][j]][j] where index covers src, 0 elsewhere.
    /// </remarks>
    public static Tensor ScatterAdd(Tensor x, int dim, Tensor index, Tensor src)
    {
        int d = x.NormDim(dim);
        CheckIndexShape("ScatterAdd", index, d, x, "input", includeDim: false);
        CheckIndexShape("ScatterAdd", index, d, src, "src", includeDim: true);
        using var idx = IndexAsI64(index, "ScatterAdd");
        Rows.CheckRange((long*)idx.DataPtr, idx.NumEl, x.Shape[d], "ScatterAdd", $"dim {d} of {x.Describe()}");
        Tensor y;
        using (Autograd.GradMode.NoGrad()) y = Clone(x, DType.F32);
        var sp = new IndexSpace(index.Shape, d);
        var yAddr = Addressing.Of(index.Shape, y.Strides, d);
        var srcShape = src.Shape;
        var srcStrides = Tensor.ContiguousStrides(srcShape);
        var srcAddr = Addressing.Of(index.Shape, srcStrides, d);
        using (var sc = Contiguous(src, DType.F32))
            ScatterAddCore(sp, (long*)idx.DataPtr, sc.F32Ptr, srcAddr, y.F32Ptr, yAddr);

        if (Tensor.AnyRequiresGrad(x, src))
        {
            bool needX = x.RequiresGrad, needSrc = src.RequiresGrad;
            var si = idx.SaveForBackward();
            y.WithGradFn("scatter_add", [x, src], [si], g =>
            {
                Tensor? gs = null;
                if (needSrc)
                {
                    gs = Tensor.Zeros(srcShape);
                    GatherCore(sp, (long*)si.DataPtr, g.F32Ptr, yAddr, gs.F32Ptr, srcAddr);
                }
                return [needX ? g : null, gs];
            });
        }
        return y;
    }
}
