using MMSharp.Engine;
using MMSharp.Engine.Autograd;

namespace MMSharp.Tests.Indexing;

/// <summary>
/// Inputs large enough to take the parallel paths (the op table's rows are small). Results are compared
/// element by element with plain loops; sums of duplicates must equal, bit for bit, a serial sum in index
/// order, which is what makes them independent of the thread count.
/// </summary>
public sealed class IndexingLargeTests
{
    static Tensor Rand(ulong seed, params int[] shape) => Tensor.RandN(shape, seed);

    static Tensor Ids(ulong seed, int hi, params int[] shape)
    {
        var rng = new Rng(seed);
        var data = new long[Tensor.Product(shape)];
        for (int i = 0; i < data.Length; i++) data[i] = rng.NextInt(hi);
        return Tensor.FromArray(data, shape);
    }

    static Tensor Mask(ulong seed, double p, params int[] shape)
    {
        var rng = new Rng(seed);
        var data = new bool[Tensor.Product(shape)];
        for (int i = 0; i < data.Length; i++) data[i] = rng.NextDouble() < p;
        return Tensor.FromArray(data, shape);
    }

    [Fact]
    public void Concat_LargeInputs_CopiesEveryBlock()
    {
        using var a = Rand(1, 64, 1500);
        using var b = Rand(2, 64, 700);
        a.RequiresGrad = true; b.RequiresGrad = true;
        using var y = Ops.Concat([a, b], 1);
        float[] av = a.ToFloatArray(), bv = b.ToFloatArray(), yv = y.ToFloatArray();
        for (int r = 0; r < 64; r++)
        {
            for (int c = 0; c < 1500; c++) Assert.Equal(av[r * 1500 + c], yv[r * 2200 + c]);
            for (int c = 0; c < 700; c++) Assert.Equal(bv[r * 700 + c], yv[r * 2200 + 1500 + c]);
        }
        using var g = Rand(3, 64, 2200);
        y.Backward(g);
        var gv = g.ToFloatArray();
        float[] ga = a.Grad!.ToFloatArray(), gb = b.Grad!.ToFloatArray();
        for (int r = 0; r < 64; r++)
        {
            Assert.Equal(gv[r * 2200 + 3], ga[r * 1500 + 3]);
            Assert.Equal(gv[r * 2200 + 1500 + 699], gb[r * 700 + 699]);
        }

        using var z = Ops.Concat([a, b, a], 1);
        using var w = Ops.Concat([a, a], 0); // one long run per input
        Assert.Equal(av, w.ToFloatArray().AsSpan(0, av.Length).ToArray());
        Assert.Equal(av, w.ToFloatArray().AsSpan(av.Length).ToArray());
    }

    [Fact]
    public void IndexSelect_LargeWithDuplicates_BackwardSumsInIndexOrder()
    {
        const int n = 300, inner = 257, m = 2000;
        using var x = Rand(4, 3, n, inner);
        x.RequiresGrad = true;
        using var idx = Ids(5, n, m);
        using var y = Ops.IndexSelect(x, 1, idx);
        var iv = idx.ToLongArray();
        float[] xv = x.ToFloatArray(), yv = y.ToFloatArray();
        for (int o = 0; o < 3; o++)
            for (int i = 0; i < m; i += 7)
                for (int c = 0; c < inner; c += 13)
                    Assert.Equal(xv[(o * n + iv[i]) * inner + c], yv[((long)o * m + i) * inner + c]);

        using var g = Rand(6, 3, m, inner);
        y.Backward(g);
        var gv = g.ToFloatArray();
        var expect = new float[3 * n * inner];
        for (int o = 0; o < 3; o++)
            for (int i = 0; i < m; i++)
                for (int c = 0; c < inner; c++)
                    expect[(o * n + iv[i]) * inner + c] += gv[((long)o * m + i) * inner + c];
        Assert.Equal(expect, x.Grad!.ToFloatArray());
    }

