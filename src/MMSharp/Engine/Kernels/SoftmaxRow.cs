using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace MMSharp.Engine.Kernels;

/// <summary>
/// Fused row primitives of tiled softmax kernels (one pass each instead of several TensorPrimitives calls, which
/// matters for 64-wide tile rows). exp is the runtime's Vector512/256.Exp (exp(−∞) = 0 for masked scores).
/// A hand-written Cephes exp measured the same speed side by side, so the runtime's is used.
/// </summary>
internal static unsafe class SoftmaxRow
{
    /// <summary>max_j s[j] (−∞ for n == 0).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Max(float* s, int n)
    {
        int j = 0;
        float m = float.NegativeInfinity;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            var v = Vector512.Load(s);
            for (j = 16; j + 16 <= n; j += 16) v = Vector512.Max(v, Vector512.Load(s + j));
            m = MaxLanes(Vector256.Max(v.GetLower(), v.GetUpper()));
        }
        else if (Vector256.IsHardwareAccelerated && n >= 8)
        {
            var v = Vector256.Load(s);
            for (j = 8; j + 8 <= n; j += 8) v = Vector256.Max(v, Vector256.Load(s + j));
            m = MaxLanes(v);
        }
        for (; j < n; j++) m = Math.Max(m, s[j]);
        return m;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float MaxLanes(Vector256<float> v)
    {
        var x = Vector128.Max(v.GetLower(), v.GetUpper());
        return Math.Max(Math.Max(x[0], x[1]), Math.Max(x[2], x[3]));
    }

    /// <summary>s[j] = exp(s[j] − m) for j &lt; n; returns Σ_j of the new values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float ExpShiftSum(float* s, int n, float m)
    {
        int j = 0;
        float sum = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var mv = Vector512.Create(m);
            var acc = Vector512<float>.Zero;
            for (; j + 16 <= n; j += 16)
            {
                var e = Vector512.Exp(Vector512.Load(s + j) - mv);
                e.Store(s + j);
                acc += e;
            }
            sum = Vector512.Sum(acc);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var mv = Vector256.Create(m);
            var acc = Vector256<float>.Zero;
            for (; j + 8 <= n; j += 8)
            {
                var e = Vector256.Exp(Vector256.Load(s + j) - mv);
                e.Store(s + j);
                acc += e;
            }
            sum = Vector256.Sum(acc);
        }
        for (; j < n; j++) { s[j] = MathF.Exp(s[j] - m); sum += s[j]; }
        return sum;
    }

    /// <summary>d[j] = (d[j] − c) · p[j] for j &lt; n (the softmax backward row term).</summary>
    public static void SubMul(float* d, float c, float* p, int n)
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var cv = Vector512.Create(c);
            for (; j + 16 <= n; j += 16) ((Vector512.Load(d + j) - cv) * Vector512.Load(p + j)).Store(d + j);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var cv = Vector256.Create(c);
            for (; j + 8 <= n; j += 8) ((Vector256.Load(d + j) - cv) * Vector256.Load(p + j)).Store(d + j);
        }
        for (; j < n; j++) d[j] = (d[j] - c) * p[j];
    }
}
