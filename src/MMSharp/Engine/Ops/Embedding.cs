using MMSharp.Engine.Kernels;

namespace MMSharp.Engine;

public static unsafe partial class Ops
{
    /// <summary>
    /// Token embedding lookup: rows of <paramref name="weight"/> [V, C] (F32 or BF16) picked by integer
    /// <paramref name="ids"/> [...], giving F32 [..., C].
    /// </summary>
    /// <remarks>
    /// y[p, :] = weight[ids[p], :]; BF16 rows are widened while they are copied. An id outside [0, V) throws
    /// naming the id, its position and V.
    /// Backward: dweight = zeros [V, C] with dweight[ids[p], :] += g[p, :]; only rows that occur are touched,
    /// and duplicate ids accumulate in position order (parallel over columns, not positions), so the
    /// result is deterministic.
    /// </remarks>
    public static Tensor Embedding(Tensor ids, Tensor weight)
    {
        if (weight.Rank != 2) throw new ArgumentException($"Embedding: weight {weight.Describe()} must be [vocab, dim]");
        if (weight.DType is not (DType.F32 or DType.BF16))
            throw new ArgumentException($"Embedding: weight {weight.Describe()} must be F32 or BF16");
        int vocab = weight.Shape[0], dim = weight.Shape[1];
        using var idx = IndexAsI64(ids, "Embedding");
        long n = idx.NumEl;
        long* ip = (long*)idx.DataPtr;
        for (long i = 0; i < n; i++)
        {
            long v = ip[i];
            if ((ulong)v >= (ulong)vocab)
                throw new ArgumentOutOfRangeException(nameof(ids),
                    $"Embedding: id {v} at position {Tensor.ShapeString(Unflatten(i, ids.Shape))} of {ids.Describe()} is out of range for vocabulary size {vocab} (weight {weight.Describe()})");
        }

        var shape = new int[ids.Rank + 1];
        ids.Shape.CopyTo(shape, 0);
        shape[^1] = dim;
        var y = Tensor.Empty(shape);
        // rows must be contiguous; a weight whose rows are strided (rare) is copied once
        using (var w = weight.Strides[1] == 1 || dim <= 1 ? weight.Alias() : Contiguous(weight))
        {
            long rowStride = w.Strides[0];
            bool bf16 = w.DType == DType.BF16;
            byte* wp = w.DataPtr;
            float* yp = y.F32Ptr;
            int items = Rows.Items(n * dim * 4, n);
            Par.For(items, c =>
            {
                long s = n * c / items, e = n * (c + 1) / items;
                for (long i = s; i < e; i++)
                {
                    if (bf16) Kernels.Convert.BF16ToF32((ushort*)wp + ip[i] * rowStride, yp + i * dim, dim);
                    else Rows.Copy((byte*)((float*)wp + ip[i] * rowStride), (byte*)(yp + i * dim), dim * 4L);
                }
            });
        }

        if (Tensor.AnyRequiresGrad(weight))
        {
            var si = idx.SaveForBackward();
            y.WithGradFn("embedding", [weight], [si], g =>
            {
                var gw = Tensor.Zeros([vocab, dim]);
                Rows.IndexAdd(gw.F32Ptr, vocab, g.F32Ptr, n, (long*)si.DataPtr, 1, dim);
                return [gw];
            });
        }
        return y;
    }

    static int[] Unflatten(long flat, int[] shape)
    {
        var idx = new int[shape.Length];
        for (int d = shape.Length - 1; d >= 0; d--) { idx[d] = (int)(flat % shape[d]); flat /= shape[d]; }
        return idx;
    }
}
