using MMSharp.Engine;
using static MMSharp.Tests.OpTable.InputSpec;

namespace MMSharp.Tests.OpTable;

/// <summary>Rotary embedding, patch embeddings (conv2d / conv3d with stride = kernel) and interpolation.</summary>
public static class SpatialCases
{
    // ---------------------------------------------------------------- rotary

    /// <summary>x [..., T, D] rotated with tables [T, rd] or [B, T, rd] (rotate_half layout).</summary>
    static RefTensor RefRotary(RefTensor x, RefTensor cos, RefTensor sin)
    {
        int T = x.Size(-2), D = x.Size(-1), rd = cos.Size(-1), h = rd / 2;
        bool perBatch = cos.Rank == 3;
        var y = x.Clone();
        long rows = x.Data.Length / D, perB = rows / (perBatch ? x.Shape[0] : 1);
        for (long r = 0; r < rows; r++)
        {
            long tr = (r / perB) * T + r % T;
            for (int i = 0; i < rd; i++)
            {
                double rot = i < h ? -x.Data[r * D + i + h] : x.Data[r * D + i - h];
                y.Data[r * D + i] = x.Data[r * D + i] * cos.Data[tr * rd + i] + rot * sin.Data[tr * rd + i];
            }
        }
        return y;
    }

    /// <summary>HF tables in float64: inv_freq = theta^(−2i/d), angle = pos · inv_freq, emb = cat(angle, angle).</summary>
    static (RefTensor cos, RefTensor sin) RefTables(RefTensor pos, int dim, double theta)
    {
        int[] shape = [.. pos.Shape, dim];
        var c = new RefTensor(shape);
        var s = new RefTensor(shape);
        for (long r = 0; r < pos.Data.Length; r++)
            for (int i = 0; i < dim; i++)
            {
                double a = pos.Data[r] / Math.Pow(theta, 2.0 * (i % (dim / 2)) / dim);
                c.Data[r * dim + i] = Math.Cos(a);
                s.Data[r * dim + i] = Math.Sin(a);
            }
        return (c, s);
    }

    static OpCase Rotary(int[] x, int[] table, string variant = "") =>
        new("apply_rotary", [F(x), Const(table), Const(table)],
            t => Ops.ApplyRotary(t[0], t[1], t[2]), r => RefRotary(r[0], r[1], r[2])) { Variant = variant };

    static OpCase RopeCase(int[] x, int[] pos, double theta, int? rotaryDim, string variant) =>
        new("rope", [F(x), Idx(300, pos)],
            t => Ops.Rope(t[0], t[1], theta, rotaryDim),
            r => { var (c, s) = RefTables(r[1], rotaryDim ?? x[^1], theta); return RefRotary(r[0], c, s); })
        { Variant = variant, Atol = 2e-5 };

    // ---------------------------------------------------------------- patch embeddings

    static RefTensor RefConv2dPatch(RefTensor x, RefTensor w, RefTensor? bias)
    {
        int B = x.Shape[0], C = x.Shape[1], O = w.Shape[0], kh = w.Shape[2], kw = w.Shape[3];
        int Hp = x.Shape[2] / kh, Wp = x.Shape[3] / kw;
        var y = new RefTensor([B, O, Hp, Wp]);
        for (int b = 0; b < B; b++)
            for (int o = 0; o < O; o++)
                for (int py = 0; py < Hp; py++)
                    for (int px = 0; px < Wp; px++)
                    {
                        double acc = bias?.Data[o] ?? 0;
                        for (int c = 0; c < C; c++)
                            for (int ky = 0; ky < kh; ky++)
                                for (int kx = 0; kx < kw; kx++)
                                    acc += w[o, c, ky, kx] * x[b, c, py * kh + ky, px * kw + kx];
                        y[b, o, py, px] = acc;
                    }
        return y;
    }

    static RefTensor RefConv3dPatch(RefTensor x, RefTensor w, RefTensor? bias)
    {
        int N = x.Shape[0], O = w.Shape[0], K = w.Data.Length / O;
        var y = new RefTensor([N, O]);
        for (int n = 0; n < N; n++)
            for (int o = 0; o < O; o++)
            {
                double acc = bias?.Data[o] ?? 0;
                for (int f = 0; f < K; f++) acc += x.Data[n * K + f] * w.Data[o * K + f];
                y[n, o] = acc;
            }
        return y;
    }

    // ---------------------------------------------------------------- interpolation

    /// <summary>torch.nn.functional.interpolate written directly in 2-D, float64.</summary>
    static RefTensor RefInterpolate(RefTensor x, int outH, int outW, bool cubic, bool alignCorners)
    {
        int H = x.Size(-2), W = x.Size(-1);
        int[] shape = [.. x.Shape[..^2], outH, outW];
        var y = new RefTensor(shape);
        long planes = x.Data.Length / (H * W);
        (int[] idx, double[] w) Axis(int inSize, int outSize, int o)
        {
            double scale = alignCorners ? (outSize > 1 ? (inSize - 1.0) / (outSize - 1) : 0) : (double)inSize / outSize;
            double src = alignCorners ? scale * o : scale * (o + 0.5) - 0.5;
            if (!cubic && src < 0) src = 0;
            int i = Math.Min((int)Math.Floor(src), inSize - 1);
            double t = Math.Clamp(src - i, 0, 1);
            if (!cubic) return ([i, Math.Min(i + 1, inSize - 1)], [1 - t, t]);
            const double A = -0.75;
            double K(double d) { d = Math.Abs(d); return d <= 1 ? ((A + 2) * d - (A + 3)) * d * d + 1 : d < 2 ? ((A * d - 5 * A) * d + 8 * A) * d - 4 * A : 0; }
            return ([.. Enumerable.Range(-1, 4).Select(k => Math.Clamp(i + k, 0, inSize - 1))], [K(t + 1), K(t), K(1 - t), K(2 - t)]);
        }
        for (long p = 0; p < planes; p++)
            for (int oy = 0; oy < outH; oy++)
            {
                var (iy, wy) = Axis(H, outH, oy);
                for (int ox = 0; ox < outW; ox++)
                {
                    var (ix, wx) = Axis(W, outW, ox);
                    double acc = 0;
                    for (int a = 0; a < iy.Length; a++)
                        for (int b = 0; b < ix.Length; b++) acc += wy[a] * wx[b] * x.Data[p * H * W + iy[a] * W + ix[b]];
                    y.Data[p * outH * outW + oy * outW + ox] = acc;
                }
            }
        return y;
    }

