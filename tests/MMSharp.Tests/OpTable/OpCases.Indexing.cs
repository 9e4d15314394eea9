using MMSharp.Engine;
using static MMSharp.Tests.OpTable.InputSpec;

namespace MMSharp.Tests.OpTable;

/// <summary>
/// Indexing, joining and embedding ops: concat/cat, stack, split, chunk, index_select, gather, scatter_add,
/// masked_scatter, masked_fill, where, embedding, repeat_interleave, repeat, pad, tril/triu, and InternVL's
/// pixel_shuffle composed from views. References are written per output element, straight from the
/// definitions.
/// </summary>
public static class IndexingCases
{
    // ---------------------------------------------------------------- reference helpers

    static RefTensor Build(int[] shape, Func<int[], double> f)
    {
        var r = new RefTensor(shape);
        for (long i = 0; i < r.Data.Length; i++) r.Data[i] = f(RefTensor.Unflatten(i, shape));
        return r;
    }

    static RefTensor Permuted(RefTensor x, params int[] dims)
    {
        var st = x.Strides;
        return x.Gather(dims.Select(d => x.Shape[d]).ToArray(), dims.Select(d => st[d]).ToArray(), 0);
    }

    /// <summary>A copy of <paramref name="a"/> (a shape or an index) with entry <paramref name="dim"/> replaced.</summary>
    static int[] With(int[] a, int dim, int value)
    {
        var s = (int[])a.Clone();
        s[dim] = value;
        return s;
    }

    static RefTensor RefConcat(RefTensor[] xs, int dim)
    {
        int total = xs.Sum(x => x.Shape[dim]);
        return Build(With(xs[0].Shape, dim, total), o =>
        {
            int i = o[dim];
            foreach (var x in xs)
            {
                if (i < x.Shape[dim]) return x[With(o, dim, i)];
                i -= x.Shape[dim];
            }
            throw new InvalidOperationException();
        });
    }

    static RefTensor RefStack(RefTensor[] xs, int dim)
    {
        var shape = xs[0].Shape.ToList();
        shape.Insert(dim, xs.Length);
        return Build(shape.ToArray(), o =>
        {
            var inner = o.ToList();
            inner.RemoveAt(dim);
            return xs[o[dim]][inner.ToArray()];
        });
    }

    static RefTensor RefNarrow(RefTensor x, int dim, int start, int len) =>
        Build(With(x.Shape, dim, len), o => x[With(o, dim, o[dim] + start)]);

    static RefTensor RefIndexSelect(RefTensor x, int dim, RefTensor idx) =>
        Build(With(x.Shape, dim, idx.Data.Length), o => x[With(o, dim, (int)idx.Data[o[dim]])]);

    static RefTensor RefGather(RefTensor x, int dim, RefTensor idx) =>
        Build(idx.Shape, o => x[With(o, dim, (int)idx[o])]);

    static RefTensor RefScatterAdd(RefTensor x, int dim, RefTensor idx, RefTensor src)
    {
        var r = x.Clone();
        for (long p = 0; p < idx.Data.Length; p++)
        {
            var o = RefTensor.Unflatten(p, idx.Shape);
            r[With(o, dim, (int)idx.Data[p])] += src[o];
        }
        return r;
    }

    static RefTensor RefWhere(RefTensor c, RefTensor a, RefTensor b)
    {
        var shape = Ops.BroadcastShape(Ops.BroadcastShape(c.Shape, a.Shape), b.Shape);
        return Build(shape, o => c.GetBroadcast(o) != 0 ? a.GetBroadcast(o) : b.GetBroadcast(o));
    }

    static RefTensor RefMaskedScatter(RefTensor x, RefTensor mask, RefTensor src)
    {
        int k = 0;
        return Build(x.Shape, o => mask.GetBroadcast(o) != 0 ? src.Data[k++] : x[o]);
    }

    static RefTensor RefEmbedding(RefTensor ids, RefTensor w)
    {
        int dim = w.Shape[1];
        return Build([.. ids.Shape, dim], o => w[(int)ids.Data[ids.Flat(o[..^1])], o[^1]]);
    }

    static RefTensor RefRepeatInterleave(RefTensor x, int r, int dim) =>
        Build(With(x.Shape, dim, x.Shape[dim] * r), o => x[With(o, dim, o[dim] / r)]);

