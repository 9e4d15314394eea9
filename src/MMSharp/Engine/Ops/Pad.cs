using MMSharp.Engine.Kernels;

namespace MMSharp.Engine;

public static unsafe partial class Ops
{
    /// <summary>
    /// Constant padding of the last dims (torch.nn.functional.pad, mode "constant"): <paramref name="pad"/> lists
    /// (before, after) pairs starting from the last dim, e.g. [left, right, top, bottom]. Negative amounts crop.
    /// Keeps x's dtype.
    /// </summary>
    /// <remarks>y = value everywhere, then y[..., before_i : before_i + s_i, ...] = x. Backward: dx = that slice of g.</remarks>
    public static Tensor Pad(Tensor x, int[] pad, double value = 0)
    {
        if (pad.Length % 2 != 0 || pad.Length / 2 > x.Rank)
            throw new ArgumentException($"Pad: {pad.Length} padding amounts for {x.Describe()}; need pairs for at most {x.Rank} dims");
        int pairs = pad.Length / 2;
        // crop first (negative amounts), as narrow views that carry their own backward
        Tensor src = x;
        for (int p = 0; p < pairs; p++)
        {
            int d = x.Rank - 1 - p;
            int before = Math.Min(0, pad[2 * p]), after = Math.Min(0, pad[2 * p + 1]);
            if (before == 0 && after == 0) continue;
            int len = src.Shape[d] + before + after;
            if (len < 0) throw new ArgumentException($"Pad: amounts {Tensor.ShapeString(pad)} crop dim {d} of {x.Describe()} below zero");
            var n = Narrow(src, d, -before, len);
            if (src != x) src.Dispose();
            src = n;
        }
        try { return PadNonNegative(src, pad, value); }
        finally { if (src != x) src.Dispose(); }
    }

    static Tensor PadNonNegative(Tensor src, int[] pad, double value)
    {
        int pairs = pad.Length / 2;
        int rank = src.Rank;
        var shape = (int[])src.Shape.Clone();
        var starts = new int[rank];
        for (int p = 0; p < pairs; p++)
        {
            int d = rank - 1 - p;
            starts[d] = Math.Max(0, pad[2 * p]);
            shape[d] += starts[d] + Math.Max(0, pad[2 * p + 1]);
        }
        var y = Tensor.Empty(shape, src.DType);
        FillInPlace(y, value);
        var inShape = src.Shape;
        long offset = 0;
        for (int d = 0; d < rank; d++) offset += starts[d] * y.Strides[d];
        CopyPadded(src, y, offset);

        if (Tensor.AnyRequiresGrad(src))
        {
            y.WithGradFn("pad", [src], [], g =>
            {
                var gs = g.Alias();
                for (int d = 0; d < inShape.Length; d++)
                {
                    if (inShape[d] == g.Shape[d]) continue;
                    var n = Narrow(gs, d, starts[d], inShape[d]);
                    gs.Dispose();
                    gs = n;
                }
                return [gs];
            });
        }
        return y;
    }

    /// <summary>Copies src into y starting at element <paramref name="offset"/> of y. Dims after the last padded one
    /// are laid out alike in both, so each run over them is one memcpy; runs are spread over threads.</summary>
    static void CopyPadded(Tensor src, Tensor y, long offset)
    {
        int rank = src.Rank;
        int last = -1; // last dim whose size differs
        for (int d = 0; d < rank; d++) if (src.Shape[d] != y.Shape[d]) last = d;
        using var sc = Contiguous(src);
        long es = src.DType.SizeOf();
        if (last < 0) { Rows.CopyBlocks(sc.DataPtr, 0, y.DataPtr, 0, 1, sc.NumEl * es); return; }
        long runBytes = es;
        for (int d = last + 1; d < rank; d++) runBytes *= src.Shape[d];
        var dstOffsets = Rows.DimOffsets(src.Shape, y.Strides, 0, last + 1);
        long runs = dstOffsets.Length;
        byte* sp = sc.DataPtr, yp = y.DataPtr + offset * es;
        int items = Rows.Items(runs * runBytes, runs);
        Par.For(items, c =>
        {
            long s = runs * c / items, e = runs * (c + 1) / items;
            for (long r = s; r < e; r++) Rows.Copy(sp + r * runBytes, yp + dstOffsets[r] * es, runBytes);
        });
        y.BumpVersion();
    }
}
