using System.Numerics.Tensors;

namespace MMSharp.Engine.Kernels;

/// <summary>
/// Row-level building blocks shared by the indexing and joining ops: a tensor is seen as
/// [outer, n, inner] around one dimension, and the ops move or accumulate whole inner rows
/// (memcpy / vector add) instead of single elements. Large jobs are split with <see cref="Par"/>
/// into items that write disjoint outputs, each summing in a fixed order, so results are identical
/// run to run.
/// </summary>
internal static unsafe class Rows
{
    /// <summary>Below this many bytes of work a job runs on the calling thread (waking workers costs more).</summary>
    public const long ParallelBytes = 1 << 18;

    /// <summary>Sizes of the dims before <paramref name="dim"/>, at it, and after it.</summary>
    public static (long outer, int n, long inner) Around(int[] shape, int dim)
    {
        long outer = 1, inner = 1;
        for (int i = 0; i < dim; i++) outer *= shape[i];
        for (int i = dim + 1; i < shape.Length; i++) inner *= shape[i];
        return (outer, shape[dim], inner);
    }

    /// <summary>Number of work items for <paramref name="bytes"/> of work split into at most <paramref name="max"/> items.</summary>
    public static int Items(long bytes, long max)
    {
        if (bytes < ParallelBytes || max <= 1) return 1;
        return (int)Math.Min(max, Par.Threads);
    }

    /// <summary>Copies <paramref name="count"/> blocks of <paramref name="bytes"/> bytes; block i goes from
    /// src + i*srcStride to dst + i*dstStride (strides in bytes).</summary>
    public static void CopyBlocks(byte* src, long srcStride, byte* dst, long dstStride, long count, long bytes)
    {
        if (count <= 0 || bytes <= 0) return;
        if (count == 1 || (srcStride == bytes && dstStride == bytes))
        {
            // one long run: split it by bytes
            long total = count * bytes;
            int items = Items(total, total / (ParallelBytes / 2));
            if (items == 1) { Copy(src, dst, total); return; }
            Par.For(items, c =>
            {
                long s = total * c / items, e = total * (c + 1) / items;
                Copy(src + s, dst + s, e - s);
            });
            return;
        }
        int k = Items(count * bytes, count);
        if (k == 1)
        {
            for (long i = 0; i < count; i++) Copy(src + i * srcStride, dst + i * dstStride, bytes);
            return;
        }
        Par.For(k, c =>
        {
            long s = count * c / k, e = count * (c + 1) / k;
            for (long i = s; i < e; i++) Copy(src + i * srcStride, dst + i * dstStride, bytes);
        });
    }

    public static void Copy(byte* src, byte* dst, long bytes) => Buffer.MemoryCopy(src, dst, bytes, bytes);

    /// <summary>dst[i] += src[i] for n floats.</summary>
    public static void AddRow(float* dst, float* src, long n)
    {
        while (n > 0)
        {
            int len = (int)Math.Min(n, int.MaxValue / 2);
            TensorPrimitives.Add(new ReadOnlySpan<float>(dst, len), new ReadOnlySpan<float>(src, len), new Span<float>(dst, len));
            dst += len; src += len; n -= len;
        }
    }

    /// <summary>
    /// Index-add of rows: dst[o, idx[i], c] += src[o, i, c] for o &lt; outer, i &lt; n, c &lt; inner, with dst of
    /// shape [outer, dstN, inner] and src [outer, n, inner], both contiguous. Duplicate indices accumulate
    /// in increasing i. Parallel over outer slices and column ranges, never over i, so the order of each
    /// sum is fixed.
    /// </summary>
    public static void IndexAdd(float* dst, long dstN, float* src, long n, long* idx, long outer, long inner)
    {
        long bytes = outer * n * inner * 4;
        if (Items(bytes, Par.Threads) == 1) { IndexAddRange(dst, dstN, src, n, idx, 0, outer, 0, inner, inner); return; }
        if (outer >= Par.Threads)
        {
            int k = Par.Threads;
            Par.For(k, c => IndexAddRange(dst, dstN, src, n, idx, outer * c / k, outer * (c + 1) / k, 0, inner, inner));
            return;
        }
        // few outer slices: split the columns instead
        int colChunks = (int)Math.Max(1, Math.Min(Par.Threads, inner / 64));
        Par.For((int)outer * colChunks, item =>
        {
            long o = item / colChunks;
            int c = item % colChunks;
            IndexAddRange(dst, dstN, src, n, idx, o, o + 1, inner * c / colChunks, inner * (c + 1) / colChunks, inner);
        });
    }

    static void IndexAddRange(float* dst, long dstN, float* src, long n, long* idx, long o0, long o1, long c0, long c1, long inner)
    {
        long w = c1 - c0;
        for (long o = o0; o < o1; o++)
        {
            float* d = dst + o * dstN * inner + c0;
            float* s = src + o * n * inner + c0;
            if (inner == 1)
                for (long i = 0; i < n; i++) d[idx[i]] += s[i];
            else
                for (long i = 0; i < n; i++) AddRow(d + idx[i] * inner, s + i * inner, w);
        }
    }

    /// <summary>
    /// Storage offsets (in elements) of every position of dims [from, to) of <paramref name="shape"/>,
    /// enumerated row-major, under <paramref name="strides"/>. Used to address tensors whose index space is
    /// smaller than the tensor (gather/scatter index shapes).
    /// </summary>
    public static long[] DimOffsets(int[] shape, long[] strides, int from, int to)
    {
        long count = 1;
        for (int d = from; d < to; d++) count *= shape[d];
        var r = new long[count];
        if (count == 0) return r;
        Span<int> idx = stackalloc int[Math.Max(1, to - from)];
        long off = 0;
        for (long p = 0; p < count; p++)
        {
            r[p] = off;
            for (int d = to - 1; d >= from; d--)
            {
                int k = d - from;
                idx[k]++;
                off += strides[d];
                if (idx[k] < shape[d]) break;
                off -= strides[d] * shape[d];
                idx[k] = 0;
            }
        }
        return r;
    }

    /// <summary>Checks every index is in [0, size); throws naming the op, the bad value and its flat position.</summary>
    public static void CheckRange(long* idx, long n, long size, string op, string what)
    {
        for (long i = 0; i < n; i++)
        {
            long v = idx[i];
            if ((ulong)v >= (ulong)size)
                throw new ArgumentOutOfRangeException("index", $"{op}: index {v} at position {i} is out of range for {what} of size {size}");
        }
    }
}
