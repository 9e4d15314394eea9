using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MMSharp.Engine.Kernels;

/// <summary>
/// Attention for a few queries against a long key/value cache (decoding), reading K and V in place through their
/// strides (a cache [B, Hkv, Max, D] narrowed to the current length is not copied, transposed or padded, which the
/// tiled <see cref="FlashAttention"/> path needs and which would cost more than the attention itself at Tq = 1).
/// One work item per (batch, kv head) serves all Hq / Hkv query heads of that kv head and all Tq queries, so each
/// key and value row is read from memory once. Two passes over the keys: exact scores s = scale·q·k into a scratch
/// row per query, softmax, then o = Σ_j p_j v_j. Summation order is fixed, so results do not depend on threads.
/// Shapes: q [B, Hq, Tq, D] contiguous; k, v [B, Hkv, Tk, D] with unit stride along D; o [B, Hq, Tq, D] contiguous.
/// </summary>
internal static unsafe class DecodeAttention
{
    /// <summary>Largest Tq served by this path (beyond that the tiled kernel's q-reuse wins).</summary>
    public const int MaxQueries = 8;

    /// <summary>Off: every call takes the tiled path (the decode benchmark flips it by reflection to compare both).</summary>
    internal static bool Enabled = true;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Forward(int B, int Hq, int Hkv, int Tq, int Tk, int D, float scale, bool causal,
        float* q, float* k, long kB, long kH, long kT, float* v, long vB, long vH, long vT, float* o)
    {
        int G = Hq / Hkv, rows = G * Tq;
        nint qp = (nint)q, kp = (nint)k, vp = (nint)v, op = (nint)o;
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        void Item(int item)
        {
            int b = item / Hkv, kvh = item % Hkv;
            float* kh = (float*)kp + b * kB + kvh * kH, vh = (float*)vp + b * vB + kvh * vH;
            // the G query heads of this kv head are consecutive, so their Tq rows are one block of q and o
            long rowBase = ((long)b * Hq + (long)kvh * G) * Tq;
            float* qRows = (float*)qp + rowBase * D, oRows = (float*)op + rowBase * D;
            float* S = ThreadScratch.Floats((long)rows * Tk + (long)rows * D + 2L * rows);
            float* acc = S + (long)rows * Tk, inv = acc + (long)rows * D;
            int* end = (int*)(inv + rows);
            int jMax = 0;
            for (int r = 0; r < rows; r++)
            {
                int i = r % Tq;
                end[r] = causal ? Math.Clamp(i + Tk - Tq + 1, 0, Tk) : Tk;
                jMax = Math.Max(jMax, end[r]);
            }

            // pass 1: scores; blocks of 16 keys per query row reduced together when D is 64 (the Qwen2 head size),
            // then one key row against all query rows
            int j0 = 0;
            if (D == 64 && Vector512.IsHardwareAccelerated && Avx512F.IsSupported)
                for (; j0 + 16 <= jMax; j0 += 16)
                    for (int r = 0; r < rows; r++)
                        Scores16(qRows + (long)r * D, kh + j0 * kT, kT, scale, S + (long)r * Tk + j0);
            for (int j = j0; j < jMax; j++)
            {
                float* kj = kh + j * kT;
                for (int r = 0; r < rows; r++)
                    S[(long)r * Tk + j] = scale * Dot(qRows + (long)r * D, kj, D);
            }
            for (int r = 0; r < rows; r++)
            {
                float* s = S + (long)r * Tk;
                int n = end[r];
                if (n == 0) { inv[r] = 0f; continue; }
                float m = SoftmaxRow.Max(s, n);
                inv[r] = 1f / SoftmaxRow.ExpShiftSum(s, n, m);
            }

            // pass 2: o = Σ_j p_j v_j, one value row into all query rows (in registers, four rows at a time, when every
            // row reads all jMax keys and D is 64; the same products added in the same order either way)
            new Span<float>(acc, rows * D).Clear();
            bool sameEnd = true;
            for (int r = 0; r < rows; r++) sameEnd &= end[r] == jMax;
            if (sameEnd && D == 64 && Vector512.IsHardwareAccelerated)
                for (int r = 0; r < rows; r += 4)
                    WeightedValues64(S + (long)r * Tk, Tk, Math.Min(4, rows - r), jMax, vh, vT, acc + (long)r * D);
            else
                for (int j = 0; j < jMax; j++)
                    AddScaledRow(acc, S + j, Tk, end, j, rows, vh + j * vT, D);
            for (int r = 0; r < rows; r++)
                TensorPrimitives.Multiply(new ReadOnlySpan<float>(acc + (long)r * D, D), inv[r], new Span<float>(oRows + (long)r * D, D));
        }

        // threads only for long caches: at Tk ~ 300 a layer's attention is ~50 µs, less than what a fork/join
        // costs once the cores are shared
        int items = B * Hkv;
        if (items > 1 && (long)rows * Tk * D >= 1 << 20) Par.For(items, Item);
        else for (int t = 0; t < items; t++) Item(t);
    }

