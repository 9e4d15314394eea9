using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using V256 = System.Runtime.Intrinsics.Vector256<float>;
using V512 = System.Runtime.Intrinsics.Vector512<float>;

namespace MMSharp.Engine.Kernels;

/// <summary>
/// Reductions of one contiguous fp32 row (sum of a mapped value, sum of a combined pair, max), the
/// building blocks of the reduce, softmax, loss and norm kernels. Four independent accumulators
/// in the body, the tail through a masked vector, and a fixed combination order: the result depends
/// only on the row's values and length, never on threads or alignment.
/// </summary>
[SkipLocalsInit] // stack buffers for tails are always written before they are read
public static unsafe class RowReduce
{
    static ReadOnlySpan<float> Iota => [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

    /// <summary>Σ op(x[i]) for i in [0, n).</summary>
    public static float SumMap<T>(ref T op, float* x, long n) where T : struct, IUnaryOp
    {
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            V512 a0 = V512.Zero, a1 = V512.Zero, a2 = V512.Zero, a3 = V512.Zero;
            for (; i + 64 <= n; i += 64)
            {
                a0 += op.Invoke(Vector512.Load(x + i));
                a1 += op.Invoke(Vector512.Load(x + i + 16));
                a2 += op.Invoke(Vector512.Load(x + i + 32));
                a3 += op.Invoke(Vector512.Load(x + i + 48));
            }
            for (; i + 16 <= n; i += 16) a0 += op.Invoke(Vector512.Load(x + i));
            if (i < n)
            {
                int m = (int)(n - i);
                float* t = stackalloc float[16];
                for (int j = 0; j < 16; j++) t[j] = j < m ? x[i + j] : 0f;
                var keep = Vector512.LessThan(Vector512.Create(Iota), Vector512.Create((float)m));
                a1 += Vector512.ConditionalSelect(keep, op.Invoke(Vector512.Load(t)), V512.Zero);
            }
            return Vector512.Sum((a0 + a1) + (a2 + a3));
        }
        if (Vector256.IsHardwareAccelerated)
        {
            V256 a0 = V256.Zero, a1 = V256.Zero, a2 = V256.Zero, a3 = V256.Zero;
            for (; i + 32 <= n; i += 32)
            {
                a0 += op.Invoke(Vector256.Load(x + i));
                a1 += op.Invoke(Vector256.Load(x + i + 8));
                a2 += op.Invoke(Vector256.Load(x + i + 16));
                a3 += op.Invoke(Vector256.Load(x + i + 24));
            }
            for (; i + 8 <= n; i += 8) a0 += op.Invoke(Vector256.Load(x + i));
            if (i < n)
            {
                int m = (int)(n - i);
                float* t = stackalloc float[8];
                for (int j = 0; j < 8; j++) t[j] = j < m ? x[i + j] : 0f;
                var keep = Vector256.LessThan(Vector256.Create(Iota), Vector256.Create((float)m));
                a1 += Vector256.ConditionalSelect(keep, op.Invoke(Vector256.Load(t)), V256.Zero);
            }
            return Vector256.Sum((a0 + a1) + (a2 + a3));
        }
        double s = 0; // scalar fallback: one sequential chain, so accumulate in double
        for (; i < n; i++) s += op.Invoke(x[i]);
        return (float)s;
    }

