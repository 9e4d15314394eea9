using System.Diagnostics;
using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.Engine.Kernels;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace MMSharp.Bench;

/// <summary>
/// Timings of the pointwise, reduction, softmax, norm and loss kernels, with System.Numerics.Tensors
/// single-thread baselines measured side by side in the same run. Best of N, effective GB/s from the
/// bytes each op must read and write. Call <see cref="Run"/> (threads as the optional argument).
/// </summary>
public static class PointwiseBench
{
    static void Time(string name, double bytes, Action a, int reps = 10)
    {
        a(); a();
        var best = double.MaxValue;
        for (int r = 0; r < reps; r++)
        {
            var sw = Stopwatch.StartNew();
            a();
            best = Math.Min(best, sw.Elapsed.TotalMilliseconds);
        }
        Console.WriteLine($"{name,-48} {best,8:F2} ms  {bytes / best / 1e6,6:F1} GB/s");
    }

    public static void Run(int threads = 0)
    {
        if (threads > 0) Par.Threads = threads;
        Console.WriteLine($"threads {Par.Threads}, Vector512 {System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated}");
        const int N = 1 << 24;
        var x = Tensor.RandN([N], 1);
        var y = Tensor.RandN([N], 2);
        var o = new float[N];
        var xm = x.Reshape(4096, 4096);
        var bias = Tensor.RandN([4096], 3);
        using (GradMode.NoGrad())
        {
            Time("TensorPrimitives.Add 16M (1 thread)", 12.0 * N, () => TensorPrimitives.Add(x.AsSpan(), y.AsSpan(), o));
            Time("Ops.Add 16M", 12.0 * N, () => Ops.Add(x, y).Dispose());
            Time("Ops.Add [4096,4096] + [4096]", 8.0 * N, () => Ops.Add(xm, bias).Dispose());
            Time("Ops.Add transposed [4096,4096] + [4096,4096]", 12.0 * N, () => Ops.Add(xm.Transpose(0, 1), xm).Dispose());
            Time("TensorPrimitives.Exp 16M (1 thread)", 8.0 * N, () => TensorPrimitives.Exp(x.AsSpan(), o));
            Time("Ops.Exp 16M", 8.0 * N, () => Ops.Exp(x).Dispose());
            Time("TensorPrimitives.Tanh 16M (1 thread)", 8.0 * N, () => TensorPrimitives.Tanh(x.AsSpan(), o));
            Time("Ops.Tanh 16M", 8.0 * N, () => Ops.Tanh(x).Dispose());
            Time("Ops.Gelu 16M", 8.0 * N, () => Ops.Gelu(x).Dispose());
            Time("Ops.SiluMul 16M", 12.0 * N, () => Ops.SiluMul(x, y).Dispose());
            Time("TensorPrimitives.Sum 16M (1 thread)", 4.0 * N, () => TensorPrimitives.Sum(x.AsSpan()));
            Time("Ops.Sum(all) 16M", 4.0 * N, () => Ops.Sum(x).Dispose());
            Time("Ops.Sum(dim=1) [4096,4096]", 4.0 * N, () => Ops.Sum(xm, 1).Dispose());
            Time("Ops.Sum(dim=0) [4096,4096]", 4.0 * N, () => Ops.Sum(xm, 0).Dispose());
            Time("Ops.Max(dim=1) [4096,4096]", 4.0 * N, () => Ops.Max(xm, 1).Dispose());
            Time("Ops.Softmax [4096,4096]", 8.0 * N, () => Ops.Softmax(xm, -1).Dispose());
            Time("Ops.RmsNorm [4096,4096]", 8.0 * N, () => Ops.RmsNorm(xm, bias).Dispose());
            Time("Ops.LayerNorm [4096,4096]", 8.0 * N, () => Ops.LayerNorm(xm, bias, bias).Dispose());
        }
        var xg = Tensor.RandN([4096, 4096], 5);
        xg.RequiresGrad = true;
        var w = Tensor.RandN([4096], 6);
        w.RequiresGrad = true;
        var g = Tensor.RandN([4096, 4096], 7);
        Time("RmsNorm fwd+bwd [4096,4096]", 24.0 * N, () => { var r = Ops.RmsNorm(xg, w); r.Backward(g); r.Dispose(); xg.ZeroGrad(); w.ZeroGrad(); });
        Time("Softmax fwd+bwd [4096,4096]", 24.0 * N, () => { var r = Ops.Softmax(xg, -1); r.Backward(g); r.Dispose(); xg.ZeroGrad(); });
        int n = 256, v = 151655; // Qwen2 vocabulary
        var logits = Tensor.RandN([n, v], 8);
        logits.RequiresGrad = true;
        var t = Tensor.FromArray(Enumerable.Range(0, n).Select(i => (long)(i * 97 % v)).ToArray(), n);
        Time($"CrossEntropy fwd+bwd [{n},{v}]", 12.0 * n * v, () => { var l = Ops.CrossEntropy(logits, t); l.Backward(); l.Dispose(); logits.ZeroGrad(); }, 5);
    }
}
