using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using MMSharp.Engine.Kernels;

namespace MMSharp.Engine;

/// <summary>Mask-driven ops: where, masked_fill, masked_scatter.</summary>
public static unsafe partial class Ops
{
    struct ExpandMaskRow(byte* src, byte* dst) : IRowOp2
    {
        // bytes are copied raw: every consumer treats nonzero as true
        public void Row(long so, long d_o, int n, long si, long di)
        {
            byte* s = src + so, d = dst + d_o;
            if (si == 0) new Span<byte>(d, n).Fill(s[0]);
            else if (si == 1) Rows.Copy(s, d, n);
            else for (int i = 0; i < n; i++) d[i] = s[i * si];
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

    /// <summary>o[i] = m[i] != 0 ? a[i * ai] : b[i * bi] for n contiguous outputs, with ai, bi in {0, 1}
    /// (0: a scalar operand).</summary>
    static void SelectRow(byte* m, float* a, long ai, float* b, long bi, float* o, long n)
    {
        long i = 0;
        if (Avx512F.IsSupported)
        {
            var sa = Vector512.Create(a[0]);
            var sb = Vector512.Create(b[0]);
            for (; i + 16 <= n; i += 16)
            {
                var mv = Avx512F.ConvertToVector512Int32(Vector128.Load(m + i));
                var isFalse = Vector512.Equals(mv, Vector512<int>.Zero).AsSingle();
                var av = ai == 0 ? sa : Vector512.Load(a + i);
                var bv = bi == 0 ? sb : Vector512.Load(b + i);
                Vector512.ConditionalSelect(isFalse, bv, av).Store(o + i);
            }
        }
        else if (Avx2.IsSupported)
        {
            var sa = Vector256.Create(a[0]);
            var sb = Vector256.Create(b[0]);
            for (; i + 8 <= n; i += 8)
            {
                var mv = Avx2.ConvertToVector256Int32(Vector128.CreateScalar(*(ulong*)(m + i)).AsByte());
                var isFalse = Vector256.Equals(mv, Vector256<int>.Zero).AsSingle();
                var av = ai == 0 ? sa : Vector256.Load(a + i);
                var bv = bi == 0 ? sb : Vector256.Load(b + i);
                Vector256.ConditionalSelect(isFalse, bv, av).Store(o + i);
            }
        }
        for (; i < n; i++) o[i] = m[i] != 0 ? a[i * ai] : b[i * bi];
    }

    struct SelectRowOp(byte* m, float* a, float* b, float* o) : IRowOp3
    {
        // operand 0 is the contiguous output (its offset is also the mask's), 1 and 2 are a and b (maybe broadcast)
        public void Row(long oo, long ao, long bo, int n, long oi, long ai, long bi)
        {
            if (oi == 1 && ai is 0 or 1 && bi is 0 or 1) { SelectRow(m + oo, a + ao, ai, b + bo, bi, o + oo, n); return; }
            for (int i = 0; i < n; i++)
                o[oo + i * oi] = m[oo + i * oi] != 0 ? a[ao + i * ai] : b[bo + i * bi];
        }
    }

    /// <summary>out = mask ? a : b over <paramref name="shape"/>, with a and b (contiguous F32) read through broadcast
    /// strides and the mask already expanded to shape. Operands that are full-size or single values take a
    /// parallel vector path.</summary>
    static Tensor SelectCore(Tensor maskExp, Tensor a, Tensor b, int[] shape)
    {
        var o = Tensor.Empty(shape);
        long n = o.NumEl;
        if (n == 0) return o;
        byte* m = maskExp.DataPtr;
        float* pa = a.F32Ptr, pb = b.F32Ptr, po = o.F32Ptr;
        // a contiguous operand with all n elements has no broadcast dims, so its flat order is the output's
        long ai = a.NumEl == 1 ? 0 : a.NumEl == n && a.IsContiguous ? 1 : -1;
        long bi = b.NumEl == 1 ? 0 : b.NumEl == n && b.IsContiguous ? 1 : -1;
        if (ai >= 0 && bi >= 0)
        {
            int items = Rows.Items(n * 9, n / 4096);
            Par.For(items, c =>
            {
                long s = n * c / items, e = n * (c + 1) / items;
                SelectRow(m + s, pa + s * ai, ai, pb + s * bi, bi, po + s, e - s);
            });
            return o;
        }
        var op = new SelectRowOp(m, pa, pb, po);
        Strided.ForEachRow(shape, o.Strides, BroadcastStrides(a, shape), BroadcastStrides(b, shape), ref op);
        return o;
    }

    /// <summary>
    /// Elementwise choice: y = cond ? a : b, with cond (Bool), a and b (any float dtype) broadcast together; F32 result.
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
    /// true by <paramref name="value"/> (F32 result).</summary>
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

    /// <summary>Splits the mask into chunks (several for large masks) and counts the true positions before each:
    /// prefix[c] is the number of true bytes in chunks 0..c-1, prefix[^1] the total.</summary>
    static long[] MaskChunkPrefix(byte* m, long n)
    {
        int chunks = Rows.Items(n * 4, n / 4096);
        var prefix = new long[chunks + 1];
        Par.For(chunks, c =>
        {
            long s = n * c / chunks, e = n * (c + 1) / chunks, cnt = 0;
            for (long p = s; p < e; p += int.MaxValue)
            {
                int len = (int)Math.Min(e - p, int.MaxValue);
                cnt += len - new ReadOnlySpan<byte>(m + p, len).Count((byte)0);
            }
            prefix[c + 1] = cnt;
        });
        for (int c = 0; c < chunks; c++) prefix[c + 1] += prefix[c];
        return prefix;
    }

    /// <summary>For each chunk of <paramref name="prefix"/> (in parallel), walks the maximal runs of equal truth in the
    /// mask and calls run(position, ordinal, length, isTrue); ordinal counts the true positions before the run.</summary>
    static void ForEachMaskRun(byte* m, long n, long[] prefix, Action<long, long, long, bool> run)
    {
        int chunks = prefix.Length - 1;
        Par.For(chunks, c =>
        {
            long p = n * c / chunks, e = n * (c + 1) / chunks, ordinal = prefix[c];
            while (p < e)
            {
                int len = (int)Math.Min(e - p, int.MaxValue);
                var span = new ReadOnlySpan<byte>(m + p, len);
                bool on = m[p] != 0;
                int end = on ? span.IndexOf((byte)0) : span.IndexOfAnyExcept((byte)0);
                long runLen = end < 0 ? len : end;
                run(p, ordinal, runLen, on);
                if (on) ordinal += runLen;
                p += runLen;
            }
        });
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
        var prefix = MaskChunkPrefix(mp, m.NumEl);
        long count = prefix[^1];
        if (source.NumEl < count)
            throw new ArgumentException($"MaskedScatter: mask {mask.Describe()} selects {count} positions of {x.Describe()}, but source {source.Describe()} has only {source.NumEl} elements");
        var y = Tensor.Empty(shape);
        using (var xc = Contiguous(x, DType.F32))
        using (var sc = Contiguous(source, DType.F32))
        {
            // one pass: runs of false come from x, runs of true from consecutive source elements
            float* yp = y.F32Ptr, xp = xc.F32Ptr, sp = sc.F32Ptr;
            ForEachMaskRun(mp, m.NumEl, prefix, (p, ord, len, on) =>
                Rows.Copy((byte*)(on ? sp + ord : xp + p), (byte*)(yp + p), len * 4));
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
                    ForEachMaskRun(mb, me.NumEl, MaskChunkPrefix(mb, me.NumEl), (p, ord, len, on) =>
                    {
                        if (on) Rows.Copy((byte*)(gp + p), (byte*)(gsp + ord), len * 4);
                    });
                }
                return [gx, gs];
            });
        }
        return y;
    }
}
