using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MMSharp.Engine.Kernels;

/// <summary>An element type GEMM can read and widen to fp32 (fp32 itself or raw bf16 words).</summary>
internal unsafe interface IGemmElem
{
    /// <summary>Bytes per element.</summary>
    static abstract int Bytes { get; }
    static abstract float Get(void* p, long i);
    /// <summary>16 consecutive elements at p[i..i+16) as fp32.</summary>
    static abstract Vector512<float> Load16(void* p, long i);
}

internal unsafe struct F32Elem : IGemmElem
{
    public static int Bytes => 4;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Get(void* p, long i) => ((float*)p)[i];
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load16(void* p, long i) => Vector512.Load((float*)p + i);
}

internal unsafe struct BF16Elem : IGemmElem
{
    public static int Bytes => 2;
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Get(void* p, long i) => Half16.BF16ToFloat(((ushort*)p)[i]);
    /// <summary>bf16 -> fp32 in registers: zero-extend each word to 32 bits (vpmovzxwd) and shift it into the high half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load16(void* p, long i) =>
        Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512UInt32(Vector256.Load((ushort*)p + i)), 16).AsSingle();
}

/// <summary>
/// Packing of GEMM operands into the panel layout the micro-kernels stream through:
/// A block [mc, kc] -> panels of MR rows, each stored k-major (MR floats per k);
/// B block [kc, nc] -> panels of NR columns, each stored k-major (NR floats per k).
/// Edge panels are zero-padded, so the micro-kernel never needs a tail. Operands whose packed
/// direction is strided in memory (row-major A, and B given as W[n, k] as in y = x W^T) are
/// transposed 16x16 at a time in zmm registers instead of element by element.
/// </summary>
internal static unsafe class GemmPack
{
    /// <summary>Floats the packer may write past the end of a panel block (the overlapping 16-wide stores).</summary>
    internal const int Slack = 16;

    static bool Vec512 => Vector512.IsHardwareAccelerated && Avx512F.IsSupported;

    /// <summary>Packs A(i, p) = a[i*aRow + p*aCol], i &lt; mc, p &lt; kc, into MR-row panels at dst.</summary>
    internal static void PackA(int mc, int kc, float* a, long aRow, long aCol, int mr, float* dst)
    {
        for (int i0 = 0; i0 < mc; i0 += mr, dst += (long)kc * mr)
        {
            int rows = Math.Min(mr, mc - i0);
            float* src = a + i0 * aRow;
            int p = 0;
            if (aCol == 1 && Vec512 && mr <= 16)
            {
                // row-major A: rows are contiguous along k -> transpose 16 k at a time; stores of 16 floats
                // spaced mr apart overlap and are overwritten by the next one (Slack covers the last).
                for (; p + 16 <= kc; p += 16) Transpose16<F32Elem>(src + p, aRow, rows, dst + p * mr, mr);
            }
            else if (aRow == 1 && rows == mr && mr == 8 && Vector256.IsHardwareAccelerated)
            {
                // column-major A (e.g. gᵀ in a weight gradient dW = gᵀx): each k holds the panel's 8 rows contiguously
                for (; p < kc; p++) Vector256.Load(src + p * aCol).Store(dst + p * 8);
            }
            else if (aRow == 1 && rows == mr)
            {
                for (; p < kc; p++)
                {
                    float* s = src + p * aCol, d = dst + p * mr;
                    for (int r = 0; r < mr; r++) d[r] = s[r];
                }
            }
            for (; p < kc; p++)
            {
                float* d = dst + p * mr;
                int r = 0;
                for (; r < rows; r++) d[r] = src[r * aRow + p * aCol];
                for (; r < mr; r++) d[r] = 0f;
            }
        }
    }

