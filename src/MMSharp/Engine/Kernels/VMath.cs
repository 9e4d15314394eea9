using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using V256 = System.Runtime.Intrinsics.Vector256<float>;
using V512 = System.Runtime.Intrinsics.Vector512<float>;

namespace MMSharp.Engine.Kernels;

/// <summary>
/// Transcendental functions that the pointwise ops need in scalar, Vector256 and Vector512 form
/// with the same algorithm in each, so vector bodies and scalar fallbacks agree.
/// exp/log come from the runtime (Vector512.Exp/Log); tanh and erf are built here.
/// </summary>
public static class VMath
{
    // tanh: odd Taylor series below 0.55 (truncation < 4e-8 relative), (1 - e)/(1 + e) with
    // e = exp(-2|x|) above it, where 1 - e has no cancellation.
    const float TanhSwitch = 0.55f;
    const float T3 = -1f / 3, T5 = 2f / 15, T7 = -17f / 315, T9 = 62f / 2835, T11 = -1382f / 155925,
        T13 = 21844f / 6081075, T15 = -929569f / 638512875, T17 = 6404582f / 10854718875;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Tanh(float x)
    {
        float ax = MathF.Abs(x);
        if (ax < TanhSwitch)
        {
            float s = x * x;
            float p = MathF.FusedMultiplyAdd(T17, s, T15);
            p = MathF.FusedMultiplyAdd(p, s, T13); p = MathF.FusedMultiplyAdd(p, s, T11);
            p = MathF.FusedMultiplyAdd(p, s, T9); p = MathF.FusedMultiplyAdd(p, s, T7);
            p = MathF.FusedMultiplyAdd(p, s, T5); p = MathF.FusedMultiplyAdd(p, s, T3);
            return MathF.FusedMultiplyAdd(p * s, x, x);
        }
        float e = MathF.Exp(-2f * ax);
        return MathF.CopySign((1f - e) / (1f + e), x);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V512 Tanh(V512 x)
    {
        var ax = Vector512.Abs(x);
        var s = x * x;
        var p = Vector512.FusedMultiplyAdd(Vector512.Create(T17), s, Vector512.Create(T15));
        p = Vector512.FusedMultiplyAdd(p, s, Vector512.Create(T13)); p = Vector512.FusedMultiplyAdd(p, s, Vector512.Create(T11));
        p = Vector512.FusedMultiplyAdd(p, s, Vector512.Create(T9)); p = Vector512.FusedMultiplyAdd(p, s, Vector512.Create(T7));
        p = Vector512.FusedMultiplyAdd(p, s, Vector512.Create(T5)); p = Vector512.FusedMultiplyAdd(p, s, Vector512.Create(T3));
        var small = Vector512.FusedMultiplyAdd(p * s, x, x);
        var e = Vector512.Exp(ax * Vector512.Create(-2f));
        var large = Vector512.CopySign((V512.One - e) / (V512.One + e), x);
        return Vector512.ConditionalSelect(Vector512.LessThan(ax, Vector512.Create(TanhSwitch)), small, large);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V256 Tanh(V256 x)
    {
        var ax = Vector256.Abs(x);
        var s = x * x;
        var p = Vector256.FusedMultiplyAdd(Vector256.Create(T17), s, Vector256.Create(T15));
        p = Vector256.FusedMultiplyAdd(p, s, Vector256.Create(T13)); p = Vector256.FusedMultiplyAdd(p, s, Vector256.Create(T11));
        p = Vector256.FusedMultiplyAdd(p, s, Vector256.Create(T9)); p = Vector256.FusedMultiplyAdd(p, s, Vector256.Create(T7));
        p = Vector256.FusedMultiplyAdd(p, s, Vector256.Create(T5)); p = Vector256.FusedMultiplyAdd(p, s, Vector256.Create(T3));
        var small = Vector256.FusedMultiplyAdd(p * s, x, x);
        var e = Vector256.Exp(ax * Vector256.Create(-2f));
        var large = Vector256.CopySign((V256.One - e) / (V256.One + e), x);
        return Vector256.ConditionalSelect(Vector256.LessThan(ax, Vector256.Create(TanhSwitch)), small, large);
    }

    /// <summary>1 / (1 + exp(-x)); saturates to exactly 0 and 1, NaN stays NaN.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sigmoid(float x) => 1f / (1f + MathF.Exp(-x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V512 Sigmoid(V512 x) => V512.One / (V512.One + Vector512.Exp(-x));
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V256 Sigmoid(V256 x) => V256.One / (V256.One + Vector256.Exp(-x));

    // erf: N. Juffa's single-precision minimax approximations (max error ~1 ulp): an odd polynomial
    // below 0.927734375, erf = 1 - exp(-t * poly(t)) above. Measured here < 1e-7 relative to float64.
    const float ErfSwitch = 0.927734375f;
    const float L0 = -1.72853470e-5f, L1 = 3.83197126e-4f, L2 = -3.88396438e-3f, L3 = 2.42546219e-2f,
        L4 = -1.06777877e-1f, L5 = -6.34846687e-1f, L6 = -1.28717512e-1f;
    const float S0 = -5.96761703e-4f, S1 = 4.99119423e-3f, S2 = -2.67681349e-2f, S3 = 1.12819925e-1f,
        S4 = -3.76125336e-1f, S5 = 1.28379166e-1f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Erf(float a)
    {
        float t = MathF.Abs(a), s = a * a;
        if (t > ErfSwitch)
        {
            float r = MathF.FusedMultiplyAdd(L0, t, L1);
            float u = MathF.FusedMultiplyAdd(L2, t, L3);
            r = MathF.FusedMultiplyAdd(r, s, u);
            r = MathF.FusedMultiplyAdd(r, t, L4); r = MathF.FusedMultiplyAdd(r, t, L5);
            r = MathF.FusedMultiplyAdd(r, t, L6); r = MathF.FusedMultiplyAdd(r, t, -t);
            return MathF.CopySign(1f - MathF.Exp(r), a);
        }
        float q = MathF.FusedMultiplyAdd(S0, s, S1);
        q = MathF.FusedMultiplyAdd(q, s, S2); q = MathF.FusedMultiplyAdd(q, s, S3);
        q = MathF.FusedMultiplyAdd(q, s, S4); q = MathF.FusedMultiplyAdd(q, s, S5);
        return MathF.FusedMultiplyAdd(q, a, a);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V512 Erf(V512 a)
    {
        var t = Vector512.Abs(a);
        var s = a * a;
        var r = Vector512.FusedMultiplyAdd(Vector512.Create(L0), t, Vector512.Create(L1));
        var u = Vector512.FusedMultiplyAdd(Vector512.Create(L2), t, Vector512.Create(L3));
        r = Vector512.FusedMultiplyAdd(r, s, u);
        r = Vector512.FusedMultiplyAdd(r, t, Vector512.Create(L4)); r = Vector512.FusedMultiplyAdd(r, t, Vector512.Create(L5));
        r = Vector512.FusedMultiplyAdd(r, t, Vector512.Create(L6)); r = Vector512.FusedMultiplyAdd(r, t, -t);
        var large = Vector512.CopySign(V512.One - Vector512.Exp(r), a);
        var q = Vector512.FusedMultiplyAdd(Vector512.Create(S0), s, Vector512.Create(S1));
        q = Vector512.FusedMultiplyAdd(q, s, Vector512.Create(S2)); q = Vector512.FusedMultiplyAdd(q, s, Vector512.Create(S3));
        q = Vector512.FusedMultiplyAdd(q, s, Vector512.Create(S4)); q = Vector512.FusedMultiplyAdd(q, s, Vector512.Create(S5));
        var small = Vector512.FusedMultiplyAdd(q, a, a);
        return Vector512.ConditionalSelect(Vector512.GreaterThan(t, Vector512.Create(ErfSwitch)), large, small);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static V256 Erf(V256 a)
    {
        var t = Vector256.Abs(a);
        var s = a * a;
        var r = Vector256.FusedMultiplyAdd(Vector256.Create(L0), t, Vector256.Create(L1));
        var u = Vector256.FusedMultiplyAdd(Vector256.Create(L2), t, Vector256.Create(L3));
        r = Vector256.FusedMultiplyAdd(r, s, u);
        r = Vector256.FusedMultiplyAdd(r, t, Vector256.Create(L4)); r = Vector256.FusedMultiplyAdd(r, t, Vector256.Create(L5));
        r = Vector256.FusedMultiplyAdd(r, t, Vector256.Create(L6)); r = Vector256.FusedMultiplyAdd(r, t, -t);
        var large = Vector256.CopySign(V256.One - Vector256.Exp(r), a);
        var q = Vector256.FusedMultiplyAdd(Vector256.Create(S0), s, Vector256.Create(S1));
        q = Vector256.FusedMultiplyAdd(q, s, Vector256.Create(S2)); q = Vector256.FusedMultiplyAdd(q, s, Vector256.Create(S3));
        q = Vector256.FusedMultiplyAdd(q, s, Vector256.Create(S4)); q = Vector256.FusedMultiplyAdd(q, s, Vector256.Create(S5));
        var small = Vector256.FusedMultiplyAdd(q, a, a);
        return Vector256.ConditionalSelect(Vector256.GreaterThan(t, Vector256.Create(ErfSwitch)), large, small);
    }
}