    static RefTensor RefRepeat(RefTensor x, int[] reps)
    {
        int lead = reps.Length - x.Rank;
        var shape = reps.Select((r, i) => r * (i < lead ? 1 : x.Shape[i - lead])).ToArray();
        return Build(shape, o => x[o[lead..].Select((v, i) => v % x.Shape[i]).ToArray()]);
    }

    static RefTensor RefPad(RefTensor x, int[] pad, double value)
    {
        var before = new int[x.Rank];
        var shape = (int[])x.Shape.Clone();
        for (int p = 0; p < pad.Length / 2; p++)
        {
            int d = x.Rank - 1 - p;
            before[d] = pad[2 * p];
            shape[d] += pad[2 * p] + pad[2 * p + 1];
        }
        return Build(shape, o =>
        {
            var src = o.Select((v, d) => v - before[d]).ToArray();
            for (int d = 0; d < src.Length; d++) if (src[d] < 0 || src[d] >= x.Shape[d]) return value;
            return x[src];
        });
    }

    static RefTensor RefTriangle(RefTensor x, int diag, bool lower) =>
        Build(x.Shape, o =>
        {
            int i = o[^2], j = o[^1];
            return (lower ? j - i <= diag : j - i >= diag) ? x[o] : 0;
        });

    /// <summary>InternVL pixel_shuffle (v2, scale 0.5) closed form from the spec: out[n, i, j, m*2C + k*C + d] =
    /// x[n, 2i + m, 2j + k, d].</summary>
    static RefTensor RefPixelShuffle(RefTensor x)
    {
        int c = x.Shape[3];
        return Build([x.Shape[0], x.Shape[1] / 2, x.Shape[2] / 2, 4 * c], o =>
        {
            int ch = o[3], m = ch / (2 * c), k = ch % (2 * c) / c, d = ch % c;
            return x[o[0], 2 * o[1] + m, 2 * o[2] + k, d];
        });
    }

    /// <summary>InternVL's pixel_shuffle composed of engine views, exactly as in modeling_internvl_chat.py.</summary>
    static Tensor PixelShuffle(Tensor x, double scale = 0.5)
    {
        int n = x.Shape[0], w = x.Shape[1], h = x.Shape[2], c = x.Shape[3];
        using var a = x.View(n, w, (int)(h * scale), (int)(c / scale));                      // N, W, H*s, C/s
        using var b = a.Permute(0, 2, 1, 3);                                                 // N, H*s, W, C/s
        using var bc = b.Contiguous();
        using var v = bc.View(n, (int)(h * scale), (int)(w * scale), (int)(c / (scale * scale))); // N, H*s, W*s, C/s^2
        using var p = v.Permute(0, 2, 1, 3);                                                 // N, W*s, H*s, C/s^2
        return p.Contiguous();
    }

    static Tensor Join(Tensor[] pieces, int dim, bool reverse)
    {
        var list = reverse ? pieces.Reverse().ToArray() : pieces;
        var r = Ops.Concat(list, dim);
        foreach (var p in pieces) p.Dispose();
        return r;
    }

    // ---------------------------------------------------------------- rows