    /// <summary>Packs B(p, j) = b[p*bRow + j*bCol] (fp32 or bf16 widened), p &lt; kc, j &lt; nc, into NR-column panels at dst.</summary>
    internal static void PackB<TE>(int kc, int nc, void* b, long bRow, long bCol, int nr, float* dst) where TE : unmanaged, IGemmElem
    {
        for (int j0 = 0; j0 < nc; j0 += nr, dst += (long)kc * nr)
        {
            int cols = Math.Min(nr, nc - j0);
            long colBase = j0 * bCol;
            int p = 0;
            if (bRow == 1 && Vec512 && nr % 16 == 0)
            {
                // B = W^T with W rows contiguous along k: transpose 16 columns x 16 k at a time, walking
                // along k for one group of 16 W rows at a time (16 sequential streams for the prefetcher)
                int kFull = kc & ~15;
                for (int s = 0; s < nr; s += 16)
                {
                    void* rows = Offset<TE>(b, colBase + s * bCol);
                    int n16 = Math.Clamp(cols - s, 0, 16);
                    for (int q = 0; q < kFull; q += 16) Transpose16<TE>(Offset<TE>(rows, q), bCol, n16, dst + q * nr + s, nr);
                }
                p = kFull;
            }
            else if (bCol == 1 && cols == nr && Vec512 && nr % 16 == 0)
            {
                for (; p < kc; p++)
                {
                    long row = p * bRow + colBase;
                    float* d = dst + p * nr;
                    for (int s = 0; s < nr; s += 16) TE.Load16(b, row + s).Store(d + s);
                }
            }
            for (; p < kc; p++)
            {
                float* d = dst + p * nr;
                long row = p * bRow + colBase;
                int j = 0;
                for (; j < cols; j++) d[j] = TE.Get(b, row + j * bCol);
                for (; j < nr; j++) d[j] = 0f;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void* Offset<TE>(void* p, long elements) where TE : unmanaged, IGemmElem => (byte*)p + elements * TE.Bytes;

    /// <summary>
    /// Reads 16 consecutive elements from each of <paramref name="rows"/> (&lt;= 16) source rows spaced
    /// <paramref name="ld"/> elements apart (missing rows read as zero) and writes the transpose:
    /// output q (16 floats = element q of every row) goes to dst + q*dstStride.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Transpose16<TE>(void* src, long ld, int rows, float* dst, long dstStride) where TE : unmanaged, IGemmElem
    {
        var z = Vector512<float>.Zero;
        var r0 = rows > 0 ? TE.Load16(src, 0) : z;
        var r1 = rows > 1 ? TE.Load16(src, ld) : z;
        var r2 = rows > 2 ? TE.Load16(src, 2 * ld) : z;
        var r3 = rows > 3 ? TE.Load16(src, 3 * ld) : z;
        var r4 = rows > 4 ? TE.Load16(src, 4 * ld) : z;
        var r5 = rows > 5 ? TE.Load16(src, 5 * ld) : z;
        var r6 = rows > 6 ? TE.Load16(src, 6 * ld) : z;
        var r7 = rows > 7 ? TE.Load16(src, 7 * ld) : z;
        var r8 = rows > 8 ? TE.Load16(src, 8 * ld) : z;
        var r9 = rows > 9 ? TE.Load16(src, 9 * ld) : z;
        var r10 = rows > 10 ? TE.Load16(src, 10 * ld) : z;
        var r11 = rows > 11 ? TE.Load16(src, 11 * ld) : z;
        var r12 = rows > 12 ? TE.Load16(src, 12 * ld) : z;
        var r13 = rows > 13 ? TE.Load16(src, 13 * ld) : z;
        var r14 = rows > 14 ? TE.Load16(src, 14 * ld) : z;
        var r15 = rows > 15 ? TE.Load16(src, 15 * ld) : z;

        // stage 1: interleave row pairs (within 128-bit lanes)
        var t0 = Avx512F.UnpackLow(r0, r1); var t1 = Avx512F.UnpackHigh(r0, r1);
        var t2 = Avx512F.UnpackLow(r2, r3); var t3 = Avx512F.UnpackHigh(r2, r3);
        var t4 = Avx512F.UnpackLow(r4, r5); var t5 = Avx512F.UnpackHigh(r4, r5);
        var t6 = Avx512F.UnpackLow(r6, r7); var t7 = Avx512F.UnpackHigh(r6, r7);
        var t8 = Avx512F.UnpackLow(r8, r9); var t9 = Avx512F.UnpackHigh(r8, r9);
        var t10 = Avx512F.UnpackLow(r10, r11); var t11 = Avx512F.UnpackHigh(r10, r11);
        var t12 = Avx512F.UnpackLow(r12, r13); var t13 = Avx512F.UnpackHigh(r12, r13);
        var t14 = Avx512F.UnpackLow(r14, r15); var t15 = Avx512F.UnpackHigh(r14, r15);
        // stage 2: u[4g+q] holds rows 4g..4g+3 at k = 4*lane + q
        var u0 = Avx512F.UnpackLow(t0.AsDouble(), t2.AsDouble()).AsSingle();
        var u1 = Avx512F.UnpackHigh(t0.AsDouble(), t2.AsDouble()).AsSingle();
        var u2 = Avx512F.UnpackLow(t1.AsDouble(), t3.AsDouble()).AsSingle();
        var u3 = Avx512F.UnpackHigh(t1.AsDouble(), t3.AsDouble()).AsSingle();
        var u4 = Avx512F.UnpackLow(t4.AsDouble(), t6.AsDouble()).AsSingle();
        var u5 = Avx512F.UnpackHigh(t4.AsDouble(), t6.AsDouble()).AsSingle();
        var u6 = Avx512F.UnpackLow(t5.AsDouble(), t7.AsDouble()).AsSingle();
        var u7 = Avx512F.UnpackHigh(t5.AsDouble(), t7.AsDouble()).AsSingle();
        var u8 = Avx512F.UnpackLow(t8.AsDouble(), t10.AsDouble()).AsSingle();
        var u9 = Avx512F.UnpackHigh(t8.AsDouble(), t10.AsDouble()).AsSingle();
        var u10 = Avx512F.UnpackLow(t9.AsDouble(), t11.AsDouble()).AsSingle();
        var u11 = Avx512F.UnpackHigh(t9.AsDouble(), t11.AsDouble()).AsSingle();
        var u12 = Avx512F.UnpackLow(t12.AsDouble(), t14.AsDouble()).AsSingle();
        var u13 = Avx512F.UnpackHigh(t12.AsDouble(), t14.AsDouble()).AsSingle();
        var u14 = Avx512F.UnpackLow(t13.AsDouble(), t15.AsDouble()).AsSingle();
        var u15 = Avx512F.UnpackHigh(t13.AsDouble(), t15.AsDouble()).AsSingle();
        // stage 3: pair up 256-bit halves of groups (0,1) and (2,3) for each q
        var v0 = Avx512F.Shuffle4x128(u0, u4, 0x44); var x0 = Avx512F.Shuffle4x128(u0, u4, 0xEE);
        var v1 = Avx512F.Shuffle4x128(u1, u5, 0x44); var x1 = Avx512F.Shuffle4x128(u1, u5, 0xEE);
        var v2 = Avx512F.Shuffle4x128(u2, u6, 0x44); var x2 = Avx512F.Shuffle4x128(u2, u6, 0xEE);
        var v3 = Avx512F.Shuffle4x128(u3, u7, 0x44); var x3 = Avx512F.Shuffle4x128(u3, u7, 0xEE);
        var w0 = Avx512F.Shuffle4x128(u8, u12, 0x44); var y0 = Avx512F.Shuffle4x128(u8, u12, 0xEE);
        var w1 = Avx512F.Shuffle4x128(u9, u13, 0x44); var y1 = Avx512F.Shuffle4x128(u9, u13, 0xEE);
        var w2 = Avx512F.Shuffle4x128(u10, u14, 0x44); var y2 = Avx512F.Shuffle4x128(u10, u14, 0xEE);
        var w3 = Avx512F.Shuffle4x128(u11, u15, 0x44); var y3 = Avx512F.Shuffle4x128(u11, u15, 0xEE);
        // stage 4: output 4L+q = 128-bit lane L of u[q], u[4+q], u[8+q], u[12+q]. Stored in increasing
        // order: with dstStride < 16 each store's tail is overwritten by the next one.
        Avx512F.Shuffle4x128(v0, w0, 0x88).Store(dst);
        Avx512F.Shuffle4x128(v1, w1, 0x88).Store(dst + dstStride);
        Avx512F.Shuffle4x128(v2, w2, 0x88).Store(dst + 2 * dstStride);
        Avx512F.Shuffle4x128(v3, w3, 0x88).Store(dst + 3 * dstStride);
        Avx512F.Shuffle4x128(v0, w0, 0xDD).Store(dst + 4 * dstStride);
        Avx512F.Shuffle4x128(v1, w1, 0xDD).Store(dst + 5 * dstStride);
        Avx512F.Shuffle4x128(v2, w2, 0xDD).Store(dst + 6 * dstStride);
        Avx512F.Shuffle4x128(v3, w3, 0xDD).Store(dst + 7 * dstStride);
        Avx512F.Shuffle4x128(x0, y0, 0x88).Store(dst + 8 * dstStride);
        Avx512F.Shuffle4x128(x1, y1, 0x88).Store(dst + 9 * dstStride);
        Avx512F.Shuffle4x128(x2, y2, 0x88).Store(dst + 10 * dstStride);
        Avx512F.Shuffle4x128(x3, y3, 0x88).Store(dst + 11 * dstStride);
        Avx512F.Shuffle4x128(x0, y0, 0xDD).Store(dst + 12 * dstStride);
        Avx512F.Shuffle4x128(x1, y1, 0xDD).Store(dst + 13 * dstStride);
        Avx512F.Shuffle4x128(x2, y2, 0xDD).Store(dst + 14 * dstStride);
        Avx512F.Shuffle4x128(x3, y3, 0xDD).Store(dst + 15 * dstStride);
    }
}
