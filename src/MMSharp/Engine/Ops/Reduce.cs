using System.Runtime.Intrinsics;
using MMSharp.Engine.Kernels;

namespace MMSharp.Engine;

/// <summary>
/// Reductions: sum, mean, max and argmax over one dimension (keepdim optional) or over all elements.
/// A tensor is viewed as [outer, R, inner] around the reduced dim. Every output element is computed
/// by one thread in a fixed order, and whole-tensor reductions combine fixed-size blocks in order,
/// so results are identical for any thread count.
/// Max/argmax: NaN counts as the maximum (it propagates); ties resolve to the first index, and the
/// max backward routes the whole gradient to that first index.
/// </summary>
public static unsafe partial class Ops
{
    /// <summary>Elements per block of a whole-tensor reduction (fixed, so the result does not depend on threads).</summary>
    const int ReduceBlock = 1 << 14;

    static (int outer, int r, int inner) SplitAround(int[] shape, int d)
    {
        int outer = 1, inner = 1;
        for (int i = 0; i < d; i++) outer *= shape[i];
        for (int i = d + 1; i < shape.Length; i++) inner *= shape[i];
        return (outer, shape[d], inner);
    }

    static int[] ReducedShape(int[] shape, int d, bool keepDim)
    {
        if (keepDim) { var s = (int[])shape.Clone(); s[d] = 1; return s; }
        return shape.Where((_, i) => i != d).ToArray();
    }

    /// <summary>out[o, i] = scale · Σ_r x[o, r, i] over a contiguous [outer, R, inner] buffer.</summary>
    static void SumKernel(float* x, float* y, int outer, int r, int inner, float scale)
    {
        if (inner == 1)
        {
            Par.ForChunks(outer, Math.Max(1, VectorLoop.ParallelGrain / Math.Max(1, r)), (s, e) =>
            {
                for (long o = s; o < e; o++) y[o] = RowReduce.Sum(x + o * r, r) * scale;
            });
            return;
        }
        // reduce across rows: each output strip accumulates the R input rows in a fixed order (groups of
        // four rows), so the column blocking below does not change any result
        const int Cols = 1024;
        int colBlocks = (inner + Cols - 1) / Cols;
        long work = (long)outer * r * inner;
        int items = outer * colBlocks;
        Action<int> body = item =>
        {
            int o = item / colBlocks, c0 = item % colBlocks * Cols, n = Math.Min(Cols, inner - c0);
            AccumulateRows(x + (long)o * r * inner + c0, inner, r, y + (long)o * inner + c0, n, scale);
        };
        if (work < VectorLoop.ParallelGrain) for (int i = 0; i < items; i++) body(i);
        else Par.For(items, body);
    }

    /// <summary>dst[i] = scale · Σ_k src[k·stride + i] for i &lt; n, rows taken four at a time as ((a + b) + (c + d)).</summary>
    static void AccumulateRows(float* src, long stride, int r, float* dst, int n, float scale)
    {
        new Span<float>(dst, n).Clear();
        int k = 0;
        for (; k + 4 <= r; k += 4)
        {
            float* a = src + k * stride, b = a + stride, c = b + stride, d = c + stride;
            int i = 0;
            if (Vector512.IsHardwareAccelerated)
                for (; i + 16 <= n; i += 16)
                    (Vector512.Load(dst + i) + ((Vector512.Load(a + i) + Vector512.Load(b + i)) + (Vector512.Load(c + i) + Vector512.Load(d + i)))).Store(dst + i);
            else if (Vector256.IsHardwareAccelerated)
                for (; i + 8 <= n; i += 8)
                    (Vector256.Load(dst + i) + ((Vector256.Load(a + i) + Vector256.Load(b + i)) + (Vector256.Load(c + i) + Vector256.Load(d + i)))).Store(dst + i);
            for (; i < n; i++) dst[i] += (a[i] + b[i]) + (c[i] + d[i]);
        }
        for (; k < r; k++)
        {
            float* a = src + k * stride;
            System.Numerics.Tensors.TensorPrimitives.Add(new ReadOnlySpan<float>(dst, n), new ReadOnlySpan<float>(a, n), new Span<float>(dst, n));
        }
        if (scale != 1f) System.Numerics.Tensors.TensorPrimitives.Multiply(new ReadOnlySpan<float>(dst, n), scale, new Span<float>(dst, n));
    }

    /// <summary>
    /// Σ of <paramref name="g"/> down to <paramref name="shape"/> when only leading dims were broadcast
    /// (the bias / row-vector case: [..., C] to [C] or [1, C]) with the parallel column kernel; any other
    /// pattern goes to <see cref="SumToShape"/>. Null when the fast case does not apply.
    /// </summary>
    static Tensor? SumLeadingDims(Tensor g, int[] shape)
    {
        int lead = g.Rank - shape.Length;
        if (lead < 0) return null;
        int firstKept = 0; // leading dims of shape that are 1 (and broadcast) count as removed
        while (firstKept < shape.Length && shape[firstKept] == 1 && g.Shape[lead + firstKept] != 1) firstKept++;
        for (int i = firstKept; i < shape.Length; i++)
            if (shape[i] != g.Shape[lead + i]) return null;
        long inner = Tensor.Product(shape);
        if (inner == 0 || g.NumEl == 0) return null;
        using var gc = ContiguousF32(g, "sum_to_shape");
        var r = Tensor.Empty(shape);
        SumKernel(gc.F32Ptr, r.F32Ptr, 1, checked((int)(g.NumEl / inner)), checked((int)inner), 1f);
        return r;
    }

