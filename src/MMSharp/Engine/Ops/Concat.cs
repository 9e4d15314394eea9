using MMSharp.Engine.Kernels;

namespace MMSharp.Engine;

/// <summary>Joining and splitting: concat, stack, split, chunk.</summary>
public static unsafe partial class Ops
{
    /// <summary>
    /// Joins tensors of one dtype along <paramref name="dim"/>; all other dims must match.
    /// </summary>
    /// <remarks>
    /// y[..., off_k + i, ...] = xs[k][..., i, ...] with off_k = sum of the sizes of xs[0..k) along dim.
    /// Each input contributes one contiguous block per outer index, copied with memcpy.
    /// Backward: gradient k is the slice [off_k, off_k + size_k) of g.
    /// </remarks>
    public static Tensor Concat(Tensor[] xs, int dim)
    {
        if (xs.Length == 0) throw new ArgumentException("Concat: no tensors to join");
        var first = xs[0];
        if (first.Rank == 0) throw new ArgumentException($"Concat: tensor 0 ({first.Describe()}) is a scalar; zero-dim tensors cannot be joined");
        int d = first.NormDim(dim);
        var shape = (int[])first.Shape.Clone();
        var sizes = new int[xs.Length];
        long total = 0;
        for (int k = 0; k < xs.Length; k++)
        {
            var x = xs[k];
            if (x.DType != first.DType)
                throw new ArgumentException($"Concat: tensor {k} ({x.Describe()}) has dtype {x.DType}, tensor 0 ({first.Describe()}) has {first.DType}; convert with To() first");
            bool ok = x.Rank == first.Rank;
            for (int i = 0; ok && i < x.Rank; i++) ok = i == d || x.Shape[i] == first.Shape[i];
            if (!ok)
                throw new ArgumentException($"Concat along dim {d}: tensor {k} ({x.Describe()}) does not match tensor 0 ({first.Describe()}) outside dim {d}");
            sizes[k] = x.Shape[d];
            total += sizes[k];
        }
        if (total > int.MaxValue) throw new ArgumentException($"Concat: joined dim {d} would have {total} elements");
        shape[d] = (int)total;

        var y = Tensor.Empty(shape, first.DType);
        var (outer, _, inner) = Rows.Around(shape, d);
        long es = first.DType.SizeOf();
        long outRow = total * inner * es;
        long start = 0;
        for (int k = 0; k < xs.Length; k++)
        {
            var x = xs[k];
            long block = sizes[k] * inner * es;
            if (x.IsContiguous) Rows.CopyBlocks(x.DataPtr, block, y.DataPtr + start * inner * es, outRow, outer, block);
            else
            {
                // strided input: copy straight into its slot instead of making a contiguous copy first
                var slotShape = (int[])shape.Clone();
                slotShape[d] = sizes[k];
                using var slot = y.ViewOf(slotShape, y.Strides, start * inner);
                CopyInto(x, slot);
            }
            start += sizes[k];
        }

        if (Tensor.AnyRequiresGrad(xs))
        {
            var need = xs.Select(x => x.RequiresGrad).ToArray();
            y.WithGradFn("concat", (Tensor[])xs.Clone(), [], g =>
            {
                var grads = new Tensor?[sizes.Length];
                int s = 0;
                for (int k = 0; k < sizes.Length; k++)
                {
                    if (need[k]) grads[k] = Narrow(g, d, s, sizes[k]);
                    s += sizes[k];
                }
                return grads;
            });
        }
        return y;
    }

    /// <summary>Same as <see cref="Concat"/> (the PyTorch name).</summary>
    public static Tensor Cat(Tensor[] xs, int dim) => Concat(xs, dim);

    /// <summary>Joins equally shaped tensors along a new dimension <paramref name="dim"/> (0..rank).</summary>
    /// <remarks>y[..., k, ...] = xs[k]. Backward: gradient k is g selected at k along dim.</remarks>
    public static Tensor Stack(Tensor[] xs, int dim)
    {
        if (xs.Length == 0) throw new ArgumentException("Stack: no tensors to join");
        int rank = xs[0].Rank;
        int d = dim < 0 ? dim + rank + 1 : dim;
        if (d < 0 || d > rank) throw new ArgumentOutOfRangeException(nameof(dim), $"Stack: dim {dim} out of range for {rank}-d tensors");
        for (int k = 1; k < xs.Length; k++)
            if (!xs[k].Shape.AsSpan().SequenceEqual(xs[0].Shape))
                throw new ArgumentException($"Stack: tensor {k} ({xs[k].Describe()}) has a different shape from tensor 0 ({xs[0].Describe()})");
        var expanded = new Tensor[xs.Length];
        try
        {
            for (int k = 0; k < xs.Length; k++) expanded[k] = Unsqueeze(xs[k], d);
            return Concat(expanded, d);
        }
        finally
        {
            foreach (var e in expanded) e?.Dispose();
        }
    }

    /// <summary>Pieces of <paramref name="sizes"/>[k] elements along <paramref name="dim"/> (views; the sizes must add
    /// up to the dim).</summary>
    public static Tensor[] Split(Tensor x, int[] sizes, int dim)
    {
        int d = x.NormDim(dim);
        long sum = 0;
        foreach (var s in sizes)
        {
            if (s < 0) throw new ArgumentException($"Split: negative size in {Tensor.ShapeString(sizes)}");
            sum += s;
        }
        if (sum != x.Shape[d])
            throw new ArgumentException($"Split: sizes {Tensor.ShapeString(sizes)} add up to {sum}, but dim {d} of {x.Describe()} has {x.Shape[d]}");
        var r = new Tensor[sizes.Length];
        int start = 0;
        for (int k = 0; k < sizes.Length; k++) { r[k] = Narrow(x, d, start, sizes[k]); start += sizes[k]; }
        return r;
    }

    /// <summary>Pieces of <paramref name="splitSize"/> elements along <paramref name="dim"/>, the last one possibly
    /// shorter (views; torch.split with an int).</summary>
    public static Tensor[] Split(Tensor x, int splitSize, int dim)
    {
        int d = x.NormDim(dim);
        if (splitSize <= 0) throw new ArgumentException($"Split: split size must be positive, got {splitSize}");
        int n = x.Shape[d];
        int count = Math.Max(1, (n + splitSize - 1) / splitSize);
        var sizes = new int[count];
        for (int k = 0; k < count; k++) sizes[k] = Math.Min(splitSize, n - k * splitSize);
        return Split(x, sizes, d);
    }

    /// <summary>Splits into <paramref name="chunks"/> views of ceil(size / chunks) elements along <paramref name="dim"/>
    /// (torch.chunk: the last may be shorter, and fewer than <paramref name="chunks"/> may come back).</summary>
    public static Tensor[] Chunk(Tensor x, int chunks, int dim)
    {
        if (chunks <= 0) throw new ArgumentException($"Chunk: number of chunks must be positive, got {chunks}");
        int d = x.NormDim(dim);
        int n = x.Shape[d];
        int each = Math.Max(1, (n + chunks - 1) / chunks);
        return Split(x, each, d);
    }
}
