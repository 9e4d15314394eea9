using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using MMSharp.Engine.Kernels;
using V256 = System.Runtime.Intrinsics.Vector256<float>;
using V512 = System.Runtime.Intrinsics.Vector512<float>;

namespace MMSharp.Engine;

/// <summary>
/// LayerNorm and RMSNorm over the last dim, fp32, with fused forward and backward row kernels
/// (after llm.c layernorm_forward/backward). Rows run in parallel. Forward saves the per-row mean and
/// 1/std (not the normalised activations). The weight and bias gradients are summed per fixed block
/// of rows and the block partials added in block order, so they are identical for any thread count.
/// RMSNorm is the same kernel without centring.
/// </summary>
public static unsafe partial class Ops
{
    /// <summary>Number of row blocks whose partial dweight/dbias are summed in order (fixed: thread-count independent).</summary>
    const int NormGradBlocks = 32;

    /// <summary>
    /// y = (x - mean) / sqrt(var + eps) · weight + bias over the last dim (biased variance), weight and bias
    /// optional [C]. Backward gives dx, dweight = Σ g·x̂, dbias = Σ g.
    /// </summary>
    public static Tensor LayerNorm(Tensor x, Tensor? weight, Tensor? bias, float eps = 1e-5f) => NormCore(x, weight, bias, eps, center: true, "layer_norm");

    /// <summary>
    /// RMSNorm as in Qwen2/LLaMA, in fp32: y = x · rsqrt(mean(x²) + eps) · weight over the last dim
    /// (weight [C] optional). Backward gives dx and dweight = Σ g·x̂.
    /// </summary>
    public static Tensor RmsNorm(Tensor x, Tensor? weight, float eps = 1e-6f) => NormCore(x, weight, null, eps, center: false, "rms_norm");

    static Tensor NormCore(Tensor x, Tensor? weight, Tensor? bias, float eps, bool center, string name)
    {
        if (x.Rank < 1) throw new ArgumentException($"{name}: {x.Describe()} needs a last dim");
        int c = x.Shape[^1];
        foreach (var p in new[] { weight, bias })
            if (p != null && (p.Rank != 1 || p.Shape[0] != c))
                throw new ArgumentException($"{name}: parameter {p.Describe()} must have shape [{c}] to match {x.Describe()}");
        int rows = c == 0 ? 0 : checked((int)(x.NumEl / c));

        var xc = ContiguousF32(x, name);
        var wc = weight != null ? ContiguousF32(weight, name) : null;
        var bc = bias != null ? ContiguousF32(bias, name) : null;
        var y = Tensor.Empty(x.Shape);
        var mean = new float[rows];
        var rstd = new float[rows];
        float* xp = xc.F32Ptr, yp = y.F32Ptr, wp = wc != null ? wc.F32Ptr : null, bp = bc != null ? bc.F32Ptr : null;
        ForRows(rows, c, r =>
        {
            float* xr = xp + (long)r * c;
            float m = center ? RowReduce.Sum(xr, c) / c : 0f;
            float ms = RowReduce.SumSquaredDiff(xr, c, m) / c;
            float s = 1f / MathF.Sqrt(ms + eps);
            mean[r] = m; rstd[r] = s;
            NormalizeRow(xr, yp + (long)r * c, c, m, s, wp, bp);
        });

        var inputs = new List<Tensor> { x };
        if (weight != null) inputs.Add(weight);
        if (bias != null) inputs.Add(bias);
        if (Tensor.AnyRequiresGrad(inputs.ToArray()))
        {
            var keepX = xc.SaveForBackward();
            var keepW = wc?.SaveForBackward();
            bool needX = x.RequiresGrad, needW = weight?.RequiresGrad ?? false, needB = bias?.RequiresGrad ?? false;
            var xShape = x.Shape;
            bool hasW = weight != null, hasB = bias != null;
            y.WithGradFn(name, inputs.ToArray(), keepW != null ? [keepX, keepW] : [keepX], g =>
            {
                var dx = needX ? Tensor.Empty(xShape) : null;
                var dw = needW ? Tensor.Zeros(c) : null;
                var db = needB ? Tensor.Zeros(c) : null;
                NormBackward(g.F32Ptr, keepX.F32Ptr, keepW != null ? keepW.F32Ptr : null, mean, rstd, rows, c, center,
                    dx != null ? dx.F32Ptr : null, dw != null ? dw.F32Ptr : null, db != null ? db.F32Ptr : null);
                var grads = new List<Tensor?> { dx };
                if (hasW) grads.Add(dw);
                if (hasB) grads.Add(db);
                return grads.ToArray();
            });
        }
        xc.Dispose(); wc?.Dispose(); bc?.Dispose();
        return y;
    }

    /// <summary>y = (x - m)·s·w + b with w, b optional (null).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void NormalizeRow(float* x, float* y, int n, float m, float s, float* w, float* b)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var vm = Vector512.Create(m); var vs = Vector512.Create(s);
            for (; i + 16 <= n; i += 16)
            {
                var v = (Vector512.Load(x + i) - vm) * vs;
                if (w != null) v *= Vector512.Load(w + i);
                if (b != null) v += Vector512.Load(b + i);
                v.Store(y + i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var vm = Vector256.Create(m); var vs = Vector256.Create(s);
            for (; i + 8 <= n; i += 8)
            {
                var v = (Vector256.Load(x + i) - vm) * vs;
                if (w != null) v *= Vector256.Load(w + i);
                if (b != null) v += Vector256.Load(b + i);
                v.Store(y + i);
            }
        }
        for (; i < n; i++)
        {
            float v = (x[i] - m) * s;
            if (w != null) v *= w[i];
            if (b != null) v += b[i];
            y[i] = v;
        }
    }