    /// <summary>Σ over all n elements of a contiguous buffer: fixed blocks summed in parallel, then in order (in double).</summary>
    static float SumAll(float* x, long n)
    {
        int blocks = (int)((n + ReduceBlock - 1) / ReduceBlock);
        if (blocks <= 1) return RowReduce.Sum(x, n);
        var partial = new double[blocks];
        Par.ForChunks(blocks, 4, (s, e) =>
        {
            for (long b = s; b < e; b++) partial[b] = RowReduce.Sum(x + b * ReduceBlock, Math.Min(ReduceBlock, n - b * ReduceBlock));
        });
        double total = 0;
        foreach (var p in partial) total += p;
        return (float)total;
    }

    static Tensor SumOrMean(Tensor x, int dim, bool keepDim, bool mean, string name)
    {
        int d = x.NormDim(dim);
        using var xc = ContiguousF32(x, name);
        var (outer, r, inner) = SplitAround(x.Shape, d);
        var y = Tensor.Empty(ReducedShape(x.Shape, d, keepDim));
        SumKernel(xc.F32Ptr, y.F32Ptr, outer, r, inner, mean ? 1f / r : 1f);
        if (Tensor.AnyRequiresGrad(x))
        {
            var inShape = x.Shape;
            var keepShape = ReducedShape(inShape, d, true);
            float scale = mean ? 1f / r : 1f;
            y.WithGradFn(name, [x], [], g => [BroadcastScaled(g, keepShape, inShape, scale)]);
        }
        return y;
    }

    /// <summary>scale · g (viewed with <paramref name="keepShape"/>) broadcast to <paramref name="shape"/>.</summary>
    static Tensor BroadcastScaled(Tensor g, int[] keepShape, int[] shape, float scale)
    {
        using var gv = g.DType == DType.F32 && g.IsContiguous ? g.ViewOf(keepShape, Tensor.ContiguousStrides(keepShape), g.Offset) : Reshape(g, keepShape);
        var r = Tensor.Empty(shape);
        VectorLoop.Map(new MulScalarOp(scale), shape, gv.F32Ptr, BroadcastStrides(gv, shape), r.F32Ptr);
        return r;
    }

    /// <summary>Σ over <paramref name="dim"/>. Backward broadcasts g back over the reduced dim.</summary>
    public static Tensor Sum(Tensor x, int dim, bool keepDim = false) => SumOrMean(x, dim, keepDim, false, "sum");

    /// <summary>Mean over <paramref name="dim"/>: Σ / size. Backward broadcasts g / size.</summary>
    public static Tensor Mean(Tensor x, int dim, bool keepDim = false) => SumOrMean(x, dim, keepDim, true, "mean");

    /// <summary>Σ of all elements (a scalar tensor of shape []).</summary>
    public static Tensor Sum(Tensor x) => SumOrMeanAll(x, false);

    /// <summary>Mean of all elements (a scalar tensor of shape []); NaN for an empty tensor.</summary>
    public static Tensor Mean(Tensor x) => SumOrMeanAll(x, true);

    static Tensor SumOrMeanAll(Tensor x, bool mean)
    {
        string name = mean ? "mean" : "sum";
        using var xc = ContiguousF32(x, name);
        float s = SumAll(xc.F32Ptr, x.NumEl);
        float scale = mean ? 1f / x.NumEl : 1f;
        var y = Tensor.Scalar(mean ? s * scale : s);
        if (Tensor.AnyRequiresGrad(x))
        {
            var inShape = x.Shape;
            var keepShape = new int[inShape.Length];
            Array.Fill(keepShape, 1);
            y.WithGradFn(name + "_all", [x], [], g => [BroadcastScaled(g, keepShape, inShape, scale)]);
        }
        return y;
    }

    // ------------------------------------------------------------------ max / argmax

