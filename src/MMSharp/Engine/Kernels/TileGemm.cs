using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace MMSharp.Engine.Kernels;

/// <summary>The vector operations the tile kernels need, so one generic kernel serves every width (the JIT
/// specialises a generic method per struct type argument, so there is no indirection at run time).</summary>
internal unsafe interface IVec<TV> where TV : struct
{
    static abstract int Width { get; }
    static abstract TV Zero { get; }
    static abstract TV Load(float* p);
    static abstract void Store(float* p, TV v);
    static abstract TV Splat(float x);
    /// <summary>a * b + c.</summary>
    static abstract TV Fma(TV a, TV b, TV c);
}

internal unsafe struct TileVec512 : IVec<Vector512<float>>
{
    public static int Width => 16;
    public static Vector512<float> Zero => Vector512<float>.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Load(float* p) => Vector512.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(float* p, Vector512<float> v) => v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Splat(float x) => Vector512.Create(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Fma(Vector512<float> a, Vector512<float> b, Vector512<float> c) => Vector512.FusedMultiplyAdd(a, b, c);
}

internal unsafe struct TileVec256 : IVec<Vector256<float>>
{
    public static int Width => 8;
    public static Vector256<float> Zero => Vector256<float>.Zero;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Load(float* p) => Vector256.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(float* p, Vector256<float> v) => v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Splat(float x) => Vector256.Create(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Fma(Vector256<float> a, Vector256<float> b, Vector256<float> c) => Vector256.FusedMultiplyAdd(a, b, c);
}

/// <summary>
/// Small in-cache matrix products for tiled kernels (attention tiles, ≤ 64 × 64 × 256): C[m, n] (+)= Σ_p A(i, p) · B[p, :].
/// A is read one scalar at a time (broadcast), so it may have any strides — a transposed tile costs nothing;
/// B rows are contiguous and n must be a multiple of 16 (callers pad their tiles with zeros), so there are no
/// column tails. Unlike <see cref="Gemm"/> there is no packing: the operands already sit in L1/L2.
/// </summary>
public static unsafe class TileGemm
{
    /// <summary>C(i, j) = [C(i, j) +] Σ_p a[i·aRow + p·aCol] · b[p·ldb + j] for i &lt; m, j &lt; n (n % 16 == 0).</summary>
    public static void MulAdd(int m, int n, int k, float* a, long aRow, long aCol, float* b, long ldb, float* c, long ldc, bool accumulate)
    {
        if ((n & 15) != 0) throw new ArgumentException($"TileGemm.MulAdd: n = {n} is not a multiple of 16");
        if (Vector512.IsHardwareAccelerated) MulAdd<TileVec512, Vector512<float>>(m, n, k, a, aRow, aCol, b, ldb, c, ldc, accumulate);
        else if (Vector256.IsHardwareAccelerated) MulAdd<TileVec256, Vector256<float>>(m, n, k, a, aRow, aCol, b, ldb, c, ldc, accumulate);
        else MulAddScalar(m, n, k, a, aRow, aCol, b, ldb, c, ldc, accumulate);
    }

    internal static void MulAddScalar(int m, int n, int k, float* a, long aRow, long aCol, float* b, long ldb, float* c, long ldc, bool accumulate)
    {
        for (int i = 0; i < m; i++)
        {
            float* ci = c + i * ldc;
            if (!accumulate) new Span<float>(ci, n).Clear();
            for (int p = 0; p < k; p++)
            {
                float av = a[i * aRow + p * aCol];
                float* bp = b + p * ldb;
                for (int j = 0; j < n; j++) ci[j] += av * bp[j];
            }
        }
    }

    static void MulAdd<TO, TV>(int m, int n, int k, float* a, long aRow, long aCol, float* b, long ldb, float* c, long ldc, bool acc)
        where TO : struct, IVec<TV> where TV : struct
    {
        int w = TO.Width, nv = n / w;
        int i = 0;
        for (; i + 4 <= m; i += 4)
        {
            int v = 0;
            for (; v + 4 <= nv; v += 4) Block4x4<TO, TV>(k, a + i * aRow, aRow, aCol, b + v * w, ldb, c + i * ldc + v * w, ldc, acc);
            for (; v < nv; v++) Block4x1<TO, TV>(k, a + i * aRow, aRow, aCol, b + v * w, ldb, c + i * ldc + v * w, ldc, acc);
        }
        for (; i < m; i++)
        {
            int v = 0;
            for (; v + 4 <= nv; v += 4) Block1x4<TO, TV>(k, a + i * aRow, aCol, b + v * w, ldb, c + i * ldc + v * w, acc);
            for (; v < nv; v++) Block1x1<TO, TV>(k, a + i * aRow, aCol, b + v * w, ldb, c + i * ldc + v * w, acc);
        }
    }

