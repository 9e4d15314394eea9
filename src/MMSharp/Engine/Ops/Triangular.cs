using MMSharp.Engine.Kernels;

namespace MMSharp.Engine;

/// <summary>Lower/upper triangles of the last two dims, and boolean triangle masks (causal attention).</summary>
public static unsafe partial class Ops
{
    /// <summary>Per row i of [rows, cols]: dst[i, j] = src[i, j] where kept (j - i &lt;= diagonal for lower,
    /// j - i &gt;= diagonal for upper), 0 elsewhere.</summary>
    static void TriangleCore(float* src, float* dst, long batches, int rows, int cols, int diagonal, bool lower)
    {
        long total = batches * rows;
        int items = Rows.Items(total * cols * 8, total);
        Par.For(items, c =>
        {
            long s = total * c / items, e = total * (c + 1) / items;
            for (long r = s; r < e; r++)
            {
                long i = r % rows;
                // lower keeps j in [0, i + diagonal], upper keeps j in [i + diagonal, cols)
                int split = (int)Math.Clamp(lower ? i + diagonal + 1 : i + diagonal, 0, cols);
                float* sp = src + r * cols, dp = dst + r * cols;
                if (lower)
                {
                    Rows.Copy((byte*)sp, (byte*)dp, split * 4L);
                    new Span<float>(dp + split, cols - split).Clear();
                }
                else
                {
                    new Span<float>(dp, split).Clear();
                    Rows.Copy((byte*)(sp + split), (byte*)(dp + split), (cols - split) * 4L);
                }
            }
        });
    }

    static Tensor Triangle(Tensor x, int diagonal, bool lower)
    {
        string op = lower ? "Tril" : "Triu";
        if (x.Rank < 2) throw new ArgumentException($"{op}: {x.Describe()} needs at least 2 dims");
        int rows = x.Shape[^2], cols = x.Shape[^1];
        long batches = rows * (long)cols == 0 ? 0 : x.NumEl / ((long)rows * cols);
        var y = Tensor.Empty(x.Shape);
        using (var xc = Contiguous(x, DType.F32)) TriangleCore(xc.F32Ptr, y.F32Ptr, batches, rows, cols, diagonal, lower);
        if (Tensor.AnyRequiresGrad(x))
        {
            var shape = x.Shape;
            y.WithGradFn(lower ? "tril" : "triu", [x], [], g =>
            {
                var gx = Tensor.Empty(shape);
                TriangleCore(g.F32Ptr, gx.F32Ptr, batches, rows, cols, diagonal, lower);
                return [gx];
            });
        }
        return y;
    }

    /// <summary>Lower triangle of the last two dims: y[..., i, j] = j - i &lt;= diagonal ? x : 0. Backward: the same
    /// triangle of g.</summary>
    public static Tensor Tril(Tensor x, int diagonal = 0) => Triangle(x, diagonal, lower: true);

    /// <summary>Upper triangle of the last two dims: y[..., i, j] = j - i &gt;= diagonal ? x : 0. Backward: the same
    /// triangle of g.</summary>
    public static Tensor Triu(Tensor x, int diagonal = 0) => Triangle(x, diagonal, lower: false);

    static Tensor TriangleMask(int rows, int cols, int diagonal, bool lower)
    {
        var m = Tensor.Empty([rows, cols], DType.Bool);
        byte* p = m.DataPtr;
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++)
                p[(long)i * cols + j] = (lower ? j - i <= diagonal : j - i >= diagonal) ? (byte)1 : (byte)0;
        return m;
    }

    /// <summary>Bool [rows, cols], true where j - i &lt;= diagonal (the causal "may attend" mask for diagonal 0).</summary>
    public static Tensor TrilMask(int rows, int cols, int diagonal = 0) => TriangleMask(rows, cols, diagonal, lower: true);

    /// <summary>Bool [rows, cols], true where j - i &gt;= diagonal (with diagonal 1: the causal "future" positions to mask out).</summary>
    public static Tensor TriuMask(int rows, int cols, int diagonal = 0) => TriangleMask(rows, cols, diagonal, lower: false);
}
