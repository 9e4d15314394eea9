using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace MMSharp.Engine.Kernels;

/// <summary>
/// Fused row primitives of tiled softmax kernels (one pass each instead of several TensorPrimitives calls, which
/// matters for 64-wide tile rows), with a Cephes-style vector exp (≈ 1 ulp; exact 0 below −87.3, incl. −∞).
/// </summary>
internal static unsafe class SoftmaxRow
{
    /// <summary>max_j s[j] (−∞ for n == 0).</summary>
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

    static float MaxLanes(Vector256<float> v)
    {
        var x = Vector128.Max(v.GetLower(), v.GetUpper());
        return Math.Max(Math.Max(x[0], x[1]), Math.Max(x[2], x[3]));
    }

    /// <summary>s[j] = exp(s[j] − m) for j &lt; n; returns Σ_j of the new values.</summary>
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
                var e = Exp(Vector512.Load(s + j) - mv);
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
                var e = Exp(Vector256.Load(s + j) - mv);
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

    const float Lo = -87.33654f, Hi = 88.37626f, Log2E = 1.44269504088896341f, C1 = 0.693359375f, C2 = -2.12194440e-4f;
    const float P0 = 1.9875691500E-4f, P1 = 1.3981999507E-3f, P2 = 8.3334519073E-3f, P3 = 4.1665795894E-2f, P4 = 1.6666665459E-1f, P5 = 5.0000001201E-1f;

    /// <summary>exp(x) = 2^n · p(r), n = round(x·log2 e), r = x − n·ln 2 (two-part ln 2), Cephes expf polynomial.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> x)
    {
        var under = Vector512.LessThan(x, Vector512.Create(Lo));
        x = Vector512.Max(Vector512.Min(x, Vector512.Create(Hi)), Vector512.Create(Lo));
        var n = Vector512.Round(x * Vector512.Create(Log2E));
        var r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-C1), x);
        r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-C2), r);
        var p = Vector512.FusedMultiplyAdd(Vector512.Create(P0), r, Vector512.Create(P1));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(P2));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(P3));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(P4));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(P5));
        p = Vector512.FusedMultiplyAdd(p, r * r, r + Vector512<float>.One);
        var scale = ((Vector512.ConvertToInt32(n) + Vector512.Create(127)) << 23).AsSingle();
        return Vector512.AndNot(p * scale, under.AsSingle());
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x)
    {
        var under = Vector256.LessThan(x, Vector256.Create(Lo));
        x = Vector256.Max(Vector256.Min(x, Vector256.Create(Hi)), Vector256.Create(Lo));
        var n = Vector256.Round(x * Vector256.Create(Log2E));
        var r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-C1), x);
        r = Vector256.FusedMultiplyAdd(n, Vector256.Create(-C2), r);
        var p = Vector256.FusedMultiplyAdd(Vector256.Create(P0), r, Vector256.Create(P1));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(P2));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(P3));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(P4));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(P5));
        p = Vector256.FusedMultiplyAdd(p, r * r, r + Vector256<float>.One);
        var scale = ((Vector256.ConvertToInt32(n) + Vector256.Create(127)) << 23).AsSingle();
        return Vector256.AndNot(p * scale, under.AsSingle());
    }
}
