using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MMSharp.Engine.Kernels;

/// <summary>
/// Few-row GEMM against a weight stored as W[n, k] (B(k, j) = W[j*ldw + k], the layout of y = x W^T):
/// each output is a dot product of an A row with a W row, both contiguous along k. Nothing is packed:
/// W streams from memory once (bf16 widened in registers), which makes the M = 1 decode step run at
/// memory bandwidth. Tiles of up to 4 A rows x 4 W rows keep 16 zmm accumulators of 16 k-lanes each,
/// reduced horizontally once per output. Work is split over n; each output is produced by one thread
/// in a fixed k order.
/// </summary>
internal static unsafe class GemmSmallM
{
    /// <summary>C[i, j] = sum_p A[i*lda + p] * W[j*ldw + p] (+ beta C). A rows contiguous.</summary>
    internal static void Dot<TE>(int m, int n, int k, float* a, long lda, void* w, long ldw, float* c, long ldc, float beta) where TE : unmanaged, IGemmElem
    {
        if (m == 1 && (beta == 0f || beta == 1f))
        {
            // decode: the same Row1 outputs, split so each thread streams one contiguous share (GemvMulti);
            // beta = 1 adds the C already there (Ops.Linear's preloaded bias) exactly as Put does
            var seg = new GemvSegment { W = w, Ldw = ldw, Rows = n, Bias = beta == 1f ? c : null, Out = c };
            GemvMulti.Run<TE>(k, a, &seg, 1);
            return;
        }
        // Items of at least ~64K multiply-adds (a worker wake-up costs microseconds), up to 4 per thread so a
        // thread that is descheduled on a busy machine holds up only a small share; each covers a fixed range
        // of outputs (multiples of 8 W rows), so results do not depend on the thread count.
        long grain = Math.Max(8, (1L << 16) / Math.Max(1L, (long)k * m));
        int items = (int)Math.Clamp(n / grain, 1, 4 * Par.Threads);
        if (items == 1) { DotRange<TE>(m, 0, n, k, a, lda, w, ldw, c, ldc, beta); return; }
        int blocks = (n + 7) / 8;
        nint ap = (nint)a, wp = (nint)w, cp = (nint)c;
        Par.For(items, t =>
        {
            int j0 = (int)((long)blocks * t / items) * 8, j1 = Math.Min(n, (int)((long)blocks * (t + 1) / items) * 8);
            DotRange<TE>(m, j0, j1, k, (float*)ap, lda, (void*)wp, ldw, (float*)cp, ldc, beta);
        });
    }