    /// <summary>Max values and first-argmax indices over [outer, R, inner].</summary>
    static void MaxKernel(float* x, float* vals, long[] idx, int outer, int r, int inner)
    {
        if (r == 0) throw new ArgumentException("max over an empty dimension");
        if (inner == 1)
        {
            Par.ForChunks(outer, Math.Max(1, VectorLoop.ParallelGrain / r), (s, e) =>
            {
                for (long o = s; o < e; o++)
                {
                    float* row = x + o * r;
                    float m = RowReduce.Max(row, r);
                    vals[o] = m;
                    idx[o] = RowReduce.IndexOfFirst(row, r, 1, m);
                }
            });
            return;
        }
        Par.ForChunks(outer, Math.Max(1, VectorLoop.ParallelGrain / ((long)r * inner)), (s, e) =>
        {
            for (long o = s; o < e; o++)
            {
                float* src = x + o * r * inner;
                float* dst = vals + o * inner;
                new ReadOnlySpan<float>(src, inner).CopyTo(new Span<float>(dst, inner));
                for (int k = 1; k < r; k++)
                {
                    float* row = src + (long)k * inner;
                    for (int i = 0; i < inner; i++) dst[i] = RowReduce.MaxNaN(dst[i], row[i]);
                }
                for (int i = 0; i < inner; i++) idx[o * inner + i] = RowReduce.IndexOfFirst(src + i, r, inner, dst[i]);
            }
        });
    }

    static (Tensor values, long[] index) MaxCore(Tensor x, int d, bool keepDim, string name)
    {
        using var xc = ContiguousF32(x, name);
        var (outer, r, inner) = SplitAround(x.Shape, d);
        var vals = Tensor.Empty(ReducedShape(x.Shape, d, keepDim));
        var idx = new long[(long)outer * inner];
        MaxKernel(xc.F32Ptr, vals.F32Ptr, idx, outer, r, inner);
        return (vals, idx);
    }

    /// <summary>
    /// Max over <paramref name="dim"/> (NaN propagates). Backward sends g to the first index that attains
    /// the max (ties: the lowest index gets all of it, the others 0).
    /// </summary>
    public static Tensor Max(Tensor x, int dim, bool keepDim = false)
    {
        int d = x.NormDim(dim);
        var (y, idx) = MaxCore(x, d, keepDim, "max");
        if (Tensor.AnyRequiresGrad(x))
        {
            var inShape = x.Shape;
            var (outer, r, inner) = SplitAround(inShape, d);
            y.WithGradFn("max", [x], [], g =>
            {
                var gx = Tensor.Zeros(inShape);
                float* gp = gx.F32Ptr, gg = g.F32Ptr;
                for (long o = 0; o < outer; o++)
                    for (int i = 0; i < inner; i++)
                        gp[(o * r + idx[o * inner + i]) * inner + i] = gg[o * inner + i];
                return [gx];
            });
        }
        return y;
    }

    /// <summary>Index (I64) of the first maximum over <paramref name="dim"/> (the first NaN if any). Not differentiable.</summary>
    public static Tensor ArgMax(Tensor x, int dim, bool keepDim = false)
    {
        int d = x.NormDim(dim);
        var (vals, idx) = MaxCore(x, d, keepDim, "argmax");
        var y = Tensor.FromArray(idx, vals.Shape);
        vals.Dispose();
        return y;
    }

    static (float max, long index) MaxAllCore(Tensor x)
    {
        if (x.NumEl == 0) throw new ArgumentException($"max of empty {x.Describe()}");
        using var xc = ContiguousF32(x, "max");
        float* p = xc.F32Ptr;
        long n = x.NumEl;
        int blocks = (int)((n + ReduceBlock - 1) / ReduceBlock);
        var bm = new float[blocks];
        var bi = new long[blocks];
        Par.ForChunks(blocks, n < VectorLoop.ParallelGrain ? blocks : 4, (s, e) =>
        {
            for (long b = s; b < e; b++)
            {
                long len = Math.Min(ReduceBlock, n - b * ReduceBlock);
                float m = RowReduce.Max(p + b * ReduceBlock, len);
                bm[b] = m;
                bi[b] = b * ReduceBlock + RowReduce.IndexOfFirst(p + b * ReduceBlock, len, 1, m);
            }
        });
        float best = bm[0];
        long at = bi[0];
        for (int b = 1; b < blocks && !float.IsNaN(best); b++)
            if (float.IsNaN(bm[b]) || bm[b] > best) { best = bm[b]; at = bi[b]; }
        return (best, at);
    }

    /// <summary>Max of all elements (shape []); backward routes g to the first maximal element.</summary>
    public static Tensor Max(Tensor x)
    {
        var (m, at) = MaxAllCore(x);
        var y = Tensor.Scalar(m);
        if (Tensor.AnyRequiresGrad(x))
        {
            var inShape = x.Shape;
            y.WithGradFn("max_all", [x], [], g =>
            {
                var gx = Tensor.Zeros(inShape);
                gx.F32Ptr[at] = g.F32Ptr[0];
                return [gx];
            });
        }
        return y;
    }

    /// <summary>Flat row-major index (I64, shape []) of the first maximum of all elements.</summary>
    public static Tensor ArgMax(Tensor x)
    {
        var (_, at) = MaxAllCore(x);
        return Tensor.FromArray(new[] { at }, []);
    }
}

public sealed partial class Tensor
{
    public Tensor Sum(int dim, bool keepDim = false) => Ops.Sum(this, dim, keepDim);
    public Tensor Sum() => Ops.Sum(this);
    public Tensor Mean(int dim, bool keepDim = false) => Ops.Mean(this, dim, keepDim);
    public Tensor Mean() => Ops.Mean(this);
}