    [OpCases]
    public static IEnumerable<OpCase> Joining()
    {
        yield return new OpCase("concat", [F(2, 3), F(2, 5), F(2, 1)], x => Ops.Concat(x, 1), r => RefConcat(r, 1));
        yield return new OpCase("concat", [F(1, 7), F(4, 7)], x => Ops.Concat(x, 0), r => RefConcat(r, 0));
        yield return new OpCase("concat", [F(2, 3, 17), F(2, 1, 17), F(2, 4, 17)], x => Ops.Concat(x, 1), r => RefConcat(r, 1));
        yield return new OpCase("concat", [F(3, 6 * 16 + 7), F(3, 7)], x => Ops.Concat(x, -1), r => RefConcat(r, 1));
        yield return new OpCase("concat", [F(2, 2, 33), F(2, 2, 1)], x => Ops.Concat(x, 2), r => RefConcat(r, 2));
        yield return new OpCase("concat", [F(5, 3), F(3, 2)], x => { using var t = x[0].Transpose(0, 1); return Ops.Concat([t, x[1]], 1); },
            r => RefConcat([Permuted(r[0], 1, 0), r[1]], 1)) { Variant = "non-contiguous" };
        yield return new OpCase("cat", [F(2, 33), Const(2, 33)], x => Ops.Cat(x, 0), r => RefConcat(r, 0)) { Variant = "one constant" };
        yield return new OpCase("concat", [F(3, 4), F(3, 4)], x => Ops.Concat([x[0], x[1], x[0]], 0), r => RefConcat([r[0], r[1], r[0]], 0)) { Variant = "repeated input" };

        yield return new OpCase("stack", [F(3, 4), F(3, 4), F(3, 4)], x => Ops.Stack(x, 0), r => RefStack(r, 0));
        yield return new OpCase("stack", [F(2, 17), F(2, 17)], x => Ops.Stack(x, 1), r => RefStack(r, 1));
        yield return new OpCase("stack", [F(3, 7), F(3, 7)], x => Ops.Stack(x, -1), r => RefStack(r, 2));
        yield return new OpCase("stack", [F(1), F(1), F(1)], x => Ops.Stack(x, 0), r => RefStack(r, 0));
        yield return new OpCase("stack", [F(4, 3), F(3, 4)], x => { using var t = x[0].Transpose(0, 1); return Ops.Stack([t, x[1]], 1); },
            r => RefStack([Permuted(r[0], 1, 0), r[1]], 1)) { Variant = "non-contiguous" };

        yield return new OpCase("split", [F(3, 7)], x => Join(x[0].Split([2, 3, 2], 1), 1, reverse: true),
            r => RefConcat([RefNarrow(r[0], 1, 5, 2), RefNarrow(r[0], 1, 2, 3), RefNarrow(r[0], 1, 0, 2)], 1));
        yield return new OpCase("split", [F(17, 2)], x => Join(x[0].Split(5, 0), 0, reverse: true),
            r => RefConcat([RefNarrow(r[0], 0, 15, 2), RefNarrow(r[0], 0, 10, 5), RefNarrow(r[0], 0, 5, 5), RefNarrow(r[0], 0, 0, 5)], 0)) { Variant = "int size" };
        yield return new OpCase("chunk", [F(7, 5)], x => Join(x[0].Chunk(3, 0), 0, reverse: true),
            r => RefConcat([RefNarrow(r[0], 0, 6, 1), RefNarrow(r[0], 0, 3, 3), RefNarrow(r[0], 0, 0, 3)], 0));
        yield return new OpCase("chunk", [F(2, 3, 33)], x => { var p = x[0].Chunk(2, 2); var y = p[1].Clone(); foreach (var t in p) t.Dispose(); return y; },
            r => RefNarrow(r[0], 2, 17, 16)) { Variant = "last piece" };
    }

