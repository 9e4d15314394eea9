using System.Numerics.Tensors;
using MMSharp.Engine.Kernels;

namespace MMSharp.Engine;

public static unsafe partial class Ops
{
    /// <summary>
    /// Conv2d whose stride equals its kernel (ViT patch embedding, e.g. InternViT: kernel = stride = 14).
    /// x [B, C, H, W], weight [O, C, kh, kw] (F32 or BF16), bias [O] or null. Returns [B, O, H/kh, W/kw]
    /// (floor; trailing pixels are dropped as in PyTorch).
    /// </summary>
    /// <remarks>
    /// y[b, o, py, px] = bias[o] + Σ_{c,ky,kx} weight[o, c, ky, kx] · x[b, c, py·kh + ky, px·kw + kx].
    /// Computed as patches [B·Hp·Wp, C·kh·kw] (feature order c, ky, kx) times weightᵀ. The result is a permuted
    /// view of a [B, Hp, Wp, O] buffer, so the usual flatten(2).transpose(1, 2) to tokens [B, Hp·Wp, O] costs no copy.
    /// </remarks>
    public static Tensor Conv2dPatch(Tensor x, Tensor weight, Tensor? bias = null)
    {
        const string op = "Conv2dPatch";
        if (x.Rank != 4 || weight.Rank != 4 || weight.Shape[1] != x.Shape[1])
            throw new ArgumentException($"{op}: need x [B, C, H, W] and weight [O, C, kh, kw]; got {x.Describe()}, {weight.Describe()}");
        int B = x.Shape[0], kh = weight.Shape[2], kw = weight.Shape[3], O = weight.Shape[0];
        int Hp = x.Shape[2] / kh, Wp = x.Shape[3] / kw;
        if (Hp == 0 || Wp == 0) throw new ArgumentException($"{op}: {x.Describe()} is smaller than one {kh}x{kw} patch");
        using var rows = PatchRows(x, kh, kw);                        // [B·Hp·Wp, C·kh·kw]
        using var y2 = PatchProject(op, rows, weight, bias);          // [B·Hp·Wp, O]
        using var y4 = Reshape(y2, B, Hp, Wp, O);
        return Permute(y4, 0, 3, 1, 2);                               // [B, O, Hp, Wp] view
    }

    /// <summary>
    /// Conv3d patch embedding whose kernel equals its stride and whose input is already one patch per row
    /// (Qwen3-VL <c>patch_embed.proj</c>: kernel (2, 16, 16), C = 3). x is [N, C, kt, kh, kw] or [N, C·kt·kh·kw]
    /// with features ordered (c, t, y, x), c slowest — the processor's flattening order; weight [O, C, kt, kh, kw]
    /// (F32 or BF16), bias [O] or null. Returns [N, O].
    /// </summary>
    /// <remarks>y[n, o] = bias[o] + Σ_f x[n, f] · weight.reshape(O, C·kt·kh·kw)[o, f] — exactly a linear layer.</remarks>
    public static Tensor Conv3dPatch(Tensor x, Tensor weight, Tensor? bias = null)
    {
        const string op = "Conv3dPatch";
        if (weight.Rank != 5) throw new ArgumentException($"{op}: weight must be [O, C, kt, kh, kw], got {weight.Describe()}");
        long K = weight.NumEl / weight.Shape[0];
        bool ok = x.Rank == 2 ? x.Shape[1] == K
            : x.Rank == 5 && x.Shape.AsSpan(1).SequenceEqual(weight.Shape.AsSpan(1));
        if (!ok) throw new ArgumentException($"{op}: x {x.Describe()} is not [N, {K}] or [N, C, kt, kh, kw] for weight {weight.Describe()}");
        using var rows = Reshape(x, x.Shape[0], (int)K);
        return PatchProject(op, rows, weight, bias);
    }

    /// <summary>[B, C, H, W] -> non-overlapping patches as rows [B·Hp·Wp, C·kh·kw] (row = (b, py, px), feature = (c, ky, kx)).
    /// Backward scatters the rows back (pixels outside the Hp·kh × Wp·kw area get zero gradient).</summary>
    static Tensor PatchRows(Tensor x, int kh, int kw)
    {
        int B = x.Shape[0], C = x.Shape[1], H = x.Shape[2], W = x.Shape[3], Hp = H / kh, Wp = W / kw;
        int K = C * kh * kw;
        long N = (long)B * Hp * Wp;
        using var xc = ContiguousF32(x, "Conv2dPatch");
        var rows = Tensor.Empty([checked((int)N), K]);
        float* xs = xc.F32Ptr, rs = rows.F32Ptr;
        Par.ForChunks(N, 16, (s, e) =>
        {
            for (long n = s; n < e; n++)
            {
                int px = (int)(n % Wp), py = (int)(n / Wp % Hp), b = (int)(n / ((long)Wp * Hp));
                float* dst = rs + n * K;
                for (int c = 0; c < C; c++)
                    for (int ky = 0; ky < kh; ky++)
                        new ReadOnlySpan<float>(xs + (((long)b * C + c) * H + py * kh + ky) * W + px * kw, kw)
                            .CopyTo(new Span<float>(dst + (c * kh + ky) * kw, kw));
            }
        });
        if (Tensor.AnyRequiresGrad(x))
        {
            rows.WithGradFn("patch_rows", [x], [], g =>
            {
                var gx = Tensor.Zeros([B, C, H, W]);
                float* gs = g.F32Ptr, gd = gx.F32Ptr;
                // one image per work item: every pixel belongs to exactly one patch, so writes are disjoint
                Par.For(B, b =>
                {
                    for (int py = 0; py < Hp; py++)
                        for (int px = 0; px < Wp; px++)
                        {
                            float* src = gs + (((long)b * Hp + py) * Wp + px) * K;
                            for (int c = 0; c < C; c++)
                                for (int ky = 0; ky < kh; ky++)
                                    new ReadOnlySpan<float>(src + (c * kh + ky) * kw, kw)
                                        .CopyTo(new Span<float>(gd + (((long)b * C + c) * H + py * kh + ky) * W + px * kw, kw));
                        }
                });
                return [gx];
            });
        }
        return rows;
    }

