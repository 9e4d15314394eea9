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
        int[] itemCounts = opts.Ints("items", [(int)items.GetValue(null)!]);
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
            var times = new Dictionary<string, List<double>> { ["separate"] = [], ["head"] = [] };
            foreach (int n in itemCounts) times[$"fused_items{n}"] = [];
            for (int rep = 0; rep < reps; rep++)
                foreach (var v in times.Keys)
                {
                    if (v.StartsWith("fused_items")) items.SetValue(null, int.Parse(v["fused_items".Length..]));
                    long t0 = Stopwatch.GetTimestamp();
                    if (v == "head") lm.LmHead.Forward(x).Dispose();
                    else
                    {
                        foreach (var layer in lm.Model.Layers) Layer(layer, x, xi, v != "separate");
                        lm.LmHead.Forward(x).Dispose();
                    }
                    if (rep > 0) times[v].Add(Stopwatch.GetElapsedTime(t0).TotalSeconds);
                }
            double parUs = ParOverheadUs();
            long all = layerBytes + headBytes;
            var parts = times.Select(kv =>
            {
                double t = BandwidthBench.Median(kv.Value);
                return $"{kv.Key}_ms={t * 1e3:F1} ({(kv.Key == "head" ? headBytes : all) / t / 1e9:F1} GB/s)";
            });
            Console.WriteLine($"decode-gemv threads={threads} copy_gbs={copy:F1} {string.Join(" ", parts)} " +
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