    /// <summary>
    /// s[i] = scale · (q · k_i) for 16 key rows k_i = k + i·kT of 64 floats: four 16-lane products per key, then the
    /// 16 partial vectors reduced together by a transpose-add tree (45 shuffles and adds instead of 16 horizontal sums).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Scores16(float* q, float* k, long kT, float scale, float* s)
    {
        // locals, not arrays: the 16 products and the 4 query vectors stay in registers
        var q0 = Vector512.Load(q); var q1 = Vector512.Load(q + 16); var q2 = Vector512.Load(q + 32); var q3 = Vector512.Load(q + 48);
        var p0 = Product(q0, q1, q2, q3, k); var p1 = Product(q0, q1, q2, q3, k + kT);
        var p2 = Product(q0, q1, q2, q3, k + 2 * kT); var p3 = Product(q0, q1, q2, q3, k + 3 * kT);
        var p4 = Product(q0, q1, q2, q3, k + 4 * kT); var p5 = Product(q0, q1, q2, q3, k + 5 * kT);
        var p6 = Product(q0, q1, q2, q3, k + 6 * kT); var p7 = Product(q0, q1, q2, q3, k + 7 * kT);
        var p8 = Product(q0, q1, q2, q3, k + 8 * kT); var p9 = Product(q0, q1, q2, q3, k + 9 * kT);
        var p10 = Product(q0, q1, q2, q3, k + 10 * kT); var p11 = Product(q0, q1, q2, q3, k + 11 * kT);
        var p12 = Product(q0, q1, q2, q3, k + 12 * kT); var p13 = Product(q0, q1, q2, q3, k + 13 * kT);
        var p14 = Product(q0, q1, q2, q3, k + 14 * kT); var p15 = Product(q0, q1, q2, q3, k + 15 * kT);
        // level 1: pairs of keys, per 128-bit lane [x0+x2, y0+y2, x1+x3, y1+y3]
        var t0 = Pairs(p0, p1); var t1 = Pairs(p2, p3); var t2 = Pairs(p4, p5); var t3 = Pairs(p6, p7);
        var t4 = Pairs(p8, p9); var t5 = Pairs(p10, p11); var t6 = Pairs(p12, p13); var t7 = Pairs(p14, p15);
        // level 2: four keys per 128-bit lane, each that lane's sum
        var u0 = Quads(t0, t1); var u1 = Quads(t2, t3); var u2 = Quads(t4, t5); var u3 = Quads(t6, t7);
        // level 3: lanes 0+1 and 2+3 of two groups of four keys; level 4: the whole sums, keys in order
        var w0 = Avx512F.Shuffle4x128(u0, u1, 0b10_00_10_00) + Avx512F.Shuffle4x128(u0, u1, 0b11_01_11_01);
        var w1 = Avx512F.Shuffle4x128(u2, u3, 0b10_00_10_00) + Avx512F.Shuffle4x128(u2, u3, 0b11_01_11_01);
        var sum = Avx512F.Shuffle4x128(w0, w1, 0b10_00_10_00) + Avx512F.Shuffle4x128(w0, w1, 0b11_01_11_01);
        (sum * Vector512.Create(scale)).Store(s);
    }