    // 4 rows × 4 vectors: 16 accumulators + 4 B vectors + 1 broadcast stay in registers (AVX-512 has 32).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Block4x4<TO, TV>(int k, float* a, long aRow, long aCol, float* b, long ldb, float* c, long ldc, bool acc)
        where TO : struct, IVec<TV> where TV : struct
    {
        int w = TO.Width;
        TV c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33;
        if (acc)
        {
            c00 = TO.Load(c); c01 = TO.Load(c + w); c02 = TO.Load(c + 2 * w); c03 = TO.Load(c + 3 * w);
            float* r1 = c + ldc; c10 = TO.Load(r1); c11 = TO.Load(r1 + w); c12 = TO.Load(r1 + 2 * w); c13 = TO.Load(r1 + 3 * w);
            float* r2 = c + 2 * ldc; c20 = TO.Load(r2); c21 = TO.Load(r2 + w); c22 = TO.Load(r2 + 2 * w); c23 = TO.Load(r2 + 3 * w);
            float* r3 = c + 3 * ldc; c30 = TO.Load(r3); c31 = TO.Load(r3 + w); c32 = TO.Load(r3 + 2 * w); c33 = TO.Load(r3 + 3 * w);
        }
        else
        {
            c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = c20 = c21 = c22 = c23 = c30 = c31 = c32 = c33 = TO.Zero;
        }
        for (int p = 0; p < k; p++)
        {
            float* bp = b + p * ldb;
            TV b0 = TO.Load(bp), b1 = TO.Load(bp + w), b2 = TO.Load(bp + 2 * w), b3 = TO.Load(bp + 3 * w);
            float* ap = a + p * aCol;
            TV x = TO.Splat(ap[0]);
            c00 = TO.Fma(x, b0, c00); c01 = TO.Fma(x, b1, c01); c02 = TO.Fma(x, b2, c02); c03 = TO.Fma(x, b3, c03);
            x = TO.Splat(ap[aRow]);
            c10 = TO.Fma(x, b0, c10); c11 = TO.Fma(x, b1, c11); c12 = TO.Fma(x, b2, c12); c13 = TO.Fma(x, b3, c13);
            x = TO.Splat(ap[2 * aRow]);
            c20 = TO.Fma(x, b0, c20); c21 = TO.Fma(x, b1, c21); c22 = TO.Fma(x, b2, c22); c23 = TO.Fma(x, b3, c23);
            x = TO.Splat(ap[3 * aRow]);
            c30 = TO.Fma(x, b0, c30); c31 = TO.Fma(x, b1, c31); c32 = TO.Fma(x, b2, c32); c33 = TO.Fma(x, b3, c33);
        }
        TO.Store(c, c00); TO.Store(c + w, c01); TO.Store(c + 2 * w, c02); TO.Store(c + 3 * w, c03);
        float* s1 = c + ldc; TO.Store(s1, c10); TO.Store(s1 + w, c11); TO.Store(s1 + 2 * w, c12); TO.Store(s1 + 3 * w, c13);
        float* s2 = c + 2 * ldc; TO.Store(s2, c20); TO.Store(s2 + w, c21); TO.Store(s2 + 2 * w, c22); TO.Store(s2 + 3 * w, c23);
        float* s3 = c + 3 * ldc; TO.Store(s3, c30); TO.Store(s3 + w, c31); TO.Store(s3 + 2 * w, c32); TO.Store(s3 + 3 * w, c33);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Block4x1<TO, TV>(int k, float* a, long aRow, long aCol, float* b, long ldb, float* c, long ldc, bool acc)
        where TO : struct, IVec<TV> where TV : struct
    {
        TV c0 = acc ? TO.Load(c) : TO.Zero, c1 = acc ? TO.Load(c + ldc) : TO.Zero;
        TV c2 = acc ? TO.Load(c + 2 * ldc) : TO.Zero, c3 = acc ? TO.Load(c + 3 * ldc) : TO.Zero;
        for (int p = 0; p < k; p++)
        {
            TV b0 = TO.Load(b + p * ldb);
            float* ap = a + p * aCol;
            c0 = TO.Fma(TO.Splat(ap[0]), b0, c0);
            c1 = TO.Fma(TO.Splat(ap[aRow]), b0, c1);
            c2 = TO.Fma(TO.Splat(ap[2 * aRow]), b0, c2);
            c3 = TO.Fma(TO.Splat(ap[3 * aRow]), b0, c3);
        }
        TO.Store(c, c0); TO.Store(c + ldc, c1); TO.Store(c + 2 * ldc, c2); TO.Store(c + 3 * ldc, c3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Block1x4<TO, TV>(int k, float* a, long aCol, float* b, long ldb, float* c, bool acc)
        where TO : struct, IVec<TV> where TV : struct
    {
        int w = TO.Width;
        TV c0 = acc ? TO.Load(c) : TO.Zero, c1 = acc ? TO.Load(c + w) : TO.Zero;
        TV c2 = acc ? TO.Load(c + 2 * w) : TO.Zero, c3 = acc ? TO.Load(c + 3 * w) : TO.Zero;
        for (int p = 0; p < k; p++)
        {
            float* bp = b + p * ldb;
            TV x = TO.Splat(a[p * aCol]);
            c0 = TO.Fma(x, TO.Load(bp), c0);
            c1 = TO.Fma(x, TO.Load(bp + w), c1);
            c2 = TO.Fma(x, TO.Load(bp + 2 * w), c2);
            c3 = TO.Fma(x, TO.Load(bp + 3 * w), c3);
        }
        TO.Store(c, c0); TO.Store(c + w, c1); TO.Store(c + 2 * w, c2); TO.Store(c + 3 * w, c3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static void Block1x1<TO, TV>(int k, float* a, long aCol, float* b, long ldb, float* c, bool acc)
        where TO : struct, IVec<TV> where TV : struct
    {
        TV c0 = acc ? TO.Load(c) : TO.Zero;
        for (int p = 0; p < k; p++) c0 = TO.Fma(TO.Splat(a[p * aCol]), TO.Load(b + p * ldb), c0);
        TO.Store(c, c0);
    }
}

/// <summary>A per-thread, pinned scratch buffer for kernels that need a few tiles of workspace per work item
/// (grown on demand, never freed), so hot loops allocate nothing. One user at a time per thread.</summary>
internal static unsafe class ThreadScratch
{
    [ThreadStatic] static float[]? _buffer;

    public static float* Floats(long count)
    {
        var b = _buffer;
        if (b == null || b.LongLength < count)
        {
            long n = Math.Max(count, b == null ? 0 : b.LongLength * 2);
            _buffer = b = GC.AllocateUninitializedArray<float>(checked((int)n), pinned: true);
        }
        return (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(b));
    }
}
