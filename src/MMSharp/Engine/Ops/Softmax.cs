using System.Runtime.Intrinsics;
using MMSharp.Engine.Autograd;
using MMSharp.Engine.Kernels;
using V256 = System.Runtime.Intrinsics.Vector256<float>;
using V512 = System.Runtime.Intrinsics.Vector512<float>;

namespace MMSharp.Engine;

/// <summary>
/// softmax and log_softmax over one dimension. The last dim is the fast path: per row one max pass,
/// one fused exp-and-sum pass and one scale pass, rows in parallel, max-subtracted so it never
/// overflows. Another dim is moved last by a transposed copy and moved back (correct, not tuned).
/// Both save only their output for backward.
/// </summary>
public static unsafe partial class Ops
{
    /// <summary>y·(g - d) with d = Σ g·y over the row.</summary>
    struct SoftmaxGradOp(float d) : IBinaryOp
    {
        public float Invoke(float g, float y) => y * (g - d);
        public V256 Invoke(V256 g, V256 y) => y * (g - Vector256.Create(d));
        public V512 Invoke(V512 g, V512 y) => y * (g - Vector512.Create(d));
    }

    /// <summary>g - exp(y)·s with s = Σ g over the row.</summary>
    struct LogSoftmaxGradOp(float s) : IBinaryOp
    {
        public float Invoke(float g, float y) => g - MathF.Exp(y) * s;
        public V256 Invoke(V256 g, V256 y) => g - Vector256.Exp(y) * Vector256.Create(s);
        public V512 Invoke(V512 g, V512 y) => g - Vector512.Exp(y) * Vector512.Create(s);
    }

    /// <summary>Runs <paramref name="rowKernel"/> on contiguous [rows, V] F32 views of the inputs with
    /// <paramref name="dim"/> moved last, and returns the result in the original layout. No graph.</summary>
    static Tensor AlongLastDim(int dim, string name, Tensor[] inputs, Action<IntPtr[], IntPtr, long, int> rowKernel)
    {
        using var noGrad = GradMode.NoGrad();
        var shape = inputs[0].Shape;
        int last = shape.Length - 1;
        bool moved = dim != last;
        var views = new Tensor[inputs.Length];
        for (int i = 0; i < inputs.Length; i++)
        {
            if (!moved) views[i] = ContiguousF32(inputs[i], name);
            else
            {
                using var t = Transpose(inputs[i], dim, last);
                views[i] = ContiguousF32(t, name);
            }
        }
        var outShape = views[0].Shape;
        int v = outShape.Length == 0 ? 1 : outShape[^1];
        long rows = v == 0 ? 0 : views[0].NumEl / v;
        var y = Tensor.Empty(outShape);
        var ptrs = views.Select(t => (IntPtr)t.F32Ptr).ToArray();
        rowKernel(ptrs, (IntPtr)y.F32Ptr, rows, v);
        foreach (var t in views) t.Dispose();
        if (!moved) return y;
        using var back = Transpose(y, dim, last);
        y.Dispose();
        return ContiguousF32(back, name);
    }

    static void ForRows(long rows, int v, Action<long> row) =>
        Par.ForChunks(rows, Math.Max(1, VectorLoop.ParallelGrain / Math.Max(1, v)), (s, e) => { for (long r = s; r < e; r++) row(r); });

    static void SoftmaxRows(IntPtr[] inp, IntPtr outp, long rows, int v)
    {
        float* x0 = (float*)inp[0], y0 = (float*)outp;
        ForRows(rows, v, r =>
        {
            float* x = x0 + r * v, y = y0 + r * v;
            var exp = new RowReduce.ExpShift(RowReduce.Max(x, v));
            var scale = new MulScalarOp(1f / RowReduce.MapSum(ref exp, x, y, v));
            VectorLoop.MapContiguous(ref scale, y, y, v);
        });
    }

    static void LogSoftmaxRows(IntPtr[] inp, IntPtr outp, long rows, int v)
    {
        float* x0 = (float*)inp[0], y0 = (float*)outp;
        ForRows(rows, v, r =>
        {
            float* x = x0 + r * v, y = y0 + r * v;
            float m = RowReduce.Max(x, v);
            var shift = new AddScalarOp(-(m + MathF.Log(RowReduce.SumExp(x, v, m))));
            VectorLoop.MapContiguous(ref shift, x, y, v);
        });
    }

    static void SoftmaxBackwardRows(IntPtr[] inp, IntPtr outp, long rows, int v)
    {
        float* g0 = (float*)inp[0], y0 = (float*)inp[1], d0 = (float*)outp;
        ForRows(rows, v, r =>
        {
            float* g = g0 + r * v, y = y0 + r * v;
            var op = new SoftmaxGradOp(RowReduce.Dot(g, y, v));
            VectorLoop.ZipContiguous(ref op, g, y, d0 + r * v, v);
        });
    }

    static void LogSoftmaxBackwardRows(IntPtr[] inp, IntPtr outp, long rows, int v)
    {
        float* g0 = (float*)inp[0], y0 = (float*)inp[1], d0 = (float*)outp;
        ForRows(rows, v, r =>
        {
            float* g = g0 + r * v, y = y0 + r * v;
            var op = new LogSoftmaxGradOp(RowReduce.Sum(g, v));
            VectorLoop.ZipContiguous(ref op, g, y, d0 + r * v, v);
        });
    }

    /// <summary>y = exp(x - max) / Σ exp(x - max) over <paramref name="dim"/>. dx = y·(g - Σ g·y).</summary>
    public static Tensor Softmax(Tensor x, int dim = -1)
    {
        int d = x.NormDim(dim);
        var y = AlongLastDim(d, "softmax", [x], SoftmaxRows);
        if (Tensor.AnyRequiresGrad(x))
        {
            var keepY = y.SaveForBackward();
            y.WithGradFn("softmax", [x], [keepY], g => [AlongLastDim(d, "softmax", [g, keepY], SoftmaxBackwardRows)]);
        }
        return y;
    }

    /// <summary>y = x - max - log Σ exp(x - max) over <paramref name="dim"/>. dx = g - exp(y)·Σ g.</summary>
    public static Tensor LogSoftmax(Tensor x, int dim = -1)
    {
        int d = x.NormDim(dim);
        var y = AlongLastDim(d, "log_softmax", [x], LogSoftmaxRows);
        if (Tensor.AnyRequiresGrad(x))
        {
            var keepY = y.SaveForBackward();
            y.WithGradFn("log_softmax", [x], [keepY], g => [AlongLastDim(d, "log_softmax", [g, keepY], LogSoftmaxBackwardRows)]);
        }
        return y;
    }
}