    [Fact]
    public void Embedding_LargeBackward_IsDeterministicAndTouchesOnlyUsedRows()
    {
        const int vocab = 60, dim = 1000, n = 3000;
        using var ids = Ids(7, 50, 3, n / 3); // rows 50..59 never used
        var iv = ids.ToLongArray();
        using var g = Rand(8, 3, n / 3, dim);
        var gv = g.ToFloatArray();
        var expect = new float[vocab * dim];
        for (int p = 0; p < n; p++)
            for (int c = 0; c < dim; c++) expect[iv[p] * dim + c] += gv[(long)p * dim + c];

        for (int run = 0; run < 2; run++)
        {
            using var w = Rand(9, vocab, dim);
            w.RequiresGrad = true;
            using var y = Ops.Embedding(ids, w);
            Assert.Equal(new[] { 3, n / 3, dim }, y.Shape);
            y.Backward(g);
            var gw = w.Grad!.ToFloatArray();
            Assert.Equal(expect, gw);
            for (int r = 50; r < vocab; r++) Assert.All(gw.AsSpan(r * dim, dim).ToArray(), v => Assert.Equal(0f, v));
        }
    }

    [Fact]
    public void Embedding_LargeBF16_WidensRows()
    {
        const int vocab = 100, dim = 6 * 16 + 7, n = 4000;
        using var wf = Rand(10, vocab, dim);
        using var w = wf.To(DType.BF16);
        using var ids = Ids(11, vocab, n);
        using var y = Ops.Embedding(ids, w);
        var iv = ids.ToLongArray();
        var wv = w.ToFloatArray();
        var yv = y.ToFloatArray();
        for (int p = 0; p < n; p++)
            for (int c = 0; c < dim; c++) Assert.Equal(wv[iv[p] * dim + c], yv[(long)p * dim + c]);
    }

    [Fact]
    public void MaskedScatter_LargeImageTokens_PlacesRowsInOrder()
    {
        const int B = 4, T = 2048, C = 64;
        using var x = Rand(12, B, T, C);
        using var mask = Mask(13, 0.3, B, T, 1);
        var mv = mask.ToFloatArray();
        int rows = mv.Count(v => v != 0);
        using var src = Rand(14, rows + 3, C);
        x.RequiresGrad = true; src.RequiresGrad = true;
        using var y = Ops.MaskedScatter(x, mask, src);
        float[] xv = x.ToFloatArray(), sv = src.ToFloatArray(), yv = y.ToFloatArray();
        int k = 0;
        for (int t = 0; t < B * T; t++)
        {
            bool on = mv[t] != 0;
            for (int c = 0; c < C; c++) Assert.Equal(on ? sv[k * C + c] : xv[t * C + c], yv[t * C + c]);
            if (on) k++;
        }

        using var g = Rand(15, B, T, C);
        y.Backward(g);
        float[] gv = g.ToFloatArray(), gx = x.Grad!.ToFloatArray(), gs = src.Grad!.ToFloatArray();
        k = 0;
        for (int t = 0; t < B * T; t++)
        {
            bool on = mv[t] != 0;
            for (int c = 0; c < C; c++)
            {
                Assert.Equal(on ? 0f : gv[t * C + c], gx[t * C + c]);
                if (on) Assert.Equal(gv[t * C + c], gs[k * C + c]);
            }
            if (on) k++;
        }
        Assert.All(gs.AsSpan(rows * C).ToArray(), v => Assert.Equal(0f, v));
    }

    [Fact]
    public void ScatterAdd_LargeWithDuplicates_SumsInIndexOrder()
    {
        const int n = 50, m = 400, cols = 2000;
        using var x = Rand(16, n, cols);
        using var idx = Ids(17, n, m, cols);
        using var src = Rand(18, m, cols);
        using var y = Ops.ScatterAdd(x, 0, idx, src);
        var expect = x.ToFloatArray();
        var iv = idx.ToLongArray();
        var sv = src.ToFloatArray();
        for (int j = 0; j < m; j++)
            for (int c = 0; c < cols; c++) expect[iv[j * cols + c] * cols + c] += sv[j * cols + c];
        Assert.Equal(expect, y.ToFloatArray());
    }