    [OpCases]
    public static IEnumerable<OpCase> Selecting()
    {
        yield return new OpCase("index_select", [F(5, 7), Idx(5, 9)], x => Ops.IndexSelect(x[0], 0, x[1]), r => RefIndexSelect(r[0], 0, r[1]));
        yield return new OpCase("index_select", [F(3, 17), Idx(17, 20)], x => Ops.IndexSelect(x[0], 1, x[1]), r => RefIndexSelect(r[0], 1, r[1]));
        yield return new OpCase("index_select", [F(2, 6, 33), Idx(6, 4)], x => Ops.IndexSelect(x[0], 1, x[1]), r => RefIndexSelect(r[0], 1, r[1]));
        yield return new OpCase("index_select", [F(4, 6 * 16 + 7), Idx(6 * 16 + 7, 12)], x => Ops.IndexSelect(x[0], -1, x[1]), r => RefIndexSelect(r[0], 1, r[1]));
        yield return new OpCase("index_select", [F(2, 3, 4), Idx(2, 7)], x => Ops.IndexSelect(x[0], 2, x[1]), r => RefIndexSelect(r[0], 2, r[1])) { Variant = "heavy duplicates" };
        yield return new OpCase("index_select", [F(1, 1), Idx(1, 1)], x => Ops.IndexSelect(x[0], 0, x[1]), r => RefIndexSelect(r[0], 0, r[1]));
        yield return new OpCase("index_select", [F(6, 5), Idx(6, 8)], x => { using var i = x[1].To(DType.I32); return Ops.IndexSelect(x[0], 0, i); },
            r => RefIndexSelect(r[0], 0, r[1])) { Variant = "i32 index" };
        yield return new OpCase("index_select", [F(7, 5), Idx(7, 6)], x => { using var t = x[0].Transpose(0, 1); return Ops.IndexSelect(t, 1, x[1]); },
            r => RefIndexSelect(Permuted(r[0], 1, 0), 1, r[1])) { Variant = "non-contiguous" };

        yield return new OpCase("gather", [F(4, 6), Idx(6, 4, 3)], x => Ops.Gather(x[0], 1, x[1]), r => RefGather(r[0], 1, r[1]));
        yield return new OpCase("gather", [F(4, 6), Idx(4, 7, 6)], x => Ops.Gather(x[0], 0, x[1]), r => RefGather(r[0], 0, r[1]));
        yield return new OpCase("gather", [F(3, 5, 17), Idx(17, 3, 5, 9)], x => Ops.Gather(x[0], -1, x[1]), r => RefGather(r[0], 2, r[1]));
        yield return new OpCase("gather", [F(3, 5, 7), Idx(5, 2, 8, 7)], x => Ops.Gather(x[0], 1, x[1]), r => RefGather(r[0], 1, r[1])) { Variant = "index smaller outside dim" };
        yield return new OpCase("gather", [F(2, 6 * 16 + 7), Idx(6 * 16 + 7, 2, 1)], x => Ops.Gather(x[0], 1, x[1]), r => RefGather(r[0], 1, r[1])) { Variant = "target pick" };
        yield return new OpCase("gather", [F(3, 9), Idx(9, 3, 4)], x => { using var i = x[1].To(DType.I32); return Ops.Gather(x[0], 1, i); },
            r => RefGather(r[0], 1, r[1])) { Variant = "i32 index" };
        yield return new OpCase("gather", [F(6, 4), Idx(6, 3, 6)], x => { using var t = x[0].Transpose(0, 1); return Ops.Gather(t, 1, x[1]); },
            r => RefGather(Permuted(r[0], 1, 0), 1, r[1])) { Variant = "non-contiguous" };

        yield return new OpCase("scatter_add", [F(5, 4), Idx(5, 6, 4), F(6, 4)], x => Ops.ScatterAdd(x[0], 0, x[1], x[2]), r => RefScatterAdd(r[0], 0, r[1], r[2]));
        yield return new OpCase("scatter_add", [F(3, 7), Idx(7, 3, 9), F(3, 10)], x => Ops.ScatterAdd(x[0], 1, x[1], x[2]), r => RefScatterAdd(r[0], 1, r[1], r[2])) { Variant = "src larger" };
        yield return new OpCase("scatter_add", [F(2, 4, 17), Idx(17, 2, 3, 17), F(2, 4, 17)], x => Ops.ScatterAdd(x[0], -1, x[1], x[2]), r => RefScatterAdd(r[0], 2, r[1], r[2]));
        yield return new OpCase("scatter_add", [F(2, 5, 3), Idx(2, 2, 7, 3), F(2, 7, 3)], x => Ops.ScatterAdd(x[0], 1, x[1], x[2]), r => RefScatterAdd(r[0], 1, r[1], r[2])) { Variant = "heavy duplicates" };
        yield return new OpCase("scatter_add", [Const(4, 3), Idx(4, 5, 3), F(5, 3)], x => Ops.ScatterAdd(x[0], 0, x[1], x[2]), r => RefScatterAdd(r[0], 0, r[1], r[2])) { Variant = "src only" };
        yield return new OpCase("scatter_add", [F(3, 6), Idx(6, 3, 4), F(4, 3)], x => { using var t = x[2].Transpose(0, 1); return Ops.ScatterAdd(x[0], 1, x[1], t); },
            r => RefScatterAdd(r[0], 1, r[1], Permuted(r[2], 1, 0))) { Variant = "non-contiguous src" };
    }

