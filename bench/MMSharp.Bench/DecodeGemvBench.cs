using System.Diagnostics;
using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.Engine.Kernels;
using MMSharp.Models.InternVL;
using MMSharp.NN;

namespace MMSharp.Bench;

/// <summary>
/// The weight reads of one decode step of the InternVL3-1B language model (random BF16 weights, nothing but the
/// M = 1 products), issued three ways and alternated per repetition so a busy machine affects all alike:
/// <c>separate</c> (one <see cref="Linear.Forward"/> per weight, 169 calls), <c>fused</c> (q/k/v and gate/up as one
/// <see cref="Linear.ForwardFused"/> call each, 97 calls) and <c>head</c> (the LM head alone). Prints weight GB/s per
/// variant beside the copy and read bandwidth, and the cost of an empty <see cref="Par.For"/>.
/// </summary>
static class DecodeGemvBench
{
    /// <summary>Options: --threads 1,2 --reps 9 --items 4 (work items per thread of the fused kernel, internal GemvMulti.ItemsPerThread).</summary>
    public static void Run(Options opts)
    {
        int reps = opts.Ints("reps", [9])[0];
        var items = typeof(Tensor).Assembly.GetType("MMSharp.Engine.Kernels.GemvMulti")!
            .GetField("ItemsPerThread", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!;
        if (opts.Get("items") != null) items.SetValue(null, opts.Ints("items", [4])[0]);
        var c = new Qwen2Config("Qwen2ForCausalLM", 151674, 896, 4864, 24, 14, 2, 64, 32768, 1e-6, 1000000.0, null,
            false, "silu", null, 151645);
        using var lm = new Qwen2ForCausalLM(c, DType.BF16);
        ulong seed = 1;
        foreach (var (name, p) in lm.NamedParameters())
        {
            if (name.Contains("embed_tokens")) continue;
            using var f = Tensor.RandN(p.Shape, seed++, 0.02f);
            p.Set(Ops.To(f, DType.BF16));
            p.RequiresGrad = false;
        }
        long layerBytes = lm.Model.Layers.Sum(l => l.NamedParameters().Where(p => p.Parameter.Shape.Length == 2).Sum(p => p.Parameter.NumEl * 2));
        long headBytes = lm.LmHead.Weight.NumEl * 2;
        using var noGrad = GradMode.NoGrad();
        using var x = Tensor.RandN([1, 1, c.HiddenSize], 3, 0.5f);
        using var xi = Tensor.RandN([1, 1, c.IntermediateSize], 4, 0.5f);

        foreach (int threads in opts.Ints("threads", [1, 2]))
        {
            double copy = BandwidthBench.CopyGBs(threads);
            Par.Threads = threads;
            var times = new Dictionary<string, List<double>> { ["separate"] = [], ["fused"] = [], ["head"] = [] };
            for (int rep = 0; rep < reps; rep++)
                foreach (var v in times.Keys)
                {
                    long t0 = Stopwatch.GetTimestamp();
                    if (v == "head") lm.LmHead.Forward(x).Dispose();
                    else
                    {
                        foreach (var layer in lm.Model.Layers) Layer(layer, x, xi, v == "fused");
                        lm.LmHead.Forward(x).Dispose();
                    }
                    if (rep > 0) times[v].Add(Stopwatch.GetElapsedTime(t0).TotalSeconds);
                }
            double parUs = ParOverheadUs();
            var sep = BandwidthBench.Median(times["separate"]);
            var fus = BandwidthBench.Median(times["fused"]);
            var head = BandwidthBench.Median(times["head"]);
            long all = layerBytes + headBytes;
            Console.WriteLine($"decode-gemv threads={threads} copy_gbs={copy:F1} separate_ms={sep * 1e3:F1} ({all / sep / 1e9:F1} GB/s) " +
                $"fused_ms={fus * 1e3:F1} ({all / fus / 1e9:F1} GB/s) head_ms={head * 1e3:F1} ({headBytes / head / 1e9:F1} GB/s) " +
                $"empty_par_for_us={parUs:F2} load={File.ReadAllText("/proc/loadavg").Split(' ')[0]}");
        }
    }

    static void Layer(Qwen2DecoderLayer layer, Tensor x, Tensor xi, bool fused)
    {
        var a = layer.SelfAttn;
        var m = layer.Mlp;
        if (fused)
        {
            Linear.ForwardFused(x, a.QProj, a.KProj, a.VProj)!.Dispose();
            a.OProj.Forward(x).Dispose();
            Linear.ForwardFused(x, m.GateProj, m.UpProj)!.Dispose();
        }
        else
        {
            a.QProj.Forward(x).Dispose(); a.KProj.Forward(x).Dispose(); a.VProj.Forward(x).Dispose();
            a.OProj.Forward(x).Dispose();
            m.GateProj.Forward(x).Dispose(); m.UpProj.Forward(x).Dispose();
        }
        m.DownProj.Forward(xi).Dispose();
    }

    /// <summary>Microseconds per Par.For over Threads empty items (fork, join, nothing else).</summary>
    static double ParOverheadUs()
    {
        const int n = 20000;
        Action<int> body = _ => { };
        long t0 = Stopwatch.GetTimestamp();
        for (int i = 0; i < n; i++) Par.For(Par.Threads, body);
        return Stopwatch.GetElapsedTime(t0).TotalMicroseconds / n;
    }
}
