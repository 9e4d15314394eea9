using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using MMSharp.Engine.Kernels;

namespace MMSharp.Engine;

/// <summary>Mask-driven ops: where, masked_fill, masked_scatter.</summary>
public static unsafe partial class Ops
{
    struct ExpandMaskRow(byte* src, byte* dst) : IRowOp2
    {
        public void Row(long so, long d_o, int n, long si, long di)
        {
            byte* s = src + so, d = dst + d_o;
            if (si == 0) new Span<byte>(d, n).Fill(s[0] != 0 ? (byte)1 : (byte)0);
            else for (int i = 0; i < n; i++) d[i] = s[i * si] != 0 ? (byte)1 : (byte)0;
        }
    }

    /// <summary>The mask broadcast to <paramref name="shape"/> as contiguous bytes, nonzero = true (an alias when it
    /// already is one). Accepts Bool and U8 masks.</summary>
    internal static Tensor ExpandMask(Tensor mask, int[] shape, string op)
    {
        if (mask.DType is not (DType.Bool or DType.U8))
            throw new ArgumentException($"{op}: mask {mask.Describe()} must be Bool (or U8)");
        if (mask.IsContiguous && mask.Shape.AsSpan().SequenceEqual(shape)) return mask.Alias();
        if (mask.Rank > shape.Length || !Broadcasts(mask.Shape, shape))
            throw new ArgumentException($"{op}: mask {mask.Describe()} does not broadcast to {Tensor.ShapeString(shape)}");
        var st = BroadcastStrides(mask, shape);
        var r = Tensor.Empty(shape, DType.Bool);
        var row = new ExpandMaskRow(mask.DataPtr, r.DataPtr);
        Strided.ForEachRow(shape, st, r.Strides, ref row);
        return r;
    }

    /// <summary>Whether <paramref name="from"/> broadcasts to exactly <paramref name="to"/>.</summary>
    static bool Broadcasts(int[] from, int[] to)
    {
        if (from.Length > to.Length) return false;
        for (int i = 1; i <= from.Length; i++)
            if (from[^i] != to[^i] && from[^i] != 1) return false;
        return true;
    }

    /// <summary>o[i] = m[i] != 0 ? a[i] : b[i] for n contiguous elements.</summary>
    static void SelectRow(byte* m, float* a, float* b, float* o, long n)
    {
        long i = 0;
        if (Avx512F.IsSupported)
        {
            for (; i + 16 <= n; i += 16)
            {
                var mv = Avx512F.ConvertToVector512Int32(Vector128.Load(m + i));
                var sel = Vector512.Equals(mv, Vector512<int>.Zero).AsSingle();
                Vector512.ConditionalSelect(sel, Vector512.Load(b + i), Vector512.Load(a + i)).Store(o + i);
            }
        }
        else if (Avx2.IsSupported)
        {
            for (; i + 8 <= n; i += 8)
            {
                var mv = Avx2.ConvertToVector256Int32(Vector128.CreateScalar(*(ulong*)(m + i)).AsByte());
                var sel = Vector256.Equals(mv, Vector256<int>.Zero).AsSingle();
                Vector256.ConditionalSelect(sel, Vector256.Load(b + i), Vector256.Load(a + i)).Store(o + i);
            }
        }
        for (; i < n; i++) o[i] = m[i] != 0 ? a[i] : b[i];
    }

    struct SelectRowOp(byte* m, float* a, float* b, float* o) : IRowOp3
    {
        // operand 0 is the contiguous output (its offset is also the mask's), 1 and 2 are a and b (maybe broadcast)
        public void Row(long oo, long ao, long bo, int n, long oi, long ai, long bi)
        {
            if (oi == 1 && ai == 1 && bi == 1) { SelectRow(m + oo, a + ao, b + bo, o + oo, n); return; }
            for (int i = 0; i < n; i++)
                o[oo + i * oi] = m[oo + i * oi] != 0 ? a[ao + i * ai] : b[bo + i * bi];
        }
    }

