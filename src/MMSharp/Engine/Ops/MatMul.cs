using System.Numerics.Tensors;
using MMSharp.Engine.Autograd;
using MMSharp.Engine.Kernels;

namespace MMSharp.Engine;

public static unsafe partial class Ops
{
    // ---------------------------------------------------------------- matmul

    /// <summary>
    /// Matrix product with torch.matmul semantics: 1-D x 1-D is a dot product, a 1-D left (right) operand
    /// is a row (column) vector whose dimension is removed from the result, and leading dims are batch dims
    /// that broadcast. y[..., i, j] = sum_k a[..., i, k] * b[..., k, j].
    /// </summary>
    /// <remarks>
    /// Transposed views (a unit stride in either of the last two dims) go to the GEMM without a copy;
    /// b may be BF16 (read directly). Backward: da = g b^T, db = a^T g, each summed over the batch dims
    /// its operand was broadcast along.
    /// </remarks>
    public static Tensor MatMul(Tensor a, Tensor b)
    {
        if (a.Rank == 0 || b.Rank == 0)
            throw new ArgumentException($"matmul: operands must have at least one dimension, got {a.Describe()} and {b.Describe()}");
        if (a.Rank == 1 && b.Rank == 1)
        {
            // [k] . [k] -> []
            using var row = Unsqueeze(a, 0);
            using var col = Unsqueeze(b, 1);
            using var r = MatMulBatched(row, col);
            return Reshape(r);
        }
        if (a.Rank == 1)
        {
            // [k] x [..., k, n] -> [..., n]
            using var row = Unsqueeze(a, 0);
            using var r = MatMulBatched(row, b);
            return Squeeze(r, -2);
        }
        if (b.Rank == 1)
        {
            // [..., m, k] x [k] -> [..., m]
            using var col = Unsqueeze(b, 1);
            using var r = MatMulBatched(a, col);
            return Squeeze(r, -1);
        }
        return MatMulBatched(a, b);
    }

    /// <summary>MatMul of operands with rank >= 2: [...a, m, k] x [...b, k, n] -> [broadcast(a, b), m, n].</summary>
    static Tensor MatMulBatched(Tensor a, Tensor b)
    {
        int m = a.Shape[^2], k = a.Shape[^1], n = b.Shape[^1];
        if (b.Shape[^2] != k)
            throw new ArgumentException($"matmul: inner dimensions differ: {a.Describe()} x {b.Describe()}");
        int[] batch;
        try { batch = BroadcastShape(a.Shape[..^2], b.Shape[..^2]); }
        catch (ArgumentException) { throw new ArgumentException($"matmul: batch dimensions of {a.Describe()} and {b.Describe()} do not broadcast"); }

        var y = Tensor.Empty([.. batch, m, n]);
        using (GradMode.NoGrad())
        {
            using var ac = GemmOperand(a, allowBF16: false);
            using var bc = GemmOperand(b, allowBF16: true);
            BatchedGemm(ac, bc, batch, m, n, k, y.F32Ptr);
        }

        bool da = a.RequiresGrad, db = b.RequiresGrad;
        if (Tensor.AnyRequiresGrad(a, b))
        {
            var sa = db ? a.SaveForBackward() : null;
            var sb = da ? b.SaveForBackward() : null;
            int[] aShape = a.Shape, bShape = b.Shape;
            var saved = new[] { sa, sb }.Where(t => t != null).Select(t => t!).ToArray();
            y.WithGradFn("matmul", [a, b], saved, g =>
            {
                Tensor? ga = null, gb = null;
                if (da)
                {
                    using var bt = sb!.MT;
                    using var full = MatMulBatched(g, bt);
                    ga = SumToShape(full, aShape);
                }
                if (db)
                {
                    using var at = sa!.MT;
                    using var full = MatMulBatched(at, g);
                    gb = SumToShape(full, bShape);
                }
                return [ga, gb];
            });
        }
        return y;
    }

