using System.Runtime.Intrinsics;
using MMSharp.Engine.Kernels;
using V256 = System.Runtime.Intrinsics.Vector256<float>;
using V512 = System.Runtime.Intrinsics.Vector512<float>;

namespace MMSharp.Engine;

/// <summary>How a per-element loss is reduced.</summary>
public enum Reduction
{
    /// <summary>Σ wᵢ·lossᵢ / Σ wᵢ over non-ignored elements (the plain mean when there are no weights).
    /// NaN when every target is ignored, as in PyTorch.</summary>
    Mean,
    /// <summary>Σ wᵢ·lossᵢ over non-ignored elements.</summary>
    Sum,
    /// <summary>wᵢ·lossᵢ per element (0 where ignored), in the shape of the targets.</summary>
    None,
}

/// <summary>
/// Fused cross-entropy on logits. Forward keeps, per row, only the log-sum-exp (N floats) — never a
/// log-softmax copy of the [N, V] logits; backward rebuilds softmax from the saved logits and
/// log-sum-exp: dlogits = (softmax - onehot(target))·wᵢ·scale, 0 for ignored rows.
/// </summary>
public static unsafe partial class Ops
{
    /// <summary>
    /// lossᵢ = logsumexp(logitsᵢ) - logitsᵢ[targetᵢ] for logits [..., V] and integer targets [...],
    /// skipping targets equal to <paramref name="ignoreIndex"/>, optionally weighted per token by
    /// <paramref name="weights"/> (float, shape of targets), reduced by <paramref name="reduction"/>.
    /// </summary>
    public static Tensor CrossEntropy(Tensor logits, Tensor targets, int ignoreIndex = -100, Tensor? weights = null, Reduction reduction = Reduction.Mean)
        => CrossEntropyCore(logits, targets, ignoreIndex, weights, reduction).loss;

    /// <summary>
    /// The summed (weighted) cross-entropy and the number of non-ignored targets, for normalising
    /// over several micro-batches or ranks: loss = Σ sums / Σ counts. The sum is differentiable
    /// (as <see cref="Reduction.Sum"/>); a batch with every target ignored gives 0, not NaN.
    /// </summary>
    public static (Tensor Sum, int Count) CrossEntropySumCount(Tensor logits, Tensor targets, int ignoreIndex = -100, Tensor? weights = null)
        => CrossEntropyCore(logits, targets, ignoreIndex, weights, Reduction.Sum);

    static (Tensor loss, int count) CrossEntropyCore(Tensor logits, Tensor targets, int ignoreIndex, Tensor? weights, Reduction reduction)
    {
        const string name = "cross_entropy";
        if (logits.Rank < 1 || !logits.DType.IsFloat())
            throw new ArgumentException($"{name}: logits {logits.Describe()} must be a floating tensor [..., V]");
        int v = logits.Shape[^1];
        var rowShape = logits.Shape[..^1];
        if (!rowShape.AsSpan().SequenceEqual(targets.Shape) && !(targets.NumEl == Tensor.Product(rowShape) && targets.Rank == 1))
            throw new ArgumentException($"{name}: targets {targets.Describe()} do not match logits {logits.Describe()} (expected shape {Tensor.ShapeString(rowShape)})");
        if (targets.DType is not (DType.I64 or DType.I32))
            throw new ArgumentException($"{name}: targets {targets.Describe()} must be I64 or I32");
        if (weights != null && (weights.NumEl != targets.NumEl || !weights.DType.IsFloat()))
            throw new ArgumentException($"{name}: weights {weights.Describe()} must be floating with one value per target {targets.Describe()}");
        if (weights != null && weights.RequiresGrad)
            throw new ArgumentException($"{name}: weights {weights.Describe()} are constants and cannot require grad");

        int n = checked((int)targets.NumEl);
        var tgt = targets.ToLongArray();
        var w = weights?.ToFloatArray();
        int count = 0;
        double weightSum = 0;
        for (int i = 0; i < n; i++)
        {
            long t = tgt[i];
            if (t == ignoreIndex) continue;
            if (t < 0 || t >= v)
                throw new ArgumentException($"{name}: target {t} at position {i} is outside [0, {v}) of logits {logits.Describe()} (ignore index {ignoreIndex})");
            count++;
            weightSum += w?[i] ?? 1f;
        }

        using var xc = ContiguousF32(logits, name);
        float* x0 = xc.F32Ptr;
        var lse = new float[n];
        var perRow = new float[n];
        ForRows(n, v, r =>
        {
            long t = tgt[r];
            if (t == ignoreIndex) { lse[r] = 0; perRow[r] = 0; return; }
            float* x = x0 + r * v;
            float m = RowReduce.Max(x, v);
            float l = m + MathF.Log(RowReduce.SumExp(x, v, m));
            lse[r] = l;
            perRow[r] = (l - x[t]) * (w?[r] ?? 1f);
        });

        Tensor y;
        float meanScale = (float)(1.0 / weightSum); // inf when all ignored: mean is 0·inf = NaN, as in PyTorch
        if (reduction == Reduction.None) y = Tensor.FromArray(perRow, targets.Shape);
        else
        {
            double s = 0;
            foreach (var l in perRow) s += l;
            y = Tensor.Scalar(reduction == Reduction.Mean ? (float)(s / weightSum) : (float)s);
        }

        if (Tensor.AnyRequiresGrad(logits))
        {
            var keepX = xc.SaveForBackward();
            var inShape = logits.Shape;
            y.WithGradFn(name, [logits], [keepX], g =>
            {
                var dx = Tensor.Empty(inShape);
                float* d0 = dx.F32Ptr, xs = keepX.F32Ptr, gp = g.F32Ptr;
                float g0 = gp[0] * (reduction == Reduction.Mean ? meanScale : 1f);
                ForRows(n, v, r =>
                {
                    float* d = d0 + r * v;
                    long t = tgt[r];
                    float scale = (reduction == Reduction.None ? gp[r] : g0) * (w?[r] ?? 1f);
                    if (t == ignoreIndex || scale == 0f) { new Span<float>(d, v).Clear(); return; }
                    var op = new SoftmaxFromLseOp(lse[r], scale);
                    VectorLoop.MapContiguous(ref op, xs + r * v, d, v);
                    d[t] -= scale;
                });
                return [dx];
            });
        }
        return (y, count);
    }

    /// <summary>scale·exp(x - lse): a softmax row rebuilt from its log-sum-exp.</summary>
    struct SoftmaxFromLseOp(float lse, float scale) : IUnaryOp
    {
        public float Invoke(float x) => MathF.Exp(x - lse) * scale;
        public V256 Invoke(V256 x) => Vector256.Exp(x - Vector256.Create(lse)) * Vector256.Create(scale);
        public V512 Invoke(V512 x) => Vector512.Exp(x - Vector512.Create(lse)) * Vector512.Create(scale);
    }
}