    /// <summary>y [N, O] = rows [N, K] · weight.reshape(O, K)ᵀ + bias, with weight F32 or BF16 (read in place).
    /// Backward: d rows = g · W, d weight = gᵀ · rows (F32, weight's shape), d bias = Σ_n g.</summary>
    static Tensor PatchProject(string op, Tensor rows, Tensor weight, Tensor? bias)
    {
        int N = rows.Shape[0], K = rows.Shape[1], O = weight.Shape[0];
        if (weight.NumEl != (long)O * K) throw new ArgumentException($"{op}: weight {weight.Describe()} does not have {K} inputs per output");
        if (weight.DType is not (DType.F32 or DType.BF16)) throw new ArgumentException($"{op}: weight {weight.Describe()} must be F32 or BF16");
        if (bias != null && (bias.Rank != 1 || bias.Shape[0] != O)) throw new ArgumentException($"{op}: bias {bias.Describe()} must be [{O}]");
        using var rc = ContiguousF32(rows, op);
        var wc = weight.IsContiguous ? weight.Alias(register: false) : ContiguousF32(weight, op); // BF16 stays BF16 when contiguous
        var y = Tensor.Empty([N, O]);
        // B(k, j) = W[j, k]: the weight read transposed through its strides
        if (wc.DType == DType.BF16) Gemm.SgemmBF16(N, O, K, rc.F32Ptr, K, 1, (ushort*)wc.DataPtr, 1, K, y.F32Ptr, O);
        else Gemm.Sgemm(N, O, K, rc.F32Ptr, K, 1, wc.F32Ptr, 1, K, y.F32Ptr, O);
        if (bias != null)
        {
            using var bc = ContiguousF32(bias, op);
            float* yp = y.F32Ptr, bp = bc.F32Ptr;
            Par.ForChunks(N, 64, (s, e) =>
            {
                for (long n = s; n < e; n++)
                    TensorPrimitives.Add(new ReadOnlySpan<float>(yp + n * O, O), new ReadOnlySpan<float>(bp, O), new Span<float>(yp + n * O, O));
            });
        }
        if (Tensor.AnyRequiresGrad(rows, weight, bias))
        {
            bool gr = rows.RequiresGrad, gw = weight.RequiresGrad, gb = bias?.RequiresGrad ?? false;
            var sw = gr ? wc.SaveForBackward() : null;
            var sr = gw ? rc.SaveForBackward() : null;
            var wShape = weight.Shape;
            bool hasBias = bias != null;
            Tensor[] saved = new[] { sw, sr }.Where(t => t != null).ToArray()!;
            Tensor[] inputs = bias != null ? [rows, weight, bias] : [rows, weight];
            y.WithGradFn("patch_project", inputs, saved, g =>
            {
                Tensor? dr = null, dw = null, db = null;
                float* gp = g.F32Ptr;
                if (gr)
                {
                    dr = Tensor.Empty([N, K]);
                    if (sw!.DType == DType.BF16) Gemm.SgemmBF16(N, K, O, gp, O, 1, (ushort*)sw.DataPtr, K, 1, dr.F32Ptr, K);
                    else Gemm.Sgemm(N, K, O, gp, O, 1, sw.F32Ptr, K, 1, dr.F32Ptr, K);
                }
                if (gw)
                {
                    dw = Tensor.Empty(wShape);
                    Gemm.Sgemm(O, K, N, gp, 1, O, sr!.F32Ptr, K, 1, dw.F32Ptr, K);
                }
                if (gb)
                {
                    db = Tensor.Zeros([O]);
                    float* dbp = db.F32Ptr;
                    for (long n = 0; n < N; n++)
                        TensorPrimitives.Add(new ReadOnlySpan<float>(dbp, O), new ReadOnlySpan<float>(gp + n * O, O), new Span<float>(dbp, O));
                }
                return hasBias ? [dr, dw, db] : [dr, dw];
            });
        }
        wc.Dispose();
        return y;
    }
}
