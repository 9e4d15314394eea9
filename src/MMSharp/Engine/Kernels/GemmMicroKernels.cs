using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MMSharp.Engine.Kernels;

/// <summary>
/// GEMM micro-kernels: C[MR, NR] (+)= sum_p Apanel[p, 0..MR) x Bpanel[p, 0..NR) over packed panels
/// (A panel: MR floats per k, B panel: NR floats per k). The whole C tile lives in registers for the
/// k loop; C is touched once at the end: beta 0 overwrites, beta 1 accumulates (later k blocks),
/// anything else scales the old C (first k block with a caller's beta).
/// </summary>
/// <remarks>
/// AVX-512 tile shapes tried (Zen 5, 2 FMA pipes of 4-cycle latency, 32 zmm registers; the JIT keeps all
/// accumulators in registers for each): 14x32 (28 accumulators, 16 loads per 28 FMAs), 6x64 and 8x48
/// (24 accumulators, 10-11 loads per 24 FMAs). 8x48 was fastest or tied in every sweep, 14x32 3-8% behind:
/// fewer loads per FMA, and M = 256/1024/2048 are multiples of 8 (no edge tiles).
/// </remarks>
internal static unsafe class GemmMicroKernels
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Store(float* p, Vector512<float> v, float beta)
    {
        if (beta == 0f) v.Store(p);
        else if (beta == 1f) (Vector512.Load(p) + v).Store(p);
        else Avx512F.FusedMultiplyAdd(Vector512.Load(p), Vector512.Create(beta), v).Store(p);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Store(float* p, Vector256<float> v, float beta)
    {
        if (beta == 0f) v.Store(p);
        else if (beta == 1f) (Vector256.Load(p) + v).Store(p);
        else Fma.MultiplyAdd(Vector256.Load(p), Vector256.Create(beta), v).Store(p);
    }

    /// <summary>8x48 tile: 24 zmm accumulators; per k: 3 B loads, 8 A broadcasts, 24 FMAs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Avx512_8x48(int kc, float* a, float* b, float* c, long ldc, float beta)
    {
        Vector512<float> c0_0 = Vector512<float>.Zero, c0_1 = Vector512<float>.Zero, c0_2 = Vector512<float>.Zero, c1_0 = Vector512<float>.Zero, c1_1 = Vector512<float>.Zero, c1_2 = Vector512<float>.Zero, c2_0 = Vector512<float>.Zero, c2_1 = Vector512<float>.Zero, c2_2 = Vector512<float>.Zero, c3_0 = Vector512<float>.Zero, c3_1 = Vector512<float>.Zero, c3_2 = Vector512<float>.Zero, c4_0 = Vector512<float>.Zero, c4_1 = Vector512<float>.Zero, c4_2 = Vector512<float>.Zero, c5_0 = Vector512<float>.Zero, c5_1 = Vector512<float>.Zero, c5_2 = Vector512<float>.Zero, c6_0 = Vector512<float>.Zero, c6_1 = Vector512<float>.Zero, c6_2 = Vector512<float>.Zero, c7_0 = Vector512<float>.Zero, c7_1 = Vector512<float>.Zero, c7_2 = Vector512<float>.Zero;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            var b2 = Vector512.Load(b + 32);
            var a0 = Vector512.Create(a[0]);
            c0_0 = Avx512F.FusedMultiplyAdd(a0, b0, c0_0);
            c0_1 = Avx512F.FusedMultiplyAdd(a0, b1, c0_1);
            c0_2 = Avx512F.FusedMultiplyAdd(a0, b2, c0_2);
            var a1 = Vector512.Create(a[1]);
            c1_0 = Avx512F.FusedMultiplyAdd(a1, b0, c1_0);
            c1_1 = Avx512F.FusedMultiplyAdd(a1, b1, c1_1);
            c1_2 = Avx512F.FusedMultiplyAdd(a1, b2, c1_2);
            var a2 = Vector512.Create(a[2]);
            c2_0 = Avx512F.FusedMultiplyAdd(a2, b0, c2_0);
            c2_1 = Avx512F.FusedMultiplyAdd(a2, b1, c2_1);
            c2_2 = Avx512F.FusedMultiplyAdd(a2, b2, c2_2);
            var a3 = Vector512.Create(a[3]);
            c3_0 = Avx512F.FusedMultiplyAdd(a3, b0, c3_0);
            c3_1 = Avx512F.FusedMultiplyAdd(a3, b1, c3_1);
            c3_2 = Avx512F.FusedMultiplyAdd(a3, b2, c3_2);
            var a4 = Vector512.Create(a[4]);
            c4_0 = Avx512F.FusedMultiplyAdd(a4, b0, c4_0);
            c4_1 = Avx512F.FusedMultiplyAdd(a4, b1, c4_1);
            c4_2 = Avx512F.FusedMultiplyAdd(a4, b2, c4_2);
            var a5 = Vector512.Create(a[5]);
            c5_0 = Avx512F.FusedMultiplyAdd(a5, b0, c5_0);
            c5_1 = Avx512F.FusedMultiplyAdd(a5, b1, c5_1);
            c5_2 = Avx512F.FusedMultiplyAdd(a5, b2, c5_2);
            var a6 = Vector512.Create(a[6]);
            c6_0 = Avx512F.FusedMultiplyAdd(a6, b0, c6_0);
            c6_1 = Avx512F.FusedMultiplyAdd(a6, b1, c6_1);
            c6_2 = Avx512F.FusedMultiplyAdd(a6, b2, c6_2);
            var a7 = Vector512.Create(a[7]);
            c7_0 = Avx512F.FusedMultiplyAdd(a7, b0, c7_0);
            c7_1 = Avx512F.FusedMultiplyAdd(a7, b1, c7_1);
            c7_2 = Avx512F.FusedMultiplyAdd(a7, b2, c7_2);
            a += 8; b += 48;
        }
        Store(c, c0_0, beta);
        Store(c + 16, c0_1, beta);
        Store(c + 32, c0_2, beta);
        Store(c + 1 * ldc, c1_0, beta);
        Store(c + 1 * ldc + 16, c1_1, beta);
        Store(c + 1 * ldc + 32, c1_2, beta);
        Store(c + 2 * ldc, c2_0, beta);
        Store(c + 2 * ldc + 16, c2_1, beta);
        Store(c + 2 * ldc + 32, c2_2, beta);
        Store(c + 3 * ldc, c3_0, beta);
        Store(c + 3 * ldc + 16, c3_1, beta);
        Store(c + 3 * ldc + 32, c3_2, beta);
        Store(c + 4 * ldc, c4_0, beta);
        Store(c + 4 * ldc + 16, c4_1, beta);
        Store(c + 4 * ldc + 32, c4_2, beta);
        Store(c + 5 * ldc, c5_0, beta);
        Store(c + 5 * ldc + 16, c5_1, beta);
        Store(c + 5 * ldc + 32, c5_2, beta);
        Store(c + 6 * ldc, c6_0, beta);
        Store(c + 6 * ldc + 16, c6_1, beta);
        Store(c + 6 * ldc + 32, c6_2, beta);
        Store(c + 7 * ldc, c7_0, beta);
        Store(c + 7 * ldc + 16, c7_1, beta);
        Store(c + 7 * ldc + 32, c7_2, beta);
    }

    /// <summary>6x16 tile: 12 ymm accumulators; per k: 2 B loads, 6 A broadcasts, 12 FMAs.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Avx2_6x16(int kc, float* a, float* b, float* c, long ldc, float beta)
    {
        Vector256<float> c0_0 = Vector256<float>.Zero, c0_1 = Vector256<float>.Zero, c1_0 = Vector256<float>.Zero, c1_1 = Vector256<float>.Zero, c2_0 = Vector256<float>.Zero, c2_1 = Vector256<float>.Zero, c3_0 = Vector256<float>.Zero, c3_1 = Vector256<float>.Zero, c4_0 = Vector256<float>.Zero, c4_1 = Vector256<float>.Zero, c5_0 = Vector256<float>.Zero, c5_1 = Vector256<float>.Zero;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector256.Load(b);
            var b1 = Vector256.Load(b + 8);
            var a0 = Vector256.Create(a[0]);
            c0_0 = Fma.MultiplyAdd(a0, b0, c0_0);
            c0_1 = Fma.MultiplyAdd(a0, b1, c0_1);
            var a1 = Vector256.Create(a[1]);
            c1_0 = Fma.MultiplyAdd(a1, b0, c1_0);
            c1_1 = Fma.MultiplyAdd(a1, b1, c1_1);
            var a2 = Vector256.Create(a[2]);
            c2_0 = Fma.MultiplyAdd(a2, b0, c2_0);
            c2_1 = Fma.MultiplyAdd(a2, b1, c2_1);
            var a3 = Vector256.Create(a[3]);
            c3_0 = Fma.MultiplyAdd(a3, b0, c3_0);
            c3_1 = Fma.MultiplyAdd(a3, b1, c3_1);
            var a4 = Vector256.Create(a[4]);
            c4_0 = Fma.MultiplyAdd(a4, b0, c4_0);
            c4_1 = Fma.MultiplyAdd(a4, b1, c4_1);
            var a5 = Vector256.Create(a[5]);
            c5_0 = Fma.MultiplyAdd(a5, b0, c5_0);
            c5_1 = Fma.MultiplyAdd(a5, b1, c5_1);
            a += 6; b += 16;
        }
        Store(c, c0_0, beta);
        Store(c + 8, c0_1, beta);
        Store(c + 1 * ldc, c1_0, beta);
        Store(c + 1 * ldc + 8, c1_1, beta);
        Store(c + 2 * ldc, c2_0, beta);
        Store(c + 2 * ldc + 8, c2_1, beta);
        Store(c + 3 * ldc, c3_0, beta);
        Store(c + 3 * ldc + 8, c3_1, beta);
        Store(c + 4 * ldc, c4_0, beta);
        Store(c + 4 * ldc + 8, c4_1, beta);
        Store(c + 5 * ldc, c5_0, beta);
        Store(c + 5 * ldc + 8, c5_1, beta);
    }


    /// <summary>Portable 4x8 tile for machines without AVX2 (and for tests of the scalar path).</summary>
    internal static void Scalar_4x8(int kc, float* a, float* b, float* c, long ldc, float beta)
    {
        float* acc = stackalloc float[32];
        for (int i = 0; i < 32; i++) acc[i] = 0f;
        for (int p = 0; p < kc; p++, a += 4, b += 8)
            for (int i = 0; i < 4; i++)
            {
                float ai = a[i];
                for (int j = 0; j < 8; j++) acc[i * 8 + j] = MathF.FusedMultiplyAdd(ai, b[j], acc[i * 8 + j]);
            }
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 8; j++)
            {
                float* dst = c + i * ldc + j;
                float v = acc[i * 8 + j];
                *dst = beta == 0f ? v : beta == 1f ? *dst + v : MathF.FusedMultiplyAdd(beta, *dst, v);
            }
    }
}