    /// <summary>
    /// x̂ = (x - mean)·rstd, d = g·w; dx = (d - mean(d) - x̂·mean(d·x̂))·rstd (the mean(d) term only when
    /// centring); dw = Σ_rows g·x̂, db = Σ_rows g. Any of dx, dw, db may be null.
    /// </summary>
    static void NormBackward(float* g, float* x, float* w, float[] mean, float[] rstd, int rows, int c, bool center, float* dx, float* dw, float* db)
    {
        int blocks = Math.Min(rows, NormGradBlocks);
        if (blocks == 0) return;
        bool partials = dw != null || db != null;
        using var pw = partials ? Tensor.Zeros(blocks, c) : null;
        using var pb = partials ? Tensor.Zeros(blocks, c) : null;
        float* pwp = pw != null ? pw.F32Ptr : null, pbp = pb != null ? pb.F32Ptr : null;
        Action<int> body = blk =>
        {
            int r0 = (int)((long)rows * blk / blocks), r1 = (int)((long)rows * (blk + 1) / blocks);
            float* bw = pwp != null ? pwp + (long)blk * c : null, bb = pbp != null ? pbp + (long)blk * c : null;
            for (int r = r0; r < r1; r++)
                NormBackwardRow(g + (long)r * c, x + (long)r * c, w, mean[r], rstd[r], c, center,
                    dx != null ? dx + (long)r * c : null, bw, bb);
        };
        if ((long)rows * c < VectorLoop.ParallelGrain) for (int b = 0; b < blocks; b++) body(b);
        else Par.For(blocks, body);
        if (!partials) return;
        var dws = dw != null ? new Span<float>(dw, c) : default;
        var dbs = db != null ? new Span<float>(db, c) : default;
        for (int b = 0; b < blocks; b++)
        {
            if (dw != null) System.Numerics.Tensors.TensorPrimitives.Add(dws, new ReadOnlySpan<float>(pwp + (long)b * c, c), dws);
            if (db != null) System.Numerics.Tensors.TensorPrimitives.Add(dbs, new ReadOnlySpan<float>(pbp + (long)b * c, c), dbs);
        }
    }

    static void NormBackwardRow(float* g, float* x, float* w, float m, float s, int n, bool center, float* dx, float* dw, float* db)
    {
        // pass 1: Σ d and Σ d·x̂, and the weight/bias partials (double: the scalar fallback sums the whole row here)
        double sumD = 0, sumDN = 0;
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var vm = Vector512.Create(m); var vs = Vector512.Create(s);
            V512 aD = V512.Zero, aDN = V512.Zero;
            for (; i + 16 <= n; i += 16)
            {
                var gv = Vector512.Load(g + i);
                var nv = (Vector512.Load(x + i) - vm) * vs;
                var d = w != null ? gv * Vector512.Load(w + i) : gv;
                aD += d; aDN += d * nv;
                if (dw != null) (Vector512.Load(dw + i) + gv * nv).Store(dw + i);
                if (db != null) (Vector512.Load(db + i) + gv).Store(db + i);
            }
            sumD = Vector512.Sum(aD); sumDN = Vector512.Sum(aDN);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var vm = Vector256.Create(m); var vs = Vector256.Create(s);
            V256 aD = V256.Zero, aDN = V256.Zero;
            for (; i + 8 <= n; i += 8)
            {
                var gv = Vector256.Load(g + i);
                var nv = (Vector256.Load(x + i) - vm) * vs;
                var d = w != null ? gv * Vector256.Load(w + i) : gv;
                aD += d; aDN += d * nv;
                if (dw != null) (Vector256.Load(dw + i) + gv * nv).Store(dw + i);
                if (db != null) (Vector256.Load(db + i) + gv).Store(db + i);
            }
            sumD = Vector256.Sum(aD); sumDN = Vector256.Sum(aDN);
        }
        for (; i < n; i++)
        {
            float nv = (x[i] - m) * s, d = w != null ? g[i] * w[i] : g[i];
            sumD += d; sumDN += d * nv;
            if (dw != null) dw[i] += g[i] * nv;
            if (db != null) db[i] += g[i];
        }
        if (dx == null) return;

        // pass 2: dx
        float m1 = center ? (float)(sumD / n) : 0f, m2 = (float)(sumDN / n);
        i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var vm = Vector512.Create(m); var vs = Vector512.Create(s); var v1 = Vector512.Create(m1); var v2 = Vector512.Create(m2);
            for (; i + 16 <= n; i += 16)
            {
                var nv = (Vector512.Load(x + i) - vm) * vs;
                var d = w != null ? Vector512.Load(g + i) * Vector512.Load(w + i) : Vector512.Load(g + i);
                ((d - v1 - nv * v2) * vs).Store(dx + i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var vm = Vector256.Create(m); var vs = Vector256.Create(s); var v1 = Vector256.Create(m1); var v2 = Vector256.Create(m2);
            for (; i + 8 <= n; i += 8)
            {
                var nv = (Vector256.Load(x + i) - vm) * vs;
                var d = w != null ? Vector256.Load(g + i) * Vector256.Load(w + i) : Vector256.Load(g + i);
                ((d - v1 - nv * v2) * vs).Store(dx + i);
            }
        }
        for (; i < n; i++)
        {
            float nv = (x[i] - m) * s, d = w != null ? g[i] * w[i] : g[i];
            dx[i] = (d - m1 - nv * m2) * s;
        }
    }
}