    static void DotRange<TE>(int m, int j0, int j1, int k, float* a, long lda, void* w, long ldw, float* c, long ldc, float beta) where TE : unmanaged, IGemmElem
    {
        int j = j0;
        if (m == 1)
        {
            // decode: one W row after another is a single sequential stream per thread, which the hardware
            // prefetcher follows at full read bandwidth; interleaving rows (1x4, 1x8 tiles) measured 0.5-0.8x of it
            int ahead = PrefetchBytes;
            for (; j < j1; j++) Put(c + j, Row1<TE>(k, a, GemmPack.Offset<TE>(w, j * ldw), ahead), beta);
            return;
        }
        for (; j + 4 <= j1; j += 4)
        {
            void* wj = GemmPack.Offset<TE>(w, j * ldw);
            int i = 0;
            for (; i + 4 <= m; i += 4) Tile4x4<TE>(k, a + i * lda, lda, wj, ldw, c + i * ldc + j, ldc, beta);
            for (; i < m; i++) Tile1x4<TE>(k, a + i * lda, wj, ldw, c + i * ldc + j, beta);
        }
        for (; j < j1; j++)
        {
            void* wj = GemmPack.Offset<TE>(w, j * ldw);
            for (int i = 0; i < m; i++) Put(c + i * ldc + j, Dot1<TE>(k, a + i * lda, wj), beta);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Put(float* dst, float v, float beta) => *dst = beta == 0f ? v : v + beta * *dst;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float Dot1<TE>(int k, float* a, void* w) where TE : unmanaged, IGemmElem
    {
        var acc = Vector512<float>.Zero;
        int p = 0;
        for (; p + 16 <= k; p += 16) acc = Avx512F.FusedMultiplyAdd(Vector512.Load(a + p), TE.Load16(w, p), acc);
        float s = Vector512.Sum(acc);
        for (; p < k; p++) s += a[p] * TE.Get(w, p);
        return s;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Tile1x4<TE>(int k, float* a, void* w, long ldw, float* c, float beta) where TE : unmanaged, IGemmElem
    {
        Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default;
        void* w1 = GemmPack.Offset<TE>(w, ldw), w2 = GemmPack.Offset<TE>(w, 2 * ldw), w3 = GemmPack.Offset<TE>(w, 3 * ldw);
        int p = 0;
        for (; p + 16 <= k; p += 16)
        {
            var x = Vector512.Load(a + p);
            s0 = Avx512F.FusedMultiplyAdd(x, TE.Load16(w, p), s0);
            s1 = Avx512F.FusedMultiplyAdd(x, TE.Load16(w1, p), s1);
            s2 = Avx512F.FusedMultiplyAdd(x, TE.Load16(w2, p), s2);
            s3 = Avx512F.FusedMultiplyAdd(x, TE.Load16(w3, p), s3);
        }
        Tail<TE>(k, p, a, w, w1, w2, w3, c, beta, s0, s1, s2, s3);
    }

    /// <summary>
    /// How far ahead of its reads <see cref="Row1{TE}"/> asks for weight lines with a non-temporal prefetch (0: none).
    /// Rows are read one after another, so this runs ahead along the thread's whole stream, into the next rows.
    /// Without it a long row streams slower than a short one: with k = 4864 (down_proj, its fp32 x is 19 KiB of the
    /// 48 KiB L1) the same bytes read as [896, 4864] gave 49-62 GB/s against 70-74 as [4864, 896] (2 threads,
    /// bench gemv-shape); with 8 KiB ahead 68-75 for both. The prefetch changes no value.
    /// </summary>
    internal static int PrefetchBytes = 8192;

    /// <summary>One output of the M = 1 path: sum_p a[p] * w[p] (four 16-lane accumulators, fixed order), prefetching
    /// the weight bytes <paramref name="ahead"/> on (<see cref="PrefetchBytes"/>, read by the caller once per range of
    /// rows: this method is compiled once, fully optimised, and a static read here would go through the class-init
    /// helper on every row when it is compiled before <see cref="GemmSmallM"/> is initialised).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float Row1<TE>(int k, float* a, void* w, int ahead) where TE : unmanaged, IGemmElem
    {
        Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default;
        int p = 0;
        byte* pf = (byte*)w + ahead;
        for (; p + 64 <= k; p += 64)
        {
            if (ahead != 0)
            {
                byte* q = pf + (long)p * TE.Bytes;                               // the 64 elements' lines, 'ahead' bytes on
                Sse.PrefetchNonTemporal(q);
                Sse.PrefetchNonTemporal(q + 64);
                if (TE.Bytes == 4) { Sse.PrefetchNonTemporal(q + 128); Sse.PrefetchNonTemporal(q + 192); }
            }
            s0 = Avx512F.FusedMultiplyAdd(Vector512.Load(a + p), TE.Load16(w, p), s0);
            s1 = Avx512F.FusedMultiplyAdd(Vector512.Load(a + p + 16), TE.Load16(w, p + 16), s1);
            s2 = Avx512F.FusedMultiplyAdd(Vector512.Load(a + p + 32), TE.Load16(w, p + 32), s2);
            s3 = Avx512F.FusedMultiplyAdd(Vector512.Load(a + p + 48), TE.Load16(w, p + 48), s3);
        }
        for (; p + 16 <= k; p += 16) s0 = Avx512F.FusedMultiplyAdd(Vector512.Load(a + p), TE.Load16(w, p), s0);
        float r = Vector512.Sum((s0 + s1) + (s2 + s3));
        for (; p < k; p++) r += a[p] * TE.Get(w, p);
        return r;
    }

    /// <summary>Reduces four accumulators, adds the scalar k tail, stores four adjacent outputs.</summary>
    static void Tail<TE>(int k, int p, float* a, void* w0, void* w1, void* w2, void* w3, float* c, float beta,
        Vector512<float> s0, Vector512<float> s1, Vector512<float> s2, Vector512<float> s3) where TE : unmanaged, IGemmElem
    {
        float r0 = Vector512.Sum(s0), r1 = Vector512.Sum(s1), r2 = Vector512.Sum(s2), r3 = Vector512.Sum(s3);
        for (; p < k; p++)
        {
            float x = a[p];
            r0 += x * TE.Get(w0, p); r1 += x * TE.Get(w1, p); r2 += x * TE.Get(w2, p); r3 += x * TE.Get(w3, p);
        }
        Put(c, r0, beta); Put(c + 1, r1, beta); Put(c + 2, r2, beta); Put(c + 3, r3, beta);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Tile4x4<TE>(int k, float* a, long lda, void* w, long ldw, float* c, long ldc, float beta) where TE : unmanaged, IGemmElem
    {
        Vector512<float> s00 = default, s01 = default, s02 = default, s03 = default;
        Vector512<float> s10 = default, s11 = default, s12 = default, s13 = default;
        Vector512<float> s20 = default, s21 = default, s22 = default, s23 = default;
        Vector512<float> s30 = default, s31 = default, s32 = default, s33 = default;
        void* w1 = GemmPack.Offset<TE>(w, ldw), w2 = GemmPack.Offset<TE>(w, 2 * ldw), w3 = GemmPack.Offset<TE>(w, 3 * ldw);
        float* a1 = a + lda, a2 = a + 2 * lda, a3 = a + 3 * lda;
        int p = 0;
        for (; p + 16 <= k; p += 16)
        {
            var y0 = TE.Load16(w, p); var y1 = TE.Load16(w1, p); var y2 = TE.Load16(w2, p); var y3 = TE.Load16(w3, p);
            var x = Vector512.Load(a + p);
            s00 = Avx512F.FusedMultiplyAdd(x, y0, s00); s01 = Avx512F.FusedMultiplyAdd(x, y1, s01);
            s02 = Avx512F.FusedMultiplyAdd(x, y2, s02); s03 = Avx512F.FusedMultiplyAdd(x, y3, s03);
            x = Vector512.Load(a1 + p);
            s10 = Avx512F.FusedMultiplyAdd(x, y0, s10); s11 = Avx512F.FusedMultiplyAdd(x, y1, s11);
            s12 = Avx512F.FusedMultiplyAdd(x, y2, s12); s13 = Avx512F.FusedMultiplyAdd(x, y3, s13);
            x = Vector512.Load(a2 + p);
            s20 = Avx512F.FusedMultiplyAdd(x, y0, s20); s21 = Avx512F.FusedMultiplyAdd(x, y1, s21);
            s22 = Avx512F.FusedMultiplyAdd(x, y2, s22); s23 = Avx512F.FusedMultiplyAdd(x, y3, s23);
            x = Vector512.Load(a3 + p);
            s30 = Avx512F.FusedMultiplyAdd(x, y0, s30); s31 = Avx512F.FusedMultiplyAdd(x, y1, s31);
            s32 = Avx512F.FusedMultiplyAdd(x, y2, s32); s33 = Avx512F.FusedMultiplyAdd(x, y3, s33);
        }
        Tail<TE>(k, p, a, w, w1, w2, w3, c, beta, s00, s01, s02, s03);
        Tail<TE>(k, p, a1, w, w1, w2, w3, c + ldc, beta, s10, s11, s12, s13);
        Tail<TE>(k, p, a2, w, w1, w2, w3, c + 2 * ldc, beta, s20, s21, s22, s23);
        Tail<TE>(k, p, a3, w, w1, w2, w3, c + 3 * ldc, beta, s30, s31, s32, s33);
    }
}