    /// <summary>out = mask ? a : b over <paramref name="shape"/>, with a and b read through broadcast strides and the
    /// mask already expanded to shape. Large contiguous inputs run in parallel.</summary>
    static Tensor SelectCore(Tensor maskExp, Tensor a, Tensor b, int[] shape)
    {
        var o = Tensor.Empty(shape);
        long n = o.NumEl;
        byte* m = maskExp.DataPtr;
        float* pa = a.F32Ptr, pb = b.F32Ptr, po = o.F32Ptr;
        if (a.IsContiguous && b.IsContiguous && a.NumEl == n && b.NumEl == n)
        {
            int items = Rows.Items(n * 9, n / 4096);
            Par.For(items, c =>
            {
                long s = n * c / items, e = n * (c + 1) / items;
                SelectRow(m + s, pa + s, pb + s, po + s, e - s);
            });
            return o;
        }
        var op = new SelectRowOp(m, pa, pb, po);
        Strided.ForEachRow(shape, o.Strides, BroadcastStrides(a, shape), BroadcastStrides(b, shape), ref op);
        return o;
    }

    /// <summary>
    /// Elementwise choice: y = cond ? a : b, with cond (Bool), a and b broadcast together.
    /// </summary>
    /// <remarks>Backward: da = sum-to-shape(cond ? g : 0), db = sum-to-shape(cond ? 0 : g).</remarks>
    public static Tensor Where(Tensor cond, Tensor a, Tensor b)
    {
        int[] shape;
        try { shape = BroadcastShape(BroadcastShape(cond.Shape, a.Shape), b.Shape); }
        catch (ArgumentException e) { throw new ArgumentException($"Where: cond {cond.Describe()}, a {a.Describe()} and b {b.Describe()} do not broadcast together", e); }
        Tensor y;
        using (var m = ExpandMask(cond, shape, "Where"))
        using (var ac = Contiguous(a, DType.F32))
        using (var bc = Contiguous(b, DType.F32))
            y = SelectCore(m, ac, bc, shape);
        if (Tensor.AnyRequiresGrad(a, b))
        {
            bool needA = a.RequiresGrad, needB = b.RequiresGrad;
            int[] aShape = a.Shape, bShape = b.Shape;
            var sc = cond.SaveForBackward();
            y.WithGradFn("where", [a, b], [sc], g =>
            {
                using var m = ExpandMask(sc, shape, "Where");
                using var zero = Tensor.Zeros([1]);
                Tensor? ga = null, gb = null;
                if (needA) { using var t = SelectCore(m, g, zero, shape); ga = SumToShape(t, aShape); }
                if (needB) { using var t = SelectCore(m, zero, g, shape); gb = SumToShape(t, bShape); }
                return [ga, gb];
            });
        }
        return y;
    }

    /// <summary>y = cond ? a : b with a scalar <paramref name="b"/>.</summary>
    public static Tensor Where(Tensor cond, Tensor a, float b)
    {
        using var bs = Tensor.Scalar(b);
        return Where(cond, a, bs);
    }

    /// <summary>y = cond ? a : b with a scalar <paramref name="a"/>.</summary>
    public static Tensor Where(Tensor cond, float a, Tensor b)
    {
        using var s = Tensor.Scalar(a);
        return Where(cond, s, b);
    }

    /// <summary>Replaces the elements of <paramref name="x"/> where <paramref name="mask"/> (broadcast to x's shape) is
    /// true by <paramref name="value"/>.</summary>
    /// <remarks>y = mask ? value : x. Backward: dx = mask ? 0 : g.</remarks>
    public static Tensor MaskedFill(Tensor x, Tensor mask, float value)
    {
        var shape = x.Shape;
        Tensor y;
        using (var m = ExpandMask(mask, shape, "MaskedFill"))
        using (var xc = Contiguous(x, DType.F32))
        using (var v = Tensor.Full([1], value))
            y = SelectCore(m, v, xc, shape);
        if (Tensor.AnyRequiresGrad(x))
        {
            var sm = mask.SaveForBackward();
            y.WithGradFn("masked_fill", [x], [sm], g =>
            {
                using var m = ExpandMask(sm, shape, "MaskedFill");
                using var zero = Tensor.Zeros([1]);
                return [SelectCore(m, zero, g, shape)];
            });
        }
        return y;
    }

