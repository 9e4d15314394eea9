using System.Diagnostics;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using MMSharp.Engine;
using MMSharp.Engine.Kernels;

namespace MMSharp.Bench;

/// <summary>
/// Ops.ScaledDotProductAttention (tiled, O(T) memory) forward and backward at model shapes, against a
/// materialised baseline on the same data: S = (scale·Q)Kᵀ with the packed Gemm, row softmax, O = P·V
/// (forward only, T×T memory per head). Forward GFLOP/s = 4·B·Hq·Tq·Tk·D (halved when causal) / time;
/// backward is reported at 2.5× the forward flops (the 5 standard products; ours recomputes 2 more).
/// Median of repetitions after a warm-up, ours and the baseline alternating.
/// </summary>
static unsafe class AttentionBench
{
    static readonly (string Name, int B, int Hq, int Hkv, int T, int D, bool Causal)[] Cases =
    [
        ("InternViT-300M layer (448px)", 1, 16, 16, 1025, 64, false),
        ("InternViT-6B layer (448px)", 1, 25, 25, 1025, 128, false),
        ("Qwen3-VL-2B vision, 1024 patches", 1, 16, 16, 1024, 64, false),
        ("Qwen3-VL-8B vision, 1024 patches", 1, 16, 16, 1024, 72, false),
        ("Qwen2.5-0.5B layer, 2048 tokens", 1, 14, 2, 2048, 64, true),
        ("Qwen2.5-7B layer, 2048 tokens", 1, 28, 4, 2048, 128, true),
    ];

    public static void Run(Options opts)
    {
        int reps = opts.Ints("reps", [5])[0];
        foreach (int threads in opts.Ints("threads", [1, 2]))
        {
            Par.Threads = threads;
            foreach (var c in Cases)
            {
                if (!opts.Allows("t", c.T) || !opts.Allows("d", c.D)) continue;
                Case(c.Name, c.B, c.Hq, c.Hkv, c.T, c.D, c.Causal, threads, reps);
            }
        }
    }

    static void Case(string name, int B, int Hq, int Hkv, int T, int D, bool causal, int threads, int reps)
    {
        using var q = Tensor.RandN([B, Hq, T, D], 1);
        using var k = Tensor.RandN([B, Hkv, T, D], 2);
        using var v = Tensor.RandN([B, Hkv, T, D], 3);
        using var g = Tensor.RandN([B, Hq, T, D], 4);
        var fwd = new List<double>(); var bwd = new List<double>(); var naive = new List<double>();
        for (int r = 0; r <= reps; r++)
        {
            q.ZeroGrad(); k.ZeroGrad(); v.ZeroGrad();
            q.RequiresGrad = k.RequiresGrad = v.RequiresGrad = true;
            var sw = Stopwatch.StartNew();
            var o = Ops.ScaledDotProductAttention(q, k, v, causal);
            double f = sw.Elapsed.TotalSeconds;
            sw.Restart();
            o.Backward(g);
            double b = sw.Elapsed.TotalSeconds;
            o.Dispose();
            sw.Restart();
            Materialised(q, k, v, causal);
            double n = sw.Elapsed.TotalSeconds;
            if (r == 0) continue; // warm-up
            fwd.Add(f); bwd.Add(b); naive.Add(n);
        }
        double flop = 4.0 * B * Hq * T * (double)T * D * (causal ? 0.5 : 1);
        double mf = Median(fwd), mb = Median(bwd), mn = Median(naive);
        Console.WriteLine($"attention {name,-34} B={B} Hq={Hq} Hkv={Hkv} T={T} D={D}{(causal ? " causal" : "")} threads={threads}: " +
            $"fwd {mf * 1e3:F1} ms {flop / mf / 1e9:F1} GFLOP/s | bwd {mb * 1e3:F1} ms {2.5 * flop / mb / 1e9:F1} GFLOP/s | " +
            $"materialised fwd {mn * 1e3:F1} ms -> ours/materialised time {mf / mn:F2}");
    }

    static double Median(List<double> xs) { xs.Sort(); return xs[xs.Count / 2]; }

    /// <summary>The textbook forward: one T×T score matrix per head.</summary>
    static void Materialised(Tensor q, Tensor k, Tensor v, bool causal)
    {
        int B = q.Shape[0], Hq = q.Shape[1], T = q.Shape[2], D = q.Shape[3], Hkv = k.Shape[1];
        float scale = 1f / MathF.Sqrt(D);
        using var s = Tensor.Empty([T, T]);
        using var o = Tensor.Empty([T, D]);
        float* sp = s.F32Ptr;
        for (int b = 0; b < B; b++)
            for (int h = 0; h < Hq; h++)
            {
                int kh = h / (Hq / Hkv);
                float* qp = q.F32Ptr + ((long)b * Hq + h) * T * D;
                float* kp = k.F32Ptr + ((long)b * Hkv + kh) * T * D, vp = v.F32Ptr + ((long)b * Hkv + kh) * T * D;
                Gemm.Sgemm(T, T, D, qp, D, 1, kp, 1, D, sp, T);
                Par.ForChunks(T, 16, (r0, r1) =>
                {
                    for (long i = r0; i < r1; i++)
                    {
                        var row = new Span<float>(sp + i * T, T);
                        TensorPrimitives.Multiply(row, scale, row);
                        if (causal) row[(int)(i + 1)..].Fill(float.NegativeInfinity);
                        TensorPrimitives.SoftMax(row, row);
                    }
                });
                Gemm.Sgemm(T, D, T, sp, T, 1, vp, D, 1, o.F32Ptr, D);
            }
    }
}
