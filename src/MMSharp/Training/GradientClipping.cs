using System.Numerics.Tensors;
using MMSharp.Engine;
using MMSharp.Engine.Kernels;
using MMSharp.NN;

namespace MMSharp.Training;

/// <summary>The global gradient norm of one step and what clipping did with it.</summary>
/// <param name="Norm">‖g‖₂ over every gradient, before clipping (NaN or ∞ when a gradient is not finite).</param>
/// <param name="Clipped">Whether the gradients were scaled down.</param>
public readonly record struct GradNorm(double Norm, bool Clipped)
{
    public bool IsFinite => double.IsFinite(Norm);
}

/// <summary>Gradient clipping by the global L2 norm (<c>torch.nn.utils.clip_grad_norm_</c>).</summary>
public static unsafe class GradientClipping
{
    /// <summary>Elements per partial sum: fixed, so the norm does not depend on the thread count.</summary>
    const int Block = 1 << 14;

    /// <summary>
    /// ‖g‖₂ = sqrt(Σ_params Σ_i g_i²) over the gradients of <paramref name="parameters"/> (those without a gradient count
    /// as zero), accumulated in double over fixed blocks of <see cref="Block"/> elements that are summed in parameter and
    /// block order, so the result is bit-identical for any thread count.
    /// </summary>
    public static double GlobalNorm(IEnumerable<Parameter> parameters)
    {
        double total = 0;
        foreach (var p in parameters)
        {
            var g = p.Grad;
            if (g == null) continue;
            if (g.DType != DType.F32 || !g.IsContiguous)
                throw new InvalidOperationException($"gradient norm: gradient {g.Describe()} of {p} must be contiguous F32");
            float* ptr = g.F32Ptr;
            long n = g.NumEl;
            int blocks = (int)((n + Block - 1) / Block);
            var partial = new double[blocks];
            Par.For(blocks, b =>
            {
                long s = (long)b * Block;
                int len = (int)Math.Min(Block, n - s);
                // fp32 dot within a block (≤ 16k terms), double across blocks: accurate and order-fixed
                partial[b] = TensorPrimitives.Dot(new ReadOnlySpan<float>(ptr + s, len), new ReadOnlySpan<float>(ptr + s, len));
            });
            foreach (var x in partial) total += x;
        }
        return Math.Sqrt(total);
    }

    /// <summary>
    /// Computes the global norm and, when it is finite and above <paramref name="maxNorm"/>, scales every gradient by
    /// maxNorm / (norm + 1e-6) as torch does. A non-finite norm is reported and nothing is scaled: the caller must not
    /// apply the update (see <see cref="NonFiniteGuard"/>). <paramref name="maxNorm"/> &lt;= 0 only measures.
    /// </summary>
    public static GradNorm ClipGlobalNorm(IReadOnlyList<Parameter> parameters, double maxNorm)
    {
        double norm = GlobalNorm(parameters);
        if (!double.IsFinite(norm) || maxNorm <= 0) return new GradNorm(norm, false);
        double coef = maxNorm / (norm + 1e-6);
        if (coef >= 1) return new GradNorm(norm, false);
        float c = (float)coef;
        foreach (var p in parameters)
        {
            var g = p.Grad;
            if (g == null) continue;
            float* ptr = g.F32Ptr;
            Par.ForChunks(g.NumEl, 1 << 15, (s, e) =>
            {
                for (long q = s; q < e; q += int.MaxValue)
                {
                    var span = new Span<float>(ptr + q, (int)Math.Min(int.MaxValue, e - q));
                    TensorPrimitives.Multiply(span, c, span);
                }
            });
        }
        return new GradNorm(norm, true);
    }
}