    /// <summary>y[i] = op(x[i]) and returns Σ y[i] (one pass; y may alias x).</summary>
    public static float MapSum<T>(ref T op, float* x, float* y, long n) where T : struct, IUnaryOp
    {
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            V512 a0 = V512.Zero, a1 = V512.Zero;
            for (; i + 32 <= n; i += 32)
            {
                var r0 = op.Invoke(Vector512.Load(x + i));
                var r1 = op.Invoke(Vector512.Load(x + i + 16));
                r0.Store(y + i); r1.Store(y + i + 16);
                a0 += r0; a1 += r1;
            }
            for (; i + 16 <= n; i += 16) { var r0 = op.Invoke(Vector512.Load(x + i)); r0.Store(y + i); a0 += r0; }
            if (i < n)
            {
                int m = (int)(n - i);
                float* t = stackalloc float[16];
                for (int j = 0; j < 16; j++) t[j] = j < m ? x[i + j] : 0f;
                var keep = Vector512.LessThan(Vector512.Create(Iota), Vector512.Create((float)m));
                var r = Vector512.ConditionalSelect(keep, op.Invoke(Vector512.Load(t)), V512.Zero);
                r.Store(t);
                for (int j = 0; j < m; j++) y[i + j] = t[j];
                a1 += r;
            }
            return Vector512.Sum(a0 + a1);
        }
        if (Vector256.IsHardwareAccelerated)
        {
            V256 a0 = V256.Zero, a1 = V256.Zero;
            for (; i + 16 <= n; i += 16)
            {
                var r0 = op.Invoke(Vector256.Load(x + i));
                var r1 = op.Invoke(Vector256.Load(x + i + 8));
                r0.Store(y + i); r1.Store(y + i + 8);
                a0 += r0; a1 += r1;
            }
            for (; i + 8 <= n; i += 8) { var r0 = op.Invoke(Vector256.Load(x + i)); r0.Store(y + i); a0 += r0; }
            if (i < n)
            {
                int m = (int)(n - i);
                float* t = stackalloc float[8];
                for (int j = 0; j < 8; j++) t[j] = j < m ? x[i + j] : 0f;
                var keep = Vector256.LessThan(Vector256.Create(Iota), Vector256.Create((float)m));
                var r = Vector256.ConditionalSelect(keep, op.Invoke(Vector256.Load(t)), V256.Zero);
                r.Store(t);
                for (int j = 0; j < m; j++) y[i + j] = t[j];
                a1 += r;
            }
            return Vector256.Sum(a0 + a1);
        }
        double s = 0;
        for (; i < n; i++) { float r = op.Invoke(x[i]); y[i] = r; s += r; }
        return (float)s;
    }

    /// <summary>Σ op(a[i], b[i]) for i in [0, n).</summary>
    public static float SumZip<T>(ref T op, float* a, float* b, long n) where T : struct, IBinaryOp
    {
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            V512 a0 = V512.Zero, a1 = V512.Zero, a2 = V512.Zero, a3 = V512.Zero;
            for (; i + 64 <= n; i += 64)
            {
                a0 += op.Invoke(Vector512.Load(a + i), Vector512.Load(b + i));
                a1 += op.Invoke(Vector512.Load(a + i + 16), Vector512.Load(b + i + 16));
                a2 += op.Invoke(Vector512.Load(a + i + 32), Vector512.Load(b + i + 32));
                a3 += op.Invoke(Vector512.Load(a + i + 48), Vector512.Load(b + i + 48));
            }
            for (; i + 16 <= n; i += 16) a0 += op.Invoke(Vector512.Load(a + i), Vector512.Load(b + i));
            if (i < n)
            {
                int m = (int)(n - i);
                float* ta = stackalloc float[16];
                float* tb = stackalloc float[16];
                for (int j = 0; j < 16; j++) { ta[j] = j < m ? a[i + j] : 0f; tb[j] = j < m ? b[i + j] : 0f; }
                var keep = Vector512.LessThan(Vector512.Create(Iota), Vector512.Create((float)m));
                a1 += Vector512.ConditionalSelect(keep, op.Invoke(Vector512.Load(ta), Vector512.Load(tb)), V512.Zero);
            }
            return Vector512.Sum((a0 + a1) + (a2 + a3));
        }
        if (Vector256.IsHardwareAccelerated)
        {
            V256 a0 = V256.Zero, a1 = V256.Zero, a2 = V256.Zero, a3 = V256.Zero;
            for (; i + 32 <= n; i += 32)
            {
                a0 += op.Invoke(Vector256.Load(a + i), Vector256.Load(b + i));
                a1 += op.Invoke(Vector256.Load(a + i + 8), Vector256.Load(b + i + 8));
                a2 += op.Invoke(Vector256.Load(a + i + 16), Vector256.Load(b + i + 16));
                a3 += op.Invoke(Vector256.Load(a + i + 24), Vector256.Load(b + i + 24));
            }
            for (; i + 8 <= n; i += 8) a0 += op.Invoke(Vector256.Load(a + i), Vector256.Load(b + i));
            if (i < n)
            {
                int m = (int)(n - i);
                float* ta = stackalloc float[8];
                float* tb = stackalloc float[8];
                for (int j = 0; j < 8; j++) { ta[j] = j < m ? a[i + j] : 0f; tb[j] = j < m ? b[i + j] : 0f; }
                var keep = Vector256.LessThan(Vector256.Create(Iota), Vector256.Create((float)m));
                a1 += Vector256.ConditionalSelect(keep, op.Invoke(Vector256.Load(ta), Vector256.Load(tb)), V256.Zero);
            }
            return Vector256.Sum((a0 + a1) + (a2 + a3));
        }
        double s = 0;
        for (; i < n; i++) s += op.Invoke(a[i], b[i]);
        return (float)s;
    }

    /// <summary>Σ x[i].</summary>
    public static float Sum(float* x, long n) { var op = new Identity(); return SumMap(ref op, x, n); }

    /// <summary>Σ a[i]·b[i].</summary>
    public static float Dot(float* a, float* b, long n) { var op = new Product(); return SumZip(ref op, a, b, n); }

    /// <summary>Σ (x[i] - c)².</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float SumSquaredDiff(float* x, long n, float c) { var op = new SquaredDiff(c); return SumMap(ref op, x, n); }

    /// <summary>Σ exp(x[i] - shift).</summary>
    public static float SumExp(float* x, long n, float shift) { var op = new ExpShift(shift); return SumMap(ref op, x, n); }

    /// <summary>max x[i] over a non-empty row; NaN if any element is NaN.</summary>
    /// <remarks>The body uses the native max instruction (fast, but not NaN-propagating) and tracks NaN
    /// separately with a self-comparison mask; the runtime's IEEE Vector512.Max is several times slower.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Max(float* x, long n)
    {
        long i = 0;
        float r = float.NegativeInfinity;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            var m0 = Vector512.Create(float.NegativeInfinity);
            var m1 = m0;
            var ok = Vector512<float>.AllBitsSet;
            for (; i + 32 <= n; i += 32)
            {
                var v0 = Vector512.Load(x + i);
                var v1 = Vector512.Load(x + i + 16);
                m0 = Vector512.MaxNative(m0, v0);
                m1 = Vector512.MaxNative(m1, v1);
                ok &= Vector512.Equals(v0, v0) & Vector512.Equals(v1, v1);
            }
            // the tail re-reads the last full vector: max is idempotent, so overlap is harmless
            for (; i + 16 <= n; i += 16) { var v = Vector512.Load(x + i); m0 = Vector512.MaxNative(m0, v); ok &= Vector512.Equals(v, v); }
            if (i < n) { var v = Vector512.Load(x + n - 16); m1 = Vector512.MaxNative(m1, v); ok &= Vector512.Equals(v, v); }
            if (!Vector512.EqualsAll(ok.AsUInt32(), Vector512<uint>.AllBitsSet)) return float.NaN;
            return Vector512.Max(m0, m1).ToScalarMax();
        }
        if (Vector256.IsHardwareAccelerated && n >= 8)
        {
            var m0 = Vector256.Create(float.NegativeInfinity);
            var ok = Vector256<float>.AllBitsSet;
            for (; i + 8 <= n; i += 8) { var v = Vector256.Load(x + i); m0 = Vector256.MaxNative(m0, v); ok &= Vector256.Equals(v, v); }
            if (i < n) { var v = Vector256.Load(x + n - 8); m0 = Vector256.MaxNative(m0, v); ok &= Vector256.Equals(v, v); }
            if (!Vector256.EqualsAll(ok.AsUInt32(), Vector256<uint>.AllBitsSet)) return float.NaN;
            var q = Vector128.Max(m0.GetLower(), m0.GetUpper());
            for (int j = 0; j < 4; j++) r = MaxNaN(r, q.GetElement(j));
            return r;
        }
        for (; i < n; i++) r = MaxNaN(r, x[i]);
        return r;
    }

    static float ToScalarMax(this V512 m)
    {
        var h = Vector256.Max(m.GetLower(), m.GetUpper());
        var q = Vector128.Max(h.GetLower(), h.GetUpper());
        float r = float.NegativeInfinity;
        for (int j = 0; j < 4; j++) r = MaxNaN(r, q.GetElement(j));
        return r;
    }

    /// <summary>IEEE maximum: NaN if either is NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxNaN(float a, float b) => float.IsNaN(a) || float.IsNaN(b) ? float.NaN : a >= b ? a : b;

    /// <summary>Index of the first element equal to <paramref name="max"/> (or the first NaN when it is NaN).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static long IndexOfFirst(float* x, long n, long step, float max)
    {
        if (float.IsNaN(max))
        {
            for (long i = 0; i < n; i++) if (float.IsNaN(x[i * step])) return i;
        }
        else
        {
            long i = 0;
            if (step == 1 && Vector512.IsHardwareAccelerated)
            {
                var vm = Vector512.Create(max);
                for (; i + 16 <= n; i += 16)
                {
                    if (Vector512.EqualsAny(Vector512.Load(x + i), vm))
                        for (int j = 0; ; j++) if (x[i + j] == max) return i + j;
                }
            }
            for (; i < n; i++) if (x[i * step] == max) return i;
        }
        return 0;
    }

    struct Identity : IUnaryOp
    {
        public float Invoke(float x) => x;
        public V256 Invoke(V256 x) => x;
        public V512 Invoke(V512 x) => x;
    }

    struct Product : IBinaryOp
    {
        public float Invoke(float a, float b) => a * b;
        public V256 Invoke(V256 a, V256 b) => a * b;
        public V512 Invoke(V512 a, V512 b) => a * b;
    }

    struct SquaredDiff(float c) : IUnaryOp
    {
        public float Invoke(float x) { float d = x - c; return d * d; }
        public V256 Invoke(V256 x) { var d = x - Vector256.Create(c); return d * d; }
        public V512 Invoke(V512 x) { var d = x - Vector512.Create(c); return d * d; }
    }

    /// <summary>exp(x - shift).</summary>
    public struct ExpShift(float shift) : IUnaryOp
    {
        public float Invoke(float x) => MathF.Exp(x - shift);
        public V256 Invoke(V256 x) => Vector256.Exp(x - Vector256.Create(shift));
        public V512 Invoke(V512 x) => Vector512.Exp(x - Vector512.Create(shift));
    }
}
