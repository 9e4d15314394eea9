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
/// <see cref="Linear.ForwardFused"/> call each, 97 calls) and <c>head</c> (the LM head alone), each with the rows split
/// as given by --items (0: one contiguous share per thread with stealing, the default; 4: four items per thread, the
/// earlier Par.For split). Prints weight GB/s per variant (median and best repetition) beside the copy bandwidth, and
/// the cost of an empty <see cref="Par.For"/>.
/// </summary>
static class DecodeGemvBench
{
    /// <summary>Options: --threads 1,2 --reps 9 --items 0,4 (work items per thread of the fused kernel, internal GemvMulti.ItemsPerThread; 0 = shares with stealing) --kinds 1 (per-kind breakdown).</summary>
    public static void Run(Options opts)
    {
        int reps = opts.Ints("reps", [9])[0];
        var items = typeof(Tensor).Assembly.GetType("MMSharp.Engine.Kernels.GemvMulti")!
            .GetField("ItemsPerThread", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!;
        int[] itemCounts = opts.Ints("items", [(int)items.GetValue(null)!]);
        using var lm = BenchQwen2.Random(24, out var c, out _);
        long layerBytes = lm.Model.Layers.Sum(l => l.NamedParameters().Where(p => p.Parameter.Shape.Length == 2).Sum(p => p.Parameter.NumEl * 2));
        long headBytes = lm.LmHead.Weight.NumEl * 2;
        using var noGrad = GradMode.NoGrad();
        using var x = Tensor.RandN([1, 1, c.HiddenSize], 3, 0.5f);
        using var xi = Tensor.RandN([1, 1, c.IntermediateSize], 4, 0.5f);

        foreach (int threads in opts.Ints("threads", [1, 2]))
        {
            double copy = BandwidthBench.CopyGBs(threads);
            Par.Threads = threads;
            // variants: separate_i{items}, fused_i{items}, head (items 0: stealing shares; 4: the earlier Par.For split)
            var times = new Dictionary<string, List<double>> { ["head"] = [] };
            foreach (int n in itemCounts)
            {
                times[$"separate_i{n}"] = [];
                times[$"fused_i{n}"] = [];
            }
            for (int rep = 0; rep < reps; rep++)
                foreach (var v in times.Keys)
                {
                    items.SetValue(null, v == "head" ? 0 : int.Parse(v[(v.IndexOf("_i") + 2)..]));
                    long t0 = Stopwatch.GetTimestamp();
                    if (v == "head") lm.LmHead.Forward(x).Dispose();
                    else
                    {
                        foreach (var layer in lm.Model.Layers) Layer(layer, x, xi, v.StartsWith("fused"));
                        lm.LmHead.Forward(x).Dispose();
                    }
                    if (rep > 0) times[v].Add(Stopwatch.GetElapsedTime(t0).TotalSeconds);
                }
            if (opts.Get("kinds") != null) KindBreakdown(lm, x, xi, reps, headBytes);
            if (opts.Get("pattern") != null) Patterns(lm, x, xi, reps, opts);
            if (opts.Get("split") != null) HeadSplit(lm, x, reps, opts.Ints("split", [1]), headBytes);
            double parUs = ParOverheadUs();
            long all = layerBytes + headBytes;
            var parts = times.Select(kv =>
            {
                double t = BandwidthBench.Median(kv.Value), best = kv.Value.Min();
                long b = kv.Key == "head" ? headBytes : all;
                return $"{kv.Key}_ms={t * 1e3:F1} ({b / t / 1e9:F1} GB/s, best {b / best / 1e9:F1})";
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

    /// <summary>Weight GB/s per kind of matrix, timed call by call inside the fused sequence and with its 24
    /// matrices back to back (--kinds).</summary>
    static void KindBreakdown(Qwen2ForCausalLM lm, Tensor x, Tensor xi, int reps, long headBytes)
    {
        // each weight kind alone: its 24 matrices back to back
        var kinds = new Dictionary<string, Func<Qwen2DecoderLayer, Linear>>
        {
            ["q"] = l => l.SelfAttn.QProj, ["k"] = l => l.SelfAttn.KProj, ["o"] = l => l.SelfAttn.OProj,
            ["gate"] = l => l.Mlp.GateProj, ["down"] = l => l.Mlp.DownProj,
        };
        // the fused sequence timed call by call: q/k/v, o, gate/up, down per layer, then the head
        var inSeq = new double[5];
        var names = new[] { "qkv", "o", "gate_up", "down", "head" };
        for (int rep = 0; rep < reps; rep++)
        {
            long t = Stopwatch.GetTimestamp();
            void Lap(int i)
            {
                long now = Stopwatch.GetTimestamp();
                if (rep > 0) inSeq[i] += Stopwatch.GetElapsedTime(t, now).TotalSeconds;
                t = now;
            }
            foreach (var layer in lm.Model.Layers)
            {
                var a = layer.SelfAttn;
                var m = layer.Mlp;
                Linear.ForwardFused(x, a.QProj, a.KProj, a.VProj)!.Dispose(); Lap(0);
                a.OProj.Forward(x).Dispose(); Lap(1);
                Linear.ForwardFused(x, m.GateProj, m.UpProj)!.Dispose(); Lap(2);
                m.DownProj.Forward(xi).Dispose(); Lap(3);
            }
            lm.LmHead.Forward(x).Dispose(); Lap(4);
        }
        long Bytes(params string[] kinds) => lm.Model.Layers.Sum(l => kinds.Sum(n => Pick(l, n).Weight.NumEl * 2));
        long[] kindBytes = [Bytes("q", "k", "v"), Bytes("o"), Bytes("gate", "up"), Bytes("down"), headBytes];
        Console.WriteLine("  fused sequence, ms/token (GB/s): " + string.Join(" ", names.Select((n, i) =>
            $"{n}={inSeq[i] / (reps - 1) * 1e3:F2}({kindBytes[i] * (reps - 1) / inSeq[i] / 1e9:F1})")));
        var kindGbs = new List<string>();
        foreach (var (kind, pick) in kinds)
        {
            var ts = new List<double>();
            for (int rep = 0; rep < reps; rep++)
            {
                long t0 = Stopwatch.GetTimestamp();
                foreach (var layer in lm.Model.Layers) { var l = pick(layer); l.Forward(l.InFeatures == x.Shape[2] ? x : xi).Dispose(); }
                if (rep > 0) ts.Add(Stopwatch.GetElapsedTime(t0).TotalSeconds);
            }
            long bytes = lm.Model.Layers.Sum(l => pick(l).Weight.NumEl * 2);
            kindGbs.Add($"{kind}={bytes / BandwidthBench.Median(ts) / 1e9:F1}");
        }
        Console.WriteLine($"  per-kind GB/s (24 matrices back to back): {string.Join(" ", kindGbs)}");
    }

    /// <summary>GB/s of chosen fused calls per layer over all layers, e.g. --pattern gate_up --pattern qkv+o+gate_up+down
    /// (one pattern per option value; kinds qkv, q, o, gate_up, gate, up, down).</summary>
    static void Patterns(Qwen2ForCausalLM lm, Tensor x, Tensor xi, int reps, Options opts)
    {
        // the patterns alternate per repetition: the host's state drifts within seconds, and one pattern's repetitions
        // back to back also keep its page-table lines cached, which the decode (1 GB per token) never does
        var pats = opts.AllValues("pattern").ToList();
        var times = pats.ToDictionary(p => p, _ => new List<double>());
        for (int rep = 0; rep < reps; rep++)
            foreach (var pat in pats)
            {
                long t0 = Stopwatch.GetTimestamp();
                foreach (var layer in lm.Model.Layers)
                {
                    var a = layer.SelfAttn;
                    var m = layer.Mlp;
                    foreach (var k in pat.Split('+'))
                    {
                        if (k == "qkv") Linear.ForwardFused(x, a.QProj, a.KProj, a.VProj)!.Dispose();
                        else if (k == "o") a.OProj.Forward(x).Dispose();
                        else if (k == "gate_up") Linear.ForwardFused(x, m.GateProj, m.UpProj)!.Dispose();
                        else if (k == "gate") m.GateProj.Forward(x).Dispose();
                        else if (k == "up") m.UpProj.Forward(x).Dispose();
                        else if (k == "q") a.QProj.Forward(x).Dispose();
                        else m.DownProj.Forward(xi).Dispose();
                    }
                }
                if (rep > 0) times[pat].Add(Stopwatch.GetElapsedTime(t0).TotalSeconds);
            }
        foreach (var (pat, ts) in times)
        {
            long bytes = 0;
            foreach (var layer in lm.Model.Layers)
                foreach (var k in pat.Split('+'))
                    bytes += (k switch { "qkv" => new[] { "q", "k", "v" }, "gate_up" => ["gate", "up"], _ => [k] }).Sum(n => Pick(layer, n).Weight.NumEl * 2);
            Console.WriteLine($"  pattern {pat}: {bytes / BandwidthBench.Median(ts) / 1e9:F1} GB/s (best {bytes / ts.Min() / 1e9:F1})");
        }
    }

    /// <summary>The LM head as 1, 10, 100… calls over consecutive row ranges (--split): the cost of a call as such.</summary>
    static void HeadSplit(Qwen2ForCausalLM lm, Tensor x, int reps, int[] splits, long headBytes)
    {
        var w = lm.LmHead.Weight.Data;
        int n = w.Shape[0];
        var parts = new List<string>();
        var ts = splits.ToDictionary(s => s, _ => new List<double>());
        for (int rep = 0; rep < reps; rep++)
            foreach (int s in splits)
            {
                long t0 = Stopwatch.GetTimestamp();
                for (int i = 0; i < s; i++)
                {
                    int r0 = (int)((long)n * i / s), r1 = (int)((long)n * (i + 1) / s);
                    using var rows = Ops.Narrow(w, 0, r0, r1 - r0);
                    Ops.Linear(x, rows).Dispose();
                }
                if (rep > 0) ts[s].Add(Stopwatch.GetElapsedTime(t0).TotalSeconds);
            }
        foreach (int s in splits)
            parts.Add($"calls={s}: {headBytes / BandwidthBench.Median(ts[s]) / 1e9:F1} GB/s ({BandwidthBench.Median(ts[s]) * 1e6 / s:F0} us/call)");
        // a call on cached weights (the first 64 rows, 112 KiB): what a call costs besides streaming
        using (var few = Ops.Narrow(w, 0, 0, 64))
        {
            for (int i = 0; i < 1000; i++) Ops.Linear(x, few).Dispose();
            long t0 = Stopwatch.GetTimestamp();
            for (int i = 0; i < 20000; i++) Ops.Linear(x, few).Dispose();
            parts.Add($"cached 64-row call: {Stopwatch.GetElapsedTime(t0).TotalMicroseconds / 20000:F2} us");
        }
        long s0 = Stopwatch.GetTimestamp();
        for (int i = 0; i < 10000; i++) Thread.SpinWait(30);
        parts.Add($"Thread.SpinWait(30) (Par's idle-worker poll): {Stopwatch.GetElapsedTime(s0).TotalMicroseconds / 10000:F2} us");
        Console.WriteLine("  head split: " + string.Join(", ", parts));
    }

    static Linear Pick(Qwen2DecoderLayer l, string name) => name switch
    {
        "q" => l.SelfAttn.QProj, "k" => l.SelfAttn.KProj, "v" => l.SelfAttn.VProj, "o" => l.SelfAttn.OProj,
        "gate" => l.Mlp.GateProj, "up" => l.Mlp.UpProj, _ => l.Mlp.DownProj,
    };

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
