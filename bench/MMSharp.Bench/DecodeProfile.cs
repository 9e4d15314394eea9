using System.Diagnostics;
using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.Engine.Kernels;
using MMSharp.Models.InternVL;
using MMSharp.NN;

namespace MMSharp.Bench;

/// <summary>
/// Decode speed of the InternVL3-1B language model (Qwen2.5-0.5B geometry, BF16, untied head) with random weights:
/// prefill --prompt tokens, then decode --steps tokens one at a time, per thread count. Prints tokens/s, the bound
/// copy-bandwidth / weight-bytes-per-token measured in the same run, and the share of each op family
/// (<see cref="Profiler"/>) of the decode time.
/// </summary>
static class DecodeProfile
{
    /// <summary>Options: --threads 1,2 --prompt 256 --steps 64 --layers 24 --attention decode,tiled (the tiled path
    /// is the general kernel, for a side-by-side comparison in one run) --fused on,off (q/k/v and gate/up projections
    /// of a step as one GEMV pass each, <see cref="Linear.FusedInference"/>, or as separate calls) --team off,on (op by op, the
    /// default, whose ops the breakdown shows, or the whole step as one parallel region, <see cref="Qwen2ForCausalLM.TeamDecode"/>,
    /// whose time the breakdown books as other).</summary>
    public static void Run(Options opts)
    {
        int prompt = opts.Ints("prompt", [256])[0], steps = opts.Ints("steps", [64])[0];
        int layers = opts.Ints("layers", [24])[0];
        // the embedding is read one row per token; everything else whole
        using var lm = BenchQwen2.Random(layers, out var c, out long weightBytes);
        Console.WriteLine($"decode-profile layers={layers} prompt={prompt} steps={steps} weight_bytes_per_token={weightBytes / 1e6:F0}MB");

        var rng = new Random(7);
        var promptIds = Enumerable.Range(0, prompt).Select(_ => (long)rng.Next(c.VocabSize)).ToArray();
        var decodePath = typeof(Tensor).Assembly.GetType("MMSharp.Engine.Kernels.DecodeAttention")!
            .GetField("Enabled", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Static)!;
        foreach (int threads in opts.Ints("threads", [1, 2]))
        foreach (var attention in opts.AllValues("attention") is { Count: > 0 } a ? a : ["decode", "tiled"])
        foreach (var fused in opts.AllValues("fused") is { Count: > 0 } f ? f : ["on"])
        foreach (var team in opts.AllValues("team") is { Count: > 0 } tm ? tm : ["off"])
        {
            Qwen2ForCausalLM.TeamDecode = team == "on";
            decodePath.SetValue(null, attention == "decode");
            Linear.FusedInference = fused == "on";
            Par.Threads = threads;
            double gbs = BandwidthBench.CopyGBs(threads);
            double bound = gbs * 1e9 / weightBytes;
            double readGbs = ReadGBs(threads), gemvTps = GemvOnlyTps(lm, 5);
            Par.Threads = threads;
            using var _ = GradMode.NoGrad();
            int timed = Math.Max(1, steps - 8);                                  // after 8 warm-up steps
            using var cache = KvCache.For(c, 1, prompt + 8 + timed + 1);
            var sw = Stopwatch.StartNew();
            using (var ids = Tensor.FromArray(promptIds, 1, prompt))
            using (var emb = lm.Model.EmbedTokens.Forward(ids))
                lm.Forward(emb, cache, lastOnly: true).Dispose();
            double prefillS = sw.Elapsed.TotalSeconds;

            using var tok = Tensor.FromArray(new long[] { 17 }, 1, 1);
            // warm the pool and let the JIT promote the kernels past tier 0 (30 calls, then a background compile)
            for (int i = 0; i < 6; i++) Step(lm, tok, cache);
            Thread.Sleep(300);
            for (int i = 0; i < 2; i++) Step(lm, tok, cache);
            long fresh = Interlocked.Read(ref BufferPool.FreshAllocations);
            Profiler.Reset();
            Profiler.Enabled = true;
            var times = new double[timed];
            sw.Restart();
            for (int i = 0; i < times.Length; i++)
            {
                long t0 = Stopwatch.GetTimestamp();
                Step(lm, tok, cache);
                times[i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
            }
            double total = sw.Elapsed.TotalSeconds;
            Profiler.Enabled = false;
            long freshPerRun = Interlocked.Read(ref BufferPool.FreshAllocations) - fresh;
            Array.Sort(times);
            double tps = times.Length / total;
            Console.WriteLine($"threads={threads} attention={attention} fused={fused} team={team} copy_gbs={gbs:F1} bound_tps={bound:F1} decode_tps={tps:F2} ratio={tps / bound:F2} " +
                $"ms/token median={times[times.Length / 2]:F1} min={times[0]:F1} max={times[^1]:F1} prefill_s={prefillS:F2} " +
                $"fresh_allocs={freshPerRun} load={File.ReadAllText("/proc/loadavg").Split(' ')[0]}");
            Console.WriteLine($"  read_gbs={readGbs:F1} (weights-only bound {readGbs * 1e9 / weightBytes:F1} tok/s) " +
                $"gemv_only_tps={gemvTps:F2} (every decode linear and the head, nothing else) decode/gemv_only={tps / gemvTps:F2}");
            double booked = 0;
            var parts = new List<string>();
            for (var cat = (ProfileCategory)0; cat < ProfileCategory.Count; cat++)
            {
                double s = Profiler.Seconds(cat);
                booked += s;
                if (Profiler.Calls(cat) > 0) parts.Add($"{cat}={100 * s / total:F1}%");
            }
            parts.Add($"other={100 * (total - booked) / total:F1}%");
            Console.WriteLine("  breakdown " + string.Join(" ", parts));
        }
    }

    /// <summary>Tokens/s if a token cost only its M = 1 linears (same weights, same order, no other op), issued as the
    /// decoder issues them: q/k/v and gate/up as one fused call each when <see cref="Linear.FusedInference"/> is on.</summary>
    static double GemvOnlyTps(Qwen2ForCausalLM lm, int reps)
    {
        using var x = Tensor.RandN([1, 1, lm.Config.HiddenSize], 3);
        using var xi = Tensor.RandN([1, 1, lm.Config.IntermediateSize], 4);
        using var _ = GradMode.NoGrad();
        var times = new List<double>();
        for (int r = 0; r < reps; r++)
        {
            var sw = Stopwatch.StartNew();
            foreach (var layer in lm.Model.Layers)
            {
                var a = layer.SelfAttn;
                var m = layer.Mlp;
                using (var qkv = Linear.ForwardFused(x, a.QProj, a.KProj, a.VProj))
                    if (qkv == null) { a.QProj.Forward(x).Dispose(); a.KProj.Forward(x).Dispose(); a.VProj.Forward(x).Dispose(); }
                a.OProj.Forward(x).Dispose();
                using (var gu = Linear.ForwardFused(x, m.GateProj, m.UpProj))
                    if (gu == null) { m.GateProj.Forward(x).Dispose(); m.UpProj.Forward(x).Dispose(); }
                m.DownProj.Forward(xi).Dispose();
            }
            lm.LmHead.Forward(x).Dispose();
            times.Add(sw.Elapsed.TotalSeconds);
        }
        return 1 / BandwidthBench.Median(times.Skip(1).ToList());
    }

    /// <summary>Read-only memory bandwidth (GB/s): a 1 GiB buffer summed with Vector512 loads, split over the threads.</summary>
    static unsafe double ReadGBs(int threads)
    {
        const long bytes = 1L << 30;
        byte* src = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)bytes, 4096);
        try
        {
            new Span<byte>(src, (int)bytes).Fill(1);
            return BandwidthBench.ReadGBs(src, bytes, threads, reps: 5, skipFirst: true);
        }
        finally { System.Runtime.InteropServices.NativeMemory.AlignedFree(src); }
    }

    static void Step(Qwen2ForCausalLM lm, Tensor tok, KvCache cache)
    {
        using var scope = TensorScope.Begin();
        using var emb = lm.Model.EmbedTokens.Forward(tok);
        using var logits = lm.Forward(emb, cache, lastOnly: true);
        using (Profiler.Time(ProfileCategory.Sampling))
            ArgMax(logits);
    }

    static unsafe long ArgMax(Tensor logits)
    {
        float* p = logits.F32Ptr;
        int n = logits.Shape[^1];
        return System.Numerics.Tensors.TensorPrimitives.IndexOfMax(new ReadOnlySpan<float>(p, n));
    }
}