    [Fact]
    public void Gather_Large_BackwardSumsInIndexOrder()
    {
        const int rows = 512, n = 300, m = 200;
        using var x = Rand(19, rows, n);
        x.RequiresGrad = true;
        using var idx = Ids(20, n, rows, m);
        using var y = Ops.Gather(x, 1, idx);
        float[] xv = x.ToFloatArray(), yv = y.ToFloatArray();
        var iv = idx.ToLongArray();
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < m; j++) Assert.Equal(xv[r * n + iv[r * m + j]], yv[r * m + j]);
        using var g = Rand(21, rows, m);
        y.Backward(g);
        var gv = g.ToFloatArray();
        var expect = new float[rows * n];
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < m; j++) expect[r * n + iv[r * m + j]] += gv[r * m + j];
        Assert.Equal(expect, x.Grad!.ToFloatArray());
    }

    [Fact]
    public void RepeatInterleave_LargeGqa_BackwardSumsRepeats()
    {
        const int B = 2, H = 2, r = 7, T = 300, D = 64;
        using var k = Rand(22, B, H, T, D);
        k.RequiresGrad = true;
        using var y = Ops.RepeatInterleave(k, r, 1);
        Assert.Equal(new[] { B, H * r, T, D }, y.Shape);
        float[] kv = k.ToFloatArray(), yv = y.ToFloatArray();
        long plane = (long)T * D;
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H * r; h++)
                for (long e = 0; e < plane; e += 97)
                    Assert.Equal(kv[(b * H + h / r) * plane + e], yv[(b * H * r + h) * plane + e]);
        using var g = Rand(23, B, H * r, T, D);
        y.Backward(g);
        var gv = g.ToFloatArray();
        var expect = new float[kv.Length];
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H * r; h++)
                for (long e = 0; e < plane; e++) expect[(b * H + h / r) * plane + e] += gv[(b * H * r + h) * plane + e];
        Assert.Equal(expect, k.Grad!.ToFloatArray());
    }

    [Fact]
    public void WhereAndMaskedFill_Large_SelectEveryElement()
    {
        const int n = 200_003;
        using var c = Mask(24, 0.5, n);
        using var a = Rand(25, n);
        using var b = Rand(26, n);
        using var y = Ops.Where(c, a, b);
        using var f = Ops.MaskedFill(a, c, -7f);
        float[] cv = c.ToFloatArray(), av = a.ToFloatArray(), bv = b.ToFloatArray(), yv = y.ToFloatArray(), fv = f.ToFloatArray();
        for (int i = 0; i < n; i++)
        {
            Assert.Equal(cv[i] != 0 ? av[i] : bv[i], yv[i]);
            Assert.Equal(cv[i] != 0 ? -7f : av[i], fv[i]);
        }
    }

    [Fact]
    public void Pad_Large_PlacesInputAndFillsBorder()
    {
        const int B = 3, T = 1000, C = 97;
        using var x = Rand(28, B, T, C);
        x.RequiresGrad = true;
        using var y = Ops.Pad(x, [1, 2, 0, 24], -2);
        Assert.Equal(new[] { B, T + 24, C + 3 }, y.Shape);
        float[] xv = x.ToFloatArray(), yv = y.ToFloatArray();
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T + 24; t++)
                for (int c = 0; c < C + 3; c++)
                {
                    bool inside = t < T && c >= 1 && c <= C;
                    Assert.Equal(inside ? xv[((long)b * T + t) * C + c - 1] : -2f, yv[((long)b * (T + 24) + t) * (C + 3) + c]);
                }
        using var g = Rand(29, B, T + 24, C + 3);
        y.Backward(g);
        float[] gv = g.ToFloatArray(), gx = x.Grad!.ToFloatArray();
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t += 3)
                for (int c = 0; c < C; c++)
                    Assert.Equal(gv[((long)b * (T + 24) + t) * (C + 3) + c + 1], gx[((long)b * T + t) * C + c]);
    }

    [Fact]
    public void Where_LargeWithScalarAndBroadcastMask_SelectsEveryElement()
    {
        using var causal = Ops.TrilMask(300, 301);
        using var s = Rand(30, 5, 300, 301);
        using var y = Ops.Where(causal, s, -1e9f);
        float[] sv = s.ToFloatArray(), yv = y.ToFloatArray();
        for (int h = 0; h < 5; h++)
            for (int i = 0; i < 300; i++)
                for (int j = 0; j < 301; j++)
                {
                    long p = ((long)h * 300 + i) * 301 + j;
                    Assert.Equal(j <= i ? sv[p] : -1e9f, yv[p]);
                }
    }

    [Fact]
    public void Tril_Large_MatchesDefinition()
    {
        using var x = Rand(27, 3, 300, 301);
        using var y = Ops.Tril(x, 1);
        float[] xv = x.ToFloatArray(), yv = y.ToFloatArray();
        for (int b = 0; b < 3; b++)
            for (int i = 0; i < 300; i++)
                for (int j = 0; j < 301; j++)
                {
                    long p = ((long)b * 300 + i) * 301 + j;
                    Assert.Equal(j - i <= 1 ? xv[p] : 0f, yv[p]);
                }
        using var m = Ops.TriuMask(4, 4, 1);
        Assert.Equal(new float[] { 0, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0 }, m.ToFloatArray());
    }
}