    [OpCases]
    public static IEnumerable<OpCase> Masking()
    {
        // image-embedding placement: text [B, T, C], mask [B, T, 1], vision tokens [N, C] with N >= selected rows
        yield return new OpCase("masked_scatter", [F(2, 5, 7), Mask(0.5, 2, 5, 1), F(10, 7)], x => Ops.MaskedScatter(x[0], x[1], x[2]), r => RefMaskedScatter(r[0], r[1], r[2])) { Variant = "token rows" };
        yield return new OpCase("masked_scatter", [F(2, 5, 7), Mask(0.5, 2, 5, 1), F(10, 7)], x => { using var m = x[1].Expand(2, 5, 7); return Ops.MaskedScatter(x[0], m, x[2]); },
            r => RefMaskedScatter(r[0], r[1], r[2])) { Variant = "expanded mask view", Seed = 2 };
        yield return new OpCase("masked_scatter", [F(1, 17, 33), Mask(0.5, 1, 17, 1), F(17, 33)], x => Ops.MaskedScatter(x[0], x[1], x[2]), r => RefMaskedScatter(r[0], r[1], r[2])) { Variant = "token rows" };
        yield return new OpCase("masked_scatter", [F(3, 17), Mask(0.3, 3, 17), F(51)], x => Ops.MaskedScatter(x[0], x[1], x[2]), r => RefMaskedScatter(r[0], r[1], r[2]));
        yield return new OpCase("masked_scatter", [F(4, 33), Mask(0.9, 33), F(4, 33)], x => Ops.MaskedScatter(x[0], x[1], x[2]), r => RefMaskedScatter(r[0], r[1], r[2])) { Variant = "dense broadcast" };
        yield return new OpCase("masked_scatter", [F(2, 6 * 16 + 7), Mask(0.1, 2, 6 * 16 + 7), F(40)], x => Ops.MaskedScatter(x[0], x[1], x[2]), r => RefMaskedScatter(r[0], r[1], r[2])) { Variant = "sparse" };
        yield return new OpCase("masked_scatter", [F(3, 7), Mask(0.0, 3, 7), F(5)], x => Ops.MaskedScatter(x[0], x[1], x[2]), r => RefMaskedScatter(r[0], r[1], r[2])) { Variant = "empty mask" };
        yield return new OpCase("masked_scatter", [F(3, 7), Mask(1.0, 3, 7), F(21)], x => Ops.MaskedScatter(x[0], x[1], x[2]), r => RefMaskedScatter(r[0], r[1], r[2])) { Variant = "full mask" };
        yield return new OpCase("masked_scatter", [F(7, 3), Mask(0.5, 3, 7), F(30)], x => { using var t = x[0].Transpose(0, 1); return Ops.MaskedScatter(t, x[1], x[2]); },
            r => RefMaskedScatter(Permuted(r[0], 1, 0), r[1], r[2])) { Variant = "non-contiguous" };

        yield return new OpCase("masked_fill", [F(3, 17), Mask(0.5, 3, 17)], x => Ops.MaskedFill(x[0], x[1], -3.5f), r => RefWhere(r[1], new RefTensor([1], [-3.5]), r[0]));
        yield return new OpCase("masked_fill", [F(4, 7), Mask(0.4, 1, 7)], x => Ops.MaskedFill(x[0], x[1], 2f), r => RefWhere(r[1], new RefTensor([1], [2.0]), r[0])) { Variant = "broadcast row" };
        yield return new OpCase("masked_fill", [F(2, 3, 6 * 16 + 7), Mask(0.7, 2, 1, 1)], x => Ops.MaskedFill(x[0], x[1], 0f), r => RefWhere(r[1], new RefTensor([1], [0.0]), r[0])) { Variant = "broadcast batch" };
        yield return new OpCase("masked_fill", [F(5, 1), Mask(0.5, 5, 1)], x => Ops.MaskedFill(x[0], x[1], 1f), r => RefWhere(r[1], new RefTensor([1], [1.0]), r[0]));

        yield return new OpCase("where", [Mask(0.5, 4, 7), F(4, 7), F(4, 7)], x => Ops.Where(x[0], x[1], x[2]), r => RefWhere(r[0], r[1], r[2]));
        yield return new OpCase("where", [Mask(0.5, 4, 17), F(1, 17), F(4, 1)], x => Ops.Where(x[0], x[1], x[2]), r => RefWhere(r[0], r[1], r[2])) { Variant = "broadcast operands" };
        yield return new OpCase("where", [Mask(0.3, 33), F(2, 33), Const(2, 33)], x => Ops.Where(x[0], x[1], x[2]), r => RefWhere(r[0], r[1], r[2])) { Variant = "broadcast cond" };
        yield return new OpCase("where", [Mask(0.6, 3, 6 * 16 + 7), F(3, 6 * 16 + 7)], x => Ops.Where(x[0], x[1], -1f), r => RefWhere(r[0], r[1], new RefTensor([1], [-1.0]))) { Variant = "scalar b" };
        yield return new OpCase("where", [Mask(0.5, 1), F(1), F(1)], x => Ops.Where(x[0], x[1], x[2]), r => RefWhere(r[0], r[1], r[2]));
        yield return new OpCase("where", [Mask(0.5, 5, 3), F(3, 5), F(5, 3)], x => { using var t = x[1].Transpose(0, 1); return Ops.Where(x[0], t, x[2]); },
            r => RefWhere(r[0], Permuted(r[1], 1, 0), r[2])) { Variant = "non-contiguous" };
        yield return new OpCase("where", [F(5, 5)], x => { using var m = Ops.TrilMask(5, 5); return Ops.Where(m, x[0], -100f); },
            r => Build([5, 5], o => o[1] <= o[0] ? r[0][o] : -100)) { Variant = "causal tril mask" };
    }