    /// <summary>
    /// The operand as the GEMM reads it: F32 (or BF16 when allowed) with a unit stride in one of the last two
    /// dims. A new reference to the same memory when it already is, else a contiguous copy.
    /// </summary>
    static Tensor GemmOperand(Tensor x, bool allowBF16)
    {
        bool dtypeOk = x.DType == DType.F32 || (allowBF16 && x.DType == DType.BF16);
        bool unitStride = x.Strides[^1] == 1 || x.Strides[^2] == 1 || x.Shape[^1] == 1 || x.Shape[^2] == 1;
        if (dtypeOk && unitStride) return x.Alias();
        return Contiguous(x, dtypeOk ? x.DType : DType.F32);
    }

    /// <summary>y[t] = a[t] x b[t] for every index t of the broadcast batch shape; y contiguous.</summary>
    static void BatchedGemm(Tensor a, Tensor b, int[] batch, int m, int n, int k, float* y)
    {
        int count = (int)Tensor.Product(batch);
        var aOff = BatchOffsets(a, batch);
        var bOff = BatchOffsets(b, batch);
        long aRow = a.Strides[^2], aCol = a.Strides[^1], bRow = b.Strides[^2], bCol = b.Strides[^1];
        nint ap = (nint)a.DataPtr, bp = (nint)b.DataPtr, yp = (nint)y;
        bool bf16 = b.DType == DType.BF16;
        void One(int t)
        {
            float* at = (float*)ap + aOff[t];
            float* ct = (float*)yp + (long)t * m * n;
            if (bf16) Gemm.SgemmBF16(m, n, k, at, aRow, aCol, (ushort*)bp + bOff[t], bRow, bCol, ct, n);
            else Gemm.Sgemm(m, n, k, at, aRow, aCol, (float*)bp + bOff[t], bRow, bCol, ct, n);
        }
        // many small products (attention heads): one per work item; few large ones: the GEMM threads itself
        if (count > 1 && (long)m * n * k < (1L << 20)) Par.For(count, One);
        else for (int t = 0; t < count; t++) One(t);
    }

    /// <summary>Element offset of each batch item of <paramref name="x"/> read as broadcast to <paramref name="batch"/>.</summary>
    static long[] BatchOffsets(Tensor x, int[] batch)
    {
        int count = (int)Tensor.Product(batch);
        var offsets = new long[count];
        int lead = batch.Length - (x.Rank - 2);
        for (int t = 0; t < count; t++)
        {
            long rem = t, off = 0;
            for (int d = batch.Length - 1; d >= 0; d--)
            {
                int i = (int)(rem % batch[d]);
                rem /= batch[d];
                int src = d - lead;
                if (src >= 0 && x.Shape[src] != 1) off += i * x.Strides[src];
            }
            offsets[t] = off;
        }
        return offsets;
    }

    // ---------------------------------------------------------------- linear

