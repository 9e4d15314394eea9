using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using MMSharp.Engine.Kernels;

namespace MMSharp.Engine;

public static unsafe partial class Ops
{
    /// <summary>
    /// cos/sin tables of rotary position embedding for <paramref name="positionIds"/> (integer or float, [T] or [B, T]):
    /// results [T, dim] or [B, T, dim], F32.
    /// </summary>
    /// <remarks>
    /// As HF transformers (default rope type), every step in float32:
    /// inv_freq[i] = 1 / theta^(float(2i) / dim) for i &lt; dim/2 (pow and the division in float32),
    /// angle[t, i] = float(pos_t) · inv_freq[i] (one float32 product), emb = cat(angle, angle),
    /// cos = cos(emb), sin = sin(emb) (MathF; PyTorch's vectorised cos/sin may differ by an ulp).
    /// HF then casts the tables to the activation dtype; that is left to the caller.
    /// </remarks>
    public static (Tensor Cos, Tensor Sin) RotaryTables(Tensor positionIds, int dim, double theta)
    {
        if (dim <= 0 || dim % 2 != 0) throw new ArgumentException($"RotaryTables: dim must be even and positive, got {dim}");
        if (positionIds.Rank is not (1 or 2)) throw new ArgumentException($"RotaryTables: position ids must be [T] or [B, T], got {positionIds.Describe()}");
        int half = dim / 2;
        var invFreq = new float[half];
        float thetaF = (float)theta;
        for (int i = 0; i < half; i++) invFreq[i] = 1f / MathF.Pow(thetaF, (float)(2 * i) / dim);
        int[] shape = [.. positionIds.Shape, dim];
        var cos = Tensor.Empty(shape);
        var sin = Tensor.Empty(shape);
        long rows = positionIds.NumEl;
        var pos = new float[rows];
        for (long r = 0; r < rows; r++)
            pos[r] = positionIds.DType.IsFloat() ? positionIds.GetFlat(r) : positionIds.GetFlatLong(r);
        float* cp = cos.F32Ptr, sp = sin.F32Ptr;
        Par.ForChunks(rows, 64, (s, e) =>
        {
            for (long r = s; r < e; r++)
                for (int i = 0; i < half; i++)
                {
                    float angle = pos[r] * invFreq[i];
                    float c = MathF.Cos(angle), sn = MathF.Sin(angle);
                    cp[r * dim + i] = cp[r * dim + half + i] = c;
                    sp[r * dim + i] = sp[r * dim + half + i] = sn;
                }
        });
        return (cos, sin);
    }

    /// <summary>Rotary position embedding with tables built from <paramref name="positionIds"/> ([T] or [B, T]) and
    /// <paramref name="theta"/>: <see cref="ApplyRotary"/>(x, <see cref="RotaryTables"/>(positionIds, rotaryDim, theta)).
    /// x is [..., T, D]; rotaryDim defaults to D (partial rotary leaves dims ≥ rotaryDim unchanged).</summary>
    public static Tensor Rope(Tensor x, Tensor positionIds, double theta, int? rotaryDim = null)
    {
        var (cos, sin) = RotaryTables(positionIds, rotaryDim ?? x.Shape[^1], theta);
        using (cos) using (sin) return ApplyRotary(x, cos, sin);
    }

