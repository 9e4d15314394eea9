using MMSharp.Engine.Kernels;

namespace MMSharp.Engine;

/// <summary>Repetition: repeat_interleave (GQA key/value expansion) and repeat (tiling).</summary>
public static unsafe partial class Ops
{
    /// <summary>Repeats each slice along <paramref name="dim"/> <paramref name="repeats"/> times in place
    /// (torch.repeat_interleave with an int).</summary>
    /// <remarks>
    /// y[o, i * r + k, c] = x[o, i, c] for k &lt; r, with x seen as [outer, n, inner] around dim; each source row
    /// is copied r times with memcpy. GQA: k/v [B, Hkv, T, D] -> [B, Hkv * r, T, D] with dim 1.
    /// Backward: dx[o, i, c] = sum over k of g[o, i * r + k, c], summed in increasing k.
    /// </remarks>
    public static Tensor RepeatInterleave(Tensor x, int repeats, int dim)
    {
        if (repeats < 0) throw new ArgumentException($"RepeatInterleave: repeats must be non-negative, got {repeats}");
        int d = x.NormDim(dim);
        var (outer, n, inner) = Rows.Around(x.Shape, d);
        var shape = (int[])x.Shape.Clone();
        shape[d] = checked(n * repeats);
        var y = Tensor.Empty(shape, x.DType);
        int r = repeats;
        using (var xc = Contiguous(x))
        {
            long rowBytes = inner * x.DType.SizeOf();
            byte* src = xc.DataPtr, dst = y.DataPtr;
            long rows = outer * n;
            int items = Rows.Items(rows * r * rowBytes, rows);
            Par.For(items, c =>
            {
                long s = rows * c / items, e = rows * (c + 1) / items;
                for (long row = s; row < e; row++)
                    for (int k = 0; k < r; k++)
                        Rows.Copy(src + row * rowBytes, dst + (row * r + k) * rowBytes, rowBytes);
            });
        }
        if (Tensor.AnyRequiresGrad(x))
        {
            var inShape = x.Shape;
            y.WithGradFn("repeat_interleave", [x], [], g =>
            {
                var gx = Tensor.Zeros(inShape);
                float* gp = g.F32Ptr, xp = gx.F32Ptr;
                long rows = outer * n;
                int items = Rows.Items(rows * r * inner * 4, rows);
                Par.For(items, c =>
                {
                    long s = rows * c / items, e = rows * (c + 1) / items;
                    for (long row = s; row < e; row++)
                        for (int k = 0; k < r; k++)
                            Rows.AddRow(xp + row * inner, gp + (row * r + k) * inner, inner);
                });
                return [gx];
            });
        }
        return y;
    }

    /// <summary>Tiles <paramref name="x"/>: dim i is repeated <paramref name="repeats"/>[i] times (torch.Tensor.repeat;
    /// extra leading repeats add dims).</summary>
    /// <remarks>
    /// y[..., t * s_i + j, ...] = x[..., j, ...]. Built as view [r0, s0, r1, s1, ...] -> expand -> contiguous copy ->
    /// reshape, so backward is expand's (a sum over the repeats).
    /// </remarks>
    public static Tensor Repeat(Tensor x, params int[] repeats)
    {
        if (repeats.Length < x.Rank)
            throw new ArgumentException($"Repeat: {repeats.Length} repeat counts for {x.Describe()}; need at least {x.Rank}");
        int lead = repeats.Length - x.Rank;
        var view = new int[2 * repeats.Length];
        var expanded = new int[2 * repeats.Length];
        var outShape = new int[repeats.Length];
        for (int i = 0; i < repeats.Length; i++)
        {
            if (repeats[i] < 0) throw new ArgumentException($"Repeat: negative repeat count in {Tensor.ShapeString(repeats)}");
            int s = i < lead ? 1 : x.Shape[i - lead];
            view[2 * i] = 1; view[2 * i + 1] = s;
            expanded[2 * i] = repeats[i]; expanded[2 * i + 1] = s;
            outShape[i] = checked(repeats[i] * s);
        }
        using var v = Reshape(x, view);
        using var e = Expand(v, expanded);
        using var c = Contiguous(e);
        return Reshape(c, outShape);
    }
}