    [OpCases]
    public static IEnumerable<OpCase> Embedding()
    {
        yield return new OpCase("embedding", [Idx(10, 2, 7), F(10, 17)], x => Ops.Embedding(x[0], x[1]), r => RefEmbedding(r[0], r[1]));
        yield return new OpCase("embedding", [Idx(5, 9), F(5, 6 * 16 + 7)], x => Ops.Embedding(x[0], x[1]), r => RefEmbedding(r[0], r[1]));
        yield return new OpCase("embedding", [Idx(3, 1), F(3, 1)], x => Ops.Embedding(x[0], x[1]), r => RefEmbedding(r[0], r[1]));
        yield return new OpCase("embedding", [Idx(9, 4, 2), F(9, 7)], x => { using var i = x[0].To(DType.I32); return Ops.Embedding(i, x[1]); },
            r => RefEmbedding(r[0], r[1])) { Variant = "i32 ids" };
        yield return new OpCase("embedding", [Idx(4, 2, 3, 5), F(6, 33)], x => Ops.Embedding(x[0], x[1]), r => RefEmbedding(r[0], r[1])) { Variant = "rows unused" };
        yield return new OpCase("embedding", [Idx(11, 3, 5), BF16(11, 33)], x => Ops.Embedding(x[0], x[1]), r => RefEmbedding(r[0], r[1])) { Variant = "bf16 weight", CheckGrad = false };
        yield return new OpCase("embedding", [Idx(8, 13), BF16(8, 6 * 16 + 7)], x => Ops.Embedding(x[0], x[1]), r => RefEmbedding(r[0], r[1])) { Variant = "bf16 weight", CheckGrad = false };
        yield return new OpCase("embedding", [Idx(10, 6), F(17, 10)], x => { using var t = x[1].Transpose(0, 1); return Ops.Embedding(x[0], t); },
            r => RefEmbedding(r[0], Permuted(r[1], 1, 0))) { Variant = "non-contiguous weight" };
    }