    /// <summary>
    /// Applies rotary embedding in the HF rotate_half layout (element i pairs with i + rd/2, not interleaved pairs).
    /// </summary>
    /// <remarks>
    /// y[..., :rd] = x[..., :rd]·cos + rotate_half(x[..., :rd])·sin with rotate_half(u) = cat(−u[rd/2:], u[:rd/2]);
    /// y[..., rd:] = x[..., rd:]. x is [..., T, D] (any float dtype, any strides; result F32 contiguous);
    /// cos, sin are [T, rd] (shared by all leading dims), or [B, T, rd] / [B, 1, T, rd] with B = x.Shape[0].
    /// Tables are constants (no gradient). Backward: gx = g·cos + rotate_halfᵀ(g·sin), i.e.
    /// gx1 = g1·cos1 + g2·sin2, gx2 = g2·cos2 − g1·sin1.
    /// </remarks>
    public static Tensor ApplyRotary(Tensor x, Tensor cos, Tensor sin)
    {
        const string op = "ApplyRotary";
        if (x.Rank < 2) throw new ArgumentException($"{op}: x must be [..., T, D], got {x.Describe()}");
        if (!cos.Shape.AsSpan().SequenceEqual(sin.Shape)) throw new ArgumentException($"{op}: cos {cos.Describe()} and sin {sin.Describe()} differ");
        var tshape = cos.Shape;
        if (tshape.Length == 4 && tshape[1] == 1) tshape = [tshape[0], tshape[2], tshape[3]];
        int T = x.Shape[^2], D = x.Shape[^1];
        bool perBatch = tshape.Length == 3;
        if (tshape.Length is not (2 or 3) || tshape[^2] != T || tshape[^1] > D || tshape[^1] % 2 != 0
            || (perBatch && (x.Rank < 3 || tshape[0] != x.Shape[0])))
            throw new ArgumentException($"{op}: tables {cos.Describe()} do not fit x {x.Describe()} (need [T, rd] or [B, T, rd], rd even ≤ D)");
        int rd = tshape[^1];
        using var xc = ContiguousF32(x, op);
        var c = ContiguousF32(cos, op);
        var s = ContiguousF32(sin, op);
        var y = Tensor.Empty(x.Shape);
        int batch = perBatch ? x.Shape[0] : 1;
        RotaryRows(xc.F32Ptr, c.F32Ptr, s.F32Ptr, y.F32Ptr, x.NumEl / D, batch, T, D, rd, transpose: false);
        if (Tensor.AnyRequiresGrad(x))
        {
            var sc = c.SaveForBackward(); var ss = s.SaveForBackward();
            var shape = x.Shape;
            y.WithGradFn("apply_rotary", [x], [sc, ss], g =>
            {
                var gx = Tensor.Empty(shape);
                RotaryRows(g.F32Ptr, sc.F32Ptr, ss.F32Ptr, gx.F32Ptr, g.NumEl / D, batch, T, D, rd, transpose: true);
                return [gx];
            });
        }
        c.Dispose(); s.Dispose();
        return y;
    }

    /// <summary>Rotates every row of x (rows = flattened leading dims, row r has position r mod T and batch r / (rows/batch)).
    /// transpose = true applies the adjoint rotation (the backward).</summary>
    static void RotaryRows(float* x, float* cos, float* sin, float* y, long rows, int batch, int T, int D, int rd, bool transpose)
    {
        int h = rd / 2;
        long rowsPerBatch = rows / batch;
        Par.ForChunks(rows, 256, (s0, e0) =>
        {
            for (long r = s0; r < e0; r++)
            {
                long tr = (r / rowsPerBatch) * T + r % T;
                float* c = cos + tr * rd, s = sin + tr * rd, xr = x + r * D, yr = y + r * D;
                if (!transpose)
                {
                    RotaryCombine(xr, c, xr + h, s, -1f, yr, h);              // y1 = x1·c1 − x2·s1
                    RotaryCombine(xr + h, c + h, xr, s + h, 1f, yr + h, h);   // y2 = x2·c2 + x1·s2
                }
                else
                {
                    RotaryCombine(xr, c, xr + h, s + h, 1f, yr, h);           // g1·c1 + g2·s2
                    RotaryCombine(xr + h, c + h, xr, s, -1f, yr + h, h);      // g2·c2 − g1·s1
                }
                if (rd < D) new ReadOnlySpan<float>(xr + rd, D - rd).CopyTo(new Span<float>(yr + rd, D - rd));
            }
        });
    }

    /// <summary>dst = a·ca + sign·b·sb over n elements.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void RotaryCombine(float* a, float* ca, float* b, float* sb, float sign, float* dst, int n)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var sg = Vector512.Create(sign);
            for (; i + 16 <= n; i += 16)
                Vector512.FusedMultiplyAdd(Vector512.Load(a + i), Vector512.Load(ca + i),
                    Vector512.Load(b + i) * Vector512.Load(sb + i) * sg).Store(dst + i);
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var sg = Vector256.Create(sign);
            for (; i + 8 <= n; i += 8)
                Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(ca + i),
                    Vector256.Load(b + i) * Vector256.Load(sb + i) * sg).Store(dst + i);
        }
        for (; i < n; i++) dst[i] = MathF.FusedMultiplyAdd(a[i], ca[i], sign * (b[i] * sb[i]));
    }
}