    /// <summary>The 16 lane products of q · k for one key row of 64 floats, partly summed (four vectors into one).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Product(Vector512<float> q0, Vector512<float> q1, Vector512<float> q2, Vector512<float> q3, float* k) =>
        Avx512F.FusedMultiplyAdd(q1, Vector512.Load(k + 16), q0 * Vector512.Load(k))
        + Avx512F.FusedMultiplyAdd(q3, Vector512.Load(k + 48), q2 * Vector512.Load(k + 32));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Pairs(Vector512<float> a, Vector512<float> b) => Avx512F.UnpackLow(a, b) + Avx512F.UnpackHigh(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static Vector512<float> Quads(Vector512<float> a, Vector512<float> b) =>
        Avx512F.UnpackLow(a.AsDouble(), b.AsDouble()).AsSingle() + Avx512F.UnpackHigh(a.AsDouble(), b.AsDouble()).AsSingle();

    /// <summary>acc[r] += Σ_j p[r·ldp + j] · v_j for n ≤ 4 rows r and j &lt; jMax, value rows of 64 floats held in registers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void WeightedValues64(float* p, int ldp, int n, int jMax, float* v, long vT, float* acc)
    {
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default, a10 = default, a11 = default, a12 = default, a13 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default, a30 = default, a31 = default, a32 = default, a33 = default;
        float* p1 = p + ldp, p2 = p + 2L * ldp, p3 = p + 3L * ldp;
        for (int j = 0; j < jMax; j++)
        {
            float* vj = v + j * vT;
            var v0 = Vector512.Load(vj); var v1 = Vector512.Load(vj + 16); var v2 = Vector512.Load(vj + 32); var v3 = Vector512.Load(vj + 48);
            var b = Vector512.Create(p[j]);
            a00 = Vector512.FusedMultiplyAdd(b, v0, a00); a01 = Vector512.FusedMultiplyAdd(b, v1, a01);
            a02 = Vector512.FusedMultiplyAdd(b, v2, a02); a03 = Vector512.FusedMultiplyAdd(b, v3, a03);
            if (n < 2) continue;
            b = Vector512.Create(p1[j]);
            a10 = Vector512.FusedMultiplyAdd(b, v0, a10); a11 = Vector512.FusedMultiplyAdd(b, v1, a11);
            a12 = Vector512.FusedMultiplyAdd(b, v2, a12); a13 = Vector512.FusedMultiplyAdd(b, v3, a13);
            if (n < 3) continue;
            b = Vector512.Create(p2[j]);
            a20 = Vector512.FusedMultiplyAdd(b, v0, a20); a21 = Vector512.FusedMultiplyAdd(b, v1, a21);
            a22 = Vector512.FusedMultiplyAdd(b, v2, a22); a23 = Vector512.FusedMultiplyAdd(b, v3, a23);
            if (n < 4) continue;
            b = Vector512.Create(p3[j]);
            a30 = Vector512.FusedMultiplyAdd(b, v0, a30); a31 = Vector512.FusedMultiplyAdd(b, v1, a31);
            a32 = Vector512.FusedMultiplyAdd(b, v2, a32); a33 = Vector512.FusedMultiplyAdd(b, v3, a33);
        }
        a00.Store(acc); a01.Store(acc + 16); a02.Store(acc + 32); a03.Store(acc + 48);
        if (n > 1) { a10.Store(acc + 64); a11.Store(acc + 80); a12.Store(acc + 96); a13.Store(acc + 112); }
        if (n > 2) { a20.Store(acc + 128); a21.Store(acc + 144); a22.Store(acc + 160); a23.Store(acc + 176); }
        if (n > 3) { a30.Store(acc + 192); a31.Store(acc + 208); a32.Store(acc + 224); a33.Store(acc + 240); }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float Dot(float* a, float* b, int n)
    {
        if (Vector512.IsHardwareAccelerated && (n & 15) == 0)
        {
            var s = Vector512<float>.Zero;
            for (int d = 0; d < n; d += 16) s = Vector512.FusedMultiplyAdd(Vector512.Load(a + d), Vector512.Load(b + d), s);
            return Vector512.Sum(s);
        }
        return TensorPrimitives.Dot(new ReadOnlySpan<float>(a, n), new ReadOnlySpan<float>(b, n));
    }

    /// <summary>acc[r] += p[r·ldp] · vj for every row r whose key range includes j.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void AddScaledRow(float* acc, float* p, int ldp, int* end, int j, int rows, float* vj, int D)
    {
        if (Vector512.IsHardwareAccelerated && (D & 15) == 0)
        {
            for (int d = 0; d < D; d += 16)
            {
                var vv = Vector512.Load(vj + d);
                for (int r = 0; r < rows; r++)
                {
                    if (j >= end[r]) continue;
                    float* a = acc + (long)r * D + d;
                    Vector512.FusedMultiplyAdd(Vector512.Create(p[(long)r * ldp]), vv, Vector512.Load(a)).Store(a);
                }
            }
            return;
        }
        for (int r = 0; r < rows; r++)
        {
            if (j >= end[r]) continue;
            var a = new Span<float>(acc + (long)r * D, D);
            TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(vj, D), p[(long)r * ldp], a, a);
        }
    }
}