    [OpCases]
    public static IEnumerable<OpCase> Shaping()
    {
        yield return new OpCase("repeat_interleave", [F(2, 3, 5, 7)], x => x[0].RepeatInterleave(2, 1), r => RefRepeatInterleave(r[0], 2, 1)) { Variant = "gqa" };
        yield return new OpCase("repeat_interleave", [F(7)], x => x[0].RepeatInterleave(3, 0), r => RefRepeatInterleave(r[0], 3, 0));
        yield return new OpCase("repeat_interleave", [F(3, 17)], x => x[0].RepeatInterleave(2, -1), r => RefRepeatInterleave(r[0], 2, 1));
        yield return new OpCase("repeat_interleave", [F(4, 33)], x => x[0].RepeatInterleave(1, 0), r => RefRepeatInterleave(r[0], 1, 0));
        yield return new OpCase("repeat_interleave", [F(5, 2, 3)], x => { using var t = x[0].Transpose(0, 2); return t.RepeatInterleave(2, 1); },
            r => RefRepeatInterleave(Permuted(r[0], 2, 1, 0), 2, 1)) { Variant = "non-contiguous" };

        yield return new OpCase("repeat", [F(2, 3)], x => x[0].Repeat(2, 1), r => RefRepeat(r[0], [2, 1]));
        yield return new OpCase("repeat", [F(3, 7)], x => x[0].Repeat(1, 3), r => RefRepeat(r[0], [1, 3]));
        yield return new OpCase("repeat", [F(2, 3)], x => x[0].Repeat(2, 2, 2), r => RefRepeat(r[0], [2, 2, 2])) { Variant = "new leading dim" };
        yield return new OpCase("repeat", [F(17)], x => x[0].Repeat(3), r => RefRepeat(r[0], [3]));

        yield return new OpCase("pad", [F(3, 7)], x => x[0].Pad([1, 2]), r => RefPad(r[0], [1, 2], 0));
        yield return new OpCase("pad", [F(3, 17)], x => x[0].Pad([0, 3, 2, 1], -1.5), r => RefPad(r[0], [0, 3, 2, 1], -1.5));
        yield return new OpCase("pad", [F(2, 3, 6 * 16 + 7)], x => x[0].Pad([2, 0, 1, 1]), r => RefPad(r[0], [2, 0, 1, 1], 0));
        yield return new OpCase("pad", [F(2, 1, 3)], x => x[0].Pad([0, 0, 0, 0, 1, 1]), r => RefPad(r[0], [0, 0, 0, 0, 1, 1], 0)) { Variant = "first dim" };
        yield return new OpCase("pad", [F(4, 9)], x => x[0].Pad([-1, 2, 1, -2]), r => RefPad(RefNarrow(RefNarrow(r[0], 1, 1, 8), 0, 0, 2), [0, 2, 1, 0], 0)) { Variant = "negative crops" };
        yield return new OpCase("pad", [F(5, 3)], x => { using var t = x[0].Transpose(0, 1); return t.Pad([1, 1]); },
            r => RefPad(Permuted(r[0], 1, 0), [1, 1], 0)) { Variant = "non-contiguous" };

        yield return new OpCase("tril", [F(4, 5)], x => x[0].Tril(), r => RefTriangle(r[0], 0, true));
        yield return new OpCase("tril", [F(2, 3, 17)], x => x[0].Tril(2), r => RefTriangle(r[0], 2, true));
        yield return new OpCase("tril", [F(7, 3)], x => x[0].Tril(-1), r => RefTriangle(r[0], -1, true));
        yield return new OpCase("triu", [F(4, 5)], x => x[0].Triu(1), r => RefTriangle(r[0], 1, false));
        yield return new OpCase("triu", [F(2, 6, 33)], x => x[0].Triu(-2), r => RefTriangle(r[0], -2, false));
        yield return new OpCase("triu", [F(6, 4)], x => { using var t = x[0].Transpose(0, 1); return t.Triu(); },
            r => RefTriangle(Permuted(r[0], 1, 0), 0, false)) { Variant = "non-contiguous" };

        // InternVL pixel_shuffle (spec 2.1) built from Reshape/Permute/Contiguous must equal the closed form
        yield return new OpCase("pixel_shuffle_composed", [F(2, 4, 4, 3)], x => PixelShuffle(x[0]), r => RefPixelShuffle(r[0]));
        yield return new OpCase("pixel_shuffle_composed", [F(1, 6, 4, 5)], x => PixelShuffle(x[0]), r => RefPixelShuffle(r[0])) { Variant = "non-square" };
        yield return new OpCase("pixel_shuffle_composed", [F(1, 17, 6)], x => { using var v = x[0].Narrow(1, 1, 16).Reshape(1, 4, 4, 6); return PixelShuffle(v); },
            r => RefPixelShuffle(new RefTensor([1, 4, 4, 6], RefNarrow(r[0], 1, 1, 16).Data))) { Variant = "after dropping CLS" };
    }
}