/// <summary>In-place helpers: results, strides, broadcasting, dtypes, version bumps.</summary>
public sealed class IndexingInPlaceTests
{
    [Fact]
    public void AddInPlace_AddsScaledSource_LargeAndBroadcastAndStrided()
    {
        using var d = Tensor.RandN([300, 1001], 1);
        using var s = Tensor.RandN([300, 1001], 2);
        var dv = d.ToFloatArray();
        var sv = s.ToFloatArray();
        int v0 = d.Storage.Version;
        Ops.AddInPlace(d, s, -0.5f);
        Assert.True(d.Storage.Version > v0);
        var r = d.ToFloatArray();
        for (int i = 0; i < r.Length; i += 11) Assert.Equal(dv[i] + -0.5f * sv[i], r[i], 5);

        using var row = Tensor.FromArray(new float[] { 1, 2, 3 }, 3);
        using var m = Tensor.Zeros(2, 3);
        Ops.AddInPlace(m, row, 2f);
        Assert.Equal(new float[] { 2, 4, 6, 2, 4, 6 }, m.ToFloatArray());

        using var bf = row.To(DType.BF16);
        using var t = m.Transpose(0, 1); // [3, 2] strided view of m
        using var col = Tensor.FromArray(new float[] { 10, 20, 30 }, 3, 1);
        Ops.AddInPlace(t, col);
        Assert.Equal(new float[] { 12, 24, 36, 12, 24, 36 }, m.ToFloatArray());
        Ops.AddInPlace(m, bf, -1f);
        Assert.Equal(new float[] { 11, 22, 33, 11, 22, 33 }, m.ToFloatArray());
    }

    [Fact]
    public void FillAndZeroInPlace_WorkForAnyDTypeAndStrides()
    {
        using var ids = Tensor.Zeros([2, 3], DType.I64);
        Ops.FillInPlace(ids, 151643);
        Assert.Equal(new long[] { 151643, 151643, 151643, 151643, 151643, 151643 }, ids.ToLongArray());

        using var m = Tensor.Zeros(3, 4);
        using (var col = m.Narrow(1, 1, 2)) Ops.FillInPlace(col, 5);
        Assert.Equal(new float[] { 0, 5, 5, 0, 0, 5, 5, 0, 0, 5, 5, 0 }, m.ToFloatArray());
        using (var col = m.Narrow(1, 2, 1)) Ops.ZeroInPlace(col);
        Assert.Equal(new float[] { 0, 5, 0, 0, 0, 5, 0, 0, 0, 5, 0, 0 }, m.ToFloatArray());

        using var big = Tensor.Full([500_000], 3f);
        using var bf = big.To(DType.BF16);
        Ops.ZeroInPlace(big);
        Ops.ZeroInPlace(bf);
        Assert.True(big.ToFloatArray().All(v => v == 0f));
        Assert.True(bf.ToFloatArray().All(v => v == 0f));
        Ops.FillInPlace(big, -1.25);
        Assert.True(big.ToFloatArray().All(v => v == -1.25f));
    }

    [Fact]
    public void InPlace_IsAllowedOnGradRequiringTensors_UnderNoGrad()
    {
        using var w = Tensor.Ones(4);
        w.RequiresGrad = true;
        using (GradMode.NoGrad())
        {
            Ops.FillInPlace(w, 2);
            Ops.ZeroInPlace(w);
        }
        Assert.All(w.ToFloatArray(), v => Assert.Equal(0f, v));
    }
}

/// <summary>Mask conventions shared by masked_scatter, masked_fill and where.</summary>
public sealed class IndexingMaskTests
{
    [Fact]
    public void MaskedScatter_TreatsAnyNonzeroU8AsTrue()
    {
        using var x = Tensor.Zeros(2, 2);
        using var mask = Tensor.Empty([2, 1], DType.U8);
        mask.SetFlat(0, 0); mask.SetFlat(1, 7);
        using var src = Tensor.FromArray(new float[] { 1, 2, 3, 4 }, 4);
        using var y = Ops.MaskedScatter(x, mask, src);
        Assert.Equal(new float[] { 0, 0, 1, 2 }, y.ToFloatArray());
        using var w = Ops.Where(mask, src.Reshape(2, 2), -1f);
        Assert.Equal(new float[] { -1, -1, 3, 4 }, w.ToFloatArray());
    }
}