    /// <summary>Calls body(chunkStart, chunkEnd, firstOrdinal) for chunks of the mask, in parallel for large masks;
    /// firstOrdinal is the number of true positions before the chunk.</summary>
    static long ForEachMaskChunk(byte* m, long n, Action<long, long, long>? body)
    {
        int chunks = Rows.Items(n * 4, n / 4096);
        var counts = new long[chunks + 1];
        Par.For(chunks, c =>
        {
            long s = n * c / chunks, e = n * (c + 1) / chunks, cnt = 0;
            for (long p = s; p < e; p += int.MaxValue)
            {
                int len = (int)Math.Min(e - p, int.MaxValue);
                cnt += len - new ReadOnlySpan<byte>(m + p, len).Count((byte)0);
            }
            counts[c + 1] = cnt;
        });
        for (int c = 0; c < chunks; c++) counts[c + 1] += counts[c];
        if (body != null) Par.For(chunks, c => body(n * c / chunks, n * (c + 1) / chunks, counts[c]));
        return counts[chunks];
    }

    /// <summary>Calls run(position, ordinal, length) for each maximal run of true mask bytes in [s, e).</summary>
    static void ForEachTrueRun(byte* m, long s, long e, long ordinal, Action<long, long, long> run)
    {
        long p = s;
        while (p < e)
        {
            int len = (int)Math.Min(e - p, int.MaxValue);
            int t = new ReadOnlySpan<byte>(m + p, len).IndexOfAnyExcept((byte)0);
            if (t < 0) { p += len; continue; }
            p += t;
            len = (int)Math.Min(e - p, int.MaxValue);
            int f = new ReadOnlySpan<byte>(m + p, len).IndexOf((byte)0);
            long runLen = f < 0 ? len : f;
            run(p, ordinal, runLen);
            ordinal += runLen;
            p += runLen;
        }
    }

    /// <summary>
    /// Writes consecutive elements of <paramref name="source"/> into the positions of <paramref name="x"/> where
    /// <paramref name="mask"/> (broadcast to x's shape) is true, in row-major order (torch.masked_scatter).
    /// </summary>
    /// <remarks>
    /// Used to place image embeddings: x = text embeddings [B, T, C], mask = (ids == IMG_CONTEXT)[B, T, 1],
    /// source = vision tokens [N, C]. The k-th true position takes source.flat[k]; source needs at least as many
    /// elements as there are true positions (extra elements are ignored). Runs of true positions are copied
    /// with memcpy. Backward: dx = mask ? 0 : g; dsource.flat[k] = g at the k-th true position (0 past the last).
    /// </remarks>
    public static Tensor MaskedScatter(Tensor x, Tensor mask, Tensor source)
    {
        var shape = x.Shape;
        using var m = ExpandMask(mask, shape, "MaskedScatter");
        byte* mp = m.DataPtr;
        long count = ForEachMaskChunk(mp, m.NumEl, null);
        if (source.NumEl < count)
            throw new ArgumentException($"MaskedScatter: mask {mask.Describe()} selects {count} positions of {x.Describe()}, but source {source.Describe()} has only {source.NumEl} elements");
        Tensor y;
        using (Autograd.GradMode.NoGrad()) y = Clone(x, DType.F32);
        using (var sc = Contiguous(source, DType.F32))
        {
            float* yp = y.F32Ptr, sp = sc.F32Ptr;
            ForEachMaskChunk(mp, m.NumEl, (s, e, k) =>
                ForEachTrueRun(mp, s, e, k, (p, ord, len) => Rows.Copy((byte*)(sp + ord), (byte*)(yp + p), len * 4)));
        }

        if (Tensor.AnyRequiresGrad(x, source))
        {
            bool needX = x.RequiresGrad, needS = source.RequiresGrad;
            var sourceShape = source.Shape;
            var sm = mask.SaveForBackward();
            y.WithGradFn("masked_scatter", [x, source], [sm], g =>
            {
                using var me = ExpandMask(sm, shape, "MaskedScatter");
                byte* mb = me.DataPtr;
                Tensor? gx = null, gs = null;
                if (needX)
                {
                    using var zero = Tensor.Zeros([1]);
                    gx = SelectCore(me, zero, g, shape);
                }
                if (needS)
                {
                    gs = Tensor.Zeros(sourceShape);
                    float* gsp = gs.F32Ptr, gp = g.F32Ptr;
                    ForEachMaskChunk(mb, me.NumEl, (s, e, k) =>
                        ForEachTrueRun(mb, s, e, k, (p, ord, len) => Rows.Copy((byte*)(gp + p), (byte*)(gsp + ord), len * 4)));
                }
                return [gx, gs];
            });
        }
        return y;
    }
}