    /// <summary>
    /// Fully connected layer in the checkpoint layout: y[..., o] = sum_i x[..., i] * weight[o, i] + bias[o]
    /// (y = x W^T + b). weight is [out, in] in F32 or BF16 (read as bf16 directly, never widened into a copy);
    /// bias [out] is optional.
    /// </summary>
    /// <remarks>Backward: dx = g W (bf16 W read directly), dW = g^T x, db = sum of g over rows. BF16 weights are frozen.</remarks>
    public static Tensor Linear(Tensor x, Tensor weight, Tensor? bias = null)
    {
        if (weight.Rank != 2)
            throw new ArgumentException($"linear: weight must be [out, in], got {weight.Describe()}");
        int outF = weight.Shape[0], inF = weight.Shape[1];
        if (x.Rank < 1 || x.Shape[^1] != inF)
            throw new ArgumentException($"linear: input {x.Describe()} does not end in {inF} (weight {weight.Describe()})");
        if (bias != null && (bias.Rank != 1 || bias.Shape[0] != outF))
            throw new ArgumentException($"linear: bias {bias.Describe()} must be [{outF}] (weight {weight.Describe()})");
        int rows = checked((int)(x.NumEl / Math.Max(1, inF)));
        if (inF == 0) rows = checked((int)Tensor.Product(x.Shape.AsSpan(0, x.Rank - 1)));

        var y = Tensor.Empty([.. x.Shape[..^1], outF]);
        Tensor xc, wc;
        using (GradMode.NoGrad())
        {
            xc = Contiguous(x, DType.F32);
            wc = GemmOperand(weight, allowBF16: true);
            float beta = 0f;
            if (bias != null)
            {
                // start from the bias and let the GEMM accumulate onto it
                using var bc = Contiguous(bias, DType.F32);
                var bspan = new ReadOnlySpan<float>(bc.F32Ptr, outF);
                for (long r = 0; r < rows; r++) bspan.CopyTo(new Span<float>(y.F32Ptr + r * outF, outF));
                beta = 1f;
            }
            LinearGemm(rows, outF, inF, xc.F32Ptr, inF, 1, wc, transposeW: true, y.F32Ptr, beta);
        }

        bool dx = x.RequiresGrad, dw = weight.RequiresGrad, db = bias?.RequiresGrad ?? false;
        if (Tensor.AnyRequiresGrad(x, weight, bias))
        {
            var sx = dw ? xc.SaveForBackward() : null;
            var sw = dx ? wc.SaveForBackward() : null;
            int[] xShape = x.Shape;
            var saved = new[] { sx, sw }.Where(t => t != null).Select(t => t!).ToArray();
            Tensor[] inputs = bias != null ? [x, weight, bias] : [x, weight];
            y.WithGradFn("linear", inputs, saved, g =>
            {
                Tensor? gx = null, gw = null, gb = null;
                float* gp = g.F32Ptr;
                if (dx)
                {
                    // dx[r, i] = sum_o g[r, o] W[o, i]
                    gx = Tensor.Empty(xShape);
                    LinearGemm(rows, inF, outF, gp, outF, 1, sw!, transposeW: false, gx.F32Ptr, 0f);
                }
                if (dw)
                {
                    // dW[o, i] = sum_r g[r, o] x[r, i]
                    gw = Tensor.Empty([outF, inF]);
                    Gemm.Sgemm(outF, inF, rows, gp, 1, outF, sx!.F32Ptr, inF, 1, gw.F32Ptr, inF);
                }
                if (db) gb = SumToShape(g, [outF]);
                return bias != null ? [gx, gw, gb] : [gx, gw];
            });
        }
        xc.Dispose();
        wc.Dispose();
        return y;
    }

    /// <summary>c[rows, cols] = beta c + a[rows, inner] x (W^T if <paramref name="transposeW"/> else W), W F32 or BF16.</summary>
    static void LinearGemm(int rows, int cols, int inner, float* a, long aRow, long aCol, Tensor w, bool transposeW, float* c, float beta)
    {
        // W[o, i] at w[o*s0 + i*s1]; as B(k, j): W^T -> B(k=i, j=o), W -> B(k=o, j=i)
        long s0 = w.Strides[0], s1 = w.Strides[1];
        long bRow = transposeW ? s1 : s0, bCol = transposeW ? s0 : s1;
        if (w.DType == DType.BF16) Gemm.SgemmBF16(rows, cols, inner, a, aRow, aCol, (ushort*)w.DataPtr, bRow, bCol, c, cols, beta);
        else Gemm.Sgemm(rows, cols, inner, a, aRow, aCol, w.F32Ptr, bRow, bCol, c, cols, beta);
    }
}

public sealed partial class Tensor
{
    /// <summary><see cref="Ops.MatMul"/>(this, other).</summary>
    public Tensor MatMul(Tensor other) => Ops.MatMul(this, other);
}