    static OpCase Interp(int[] x, int outH, int outW, InterpolateMode mode, bool alignCorners = false) =>
        new("interpolate", [F(x)], t => Ops.Interpolate(t[0], outH, outW, mode, alignCorners),
            r => RefInterpolate(r[0], outH, outW, mode == InterpolateMode.Bicubic, alignCorners))
        { Variant = $"{mode} -> {outH}x{outW}{(alignCorners ? " align_corners" : "")}" };

    [OpCases]
    public static IEnumerable<OpCase> Cases()
    {
        yield return Rotary([1, 2, 7, 8], [7, 8]);
        yield return Rotary([2, 3, 5, 34], [5, 34], "D=34 tails");
        yield return Rotary([1, 1, 3, 54], [3, 54], "D=54 all widths");
        yield return Rotary([2, 3, 5, 10], [2, 5, 6], "per-batch tables, partial rd=6");
        yield return Rotary([4, 7, 64], [7, 64], "rank 3");
        yield return RopeCase([1, 2, 7, 16], [7], 10000, null, "positions [T]");
        yield return RopeCase([2, 3, 5, 32], [2, 5], 1e6, null, "positions [B, T], theta 1e6");
        yield return RopeCase([1, 2, 9, 24], [9], 10000, 16, "partial rotary 16 of 24");

        yield return new OpCase("conv2d_patch", [F(2, 3, 9, 10), F(4, 3, 3, 3), F(4)],
            t => Ops.Conv2dPatch(t[0], t[1], t[2]), r => RefConv2dPatch(r[0], r[1], r[2])) { Variant = "bias, remainder dropped" };
        yield return new OpCase("conv2d_patch", [F(1, 2, 14, 7), F(5, 2, 7, 7)],
            t => Ops.Conv2dPatch(t[0], t[1]), r => RefConv2dPatch(r[0], r[1], null)) { Variant = "no bias" };
        yield return new OpCase("conv2d_patch", [F(2, 3, 4, 6), BF16(4, 3, 2, 2), F(4)],
            t => Ops.Conv2dPatch(t[0], t[1], t[2]), r => RefConv2dPatch(r[0], r[1], r[2])) { Variant = "bf16 weight" };
        yield return new OpCase("conv2d_patch", [F(2, 3, 6, 4), F(4, 3, 2, 2), F(4)],
            t => Ops.Conv2dPatch(t[0], t[1], t[2]).Flatten(2).Transpose(1, 2),
            r => { var y = RefConv2dPatch(r[0], r[1], r[2]); return y.Gather([2, 6, 4], [24, 1, 6], 0); }) { Variant = "as tokens [B, HpWp, O]" };
        yield return new OpCase("conv3d_patch", [F(5, 24), F(6, 3, 2, 2, 2), F(6)],
            t => Ops.Conv3dPatch(t[0], t[1], t[2]), r => RefConv3dPatch(r[0], r[1], r[2])) { Variant = "flat rows" };
        yield return new OpCase("conv3d_patch", [F(4, 3, 2, 2, 2), BF16(7, 3, 2, 2, 2), F(7)],
            t => Ops.Conv3dPatch(t[0], t[1], t[2]), r => RefConv3dPatch(r[0], r[1], r[2])) { Variant = "5-d input, bf16 weight" };
        yield return new OpCase("conv3d_patch", [F(3, 2, 1, 3, 3), F(17, 2, 1, 3, 3)],
            t => Ops.Conv3dPatch(t[0], t[1]), r => RefConv3dPatch(r[0], r[1], null)) { Variant = "no bias" };

        yield return Interp([2, 3, 5, 7], 9, 4, InterpolateMode.Bilinear);
        yield return Interp([2, 3, 5, 7], 9, 4, InterpolateMode.Bicubic);
        yield return Interp([1, 2, 4, 4], 16, 16, InterpolateMode.Bilinear);
        yield return Interp([1, 2, 4, 4], 16, 16, InterpolateMode.Bicubic);
        yield return Interp([1, 2, 9, 8], 3, 5, InterpolateMode.Bilinear);
        yield return Interp([1, 2, 9, 8], 3, 5, InterpolateMode.Bicubic);
        yield return Interp([1, 1, 6, 6], 6, 6, InterpolateMode.Bicubic);
        yield return Interp([1, 2, 5, 7], 8, 3, InterpolateMode.Bilinear, alignCorners: true);
        yield return Interp([1, 2, 5, 7], 8, 3, InterpolateMode.Bicubic, alignCorners: true);
        yield return Interp([3, 1, 1], 2, 5, InterpolateMode.Bicubic);
    }
}
