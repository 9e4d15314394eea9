using System.Diagnostics;
using System.Globalization;
using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.Engine.Kernels;
using MMSharp.Models.InternVL;

namespace MMSharp.Bench;

/// <summary>
/// Side-by-side decode speed of two step variants on a busy machine: the InternVL3-1B language model (random BF16
/// weights, untied head), a --prompt token prefill, then rounds of --block decode steps with the team step
/// (<see cref="Qwen2ForCausalLM.TeamDecode"/>) on, --block steps with it off, and a short copy-bandwidth sample, so
/// each round's two variants and its bound see the same load. Prints the median over rounds of tokens/s per variant,
/// their ratio, and each variant's share of the round's bound (copy bandwidth / weight + kv bytes per token, as the
/// generate bench counts them).
/// </summary>
static unsafe class DecodeAbBench
{
    /// <summary>Options: --threads 2 --rounds 8 --block 4 --prompt 300 --clock cpu (phase times as thread CPU time)
    /// --b op|norescue|chunk32|chunk128|chunk256|nopf|pf:BYTES|nonext|next:BYTES (the second variant: the op-by-op step, the
    /// team step that never runs another member's chunk, the team step with 32 / 128 / 256 KiB chunks, without the GEMV's
    /// prefetch or with it BYTES ahead, without the next-phase prefetch or with BYTES of it).</summary>
    public static void Run(Options opts)
    {
        int rounds = opts.Ints("rounds", [8])[0], block = opts.Ints("block", [4])[0], prompt = opts.Ints("prompt", [300])[0];
        using var lm = BenchQwen2.Random(24, out var c, out long weightBytes);
        weightBytes += 2L * c.HiddenSize;                                        // the embedding row of the token
        // --clock cpu: the phase times are the CPU time of the thread running member 0 (preemption not counted)
        Qwen2TeamDecode.ProfileCpuClock = opts.Get("clock") == "cpu";
        // --b norescue: the second variant is the team step without taking over a descheduled member's chunks
        // (instead of the op-by-op step)
        bool spinB = opts.Get("b") is "norescue" or "chunk32" or "chunk128" or "chunk256" or "nopf" or "nonext" || opts.Get("b")?.StartsWith("pf:") == true || opts.Get("b")?.StartsWith("next:") == true;
        int pfA = GemmSmallM.PrefetchBytes, nextA = Qwen2TeamDecode.PrefetchNextPhase;
        int pfB = opts.Get("b") is { } b && b.StartsWith("pf:") ? int.Parse(b[3..]) : opts.Get("b") == "nopf" ? 0 : pfA;
        int nextB = opts.Get("b") is { } nb && nb.StartsWith("next:") ? int.Parse(nb[5..]) : opts.Get("b") == "nonext" ? 0 : nextA;
        long chunkB = opts.Get("b") switch { "chunk32" => 1L << 15, "chunk128" => 1L << 17, "chunk256" => 1L << 18, _ => 1L << 16 };
        var rng = new Random(7);
        var promptIds = Enumerable.Range(0, prompt).Select(_ => (long)rng.Next(c.VocabSize)).ToArray();
        foreach (int threads in opts.Ints("threads", [2]))
        {
            Par.Threads = threads;
            using var _ = GradMode.NoGrad();
            int total = prompt + 2 * (rounds + 1) * block + 8;
            using var cache = KvCache.For(c, 1, total);
            using (var ids = Tensor.FromArray(promptIds, 1, prompt))
            using (var emb = lm.Model.EmbedTokens.Forward(ids))
                lm.Forward(emb, cache, lastOnly: true).Dispose();
            using var tok = Tensor.FromArray(new long[] { 17 }, 1, 1);
            // warm-up of both variants (JIT tiers, pools)
            foreach (bool team in new[] { true, false, true, false })
            {
                Qwen2ForCausalLM.TeamDecode = team || spinB;
                DecodeTeam.RescueAfterMicroseconds = !team && opts.Get("b") == "norescue" ? 1e12 : 30;
                GemvMulti.ChunkBytes = !team && spinB ? chunkB : 1L << 16;
                GemmSmallM.PrefetchBytes = team ? pfA : pfB; Qwen2TeamDecode.PrefetchNextPhase = team ? nextA : nextB;
                Step(lm, tok, cache);
            }
            Thread.Sleep(200);
            var onTps = new List<double>();
            var offTps = new List<double>();
            var bounds = new List<double>();
            var onShare = new List<double>();
            var offShare = new List<double>();
            for (int r = 0; r < rounds; r++)
            {
                double on = 0, off = 0;
                // alternate which variant goes first
                foreach (bool team in r % 2 == 0 ? new[] { true, false } : [false, true])
                {
                    Qwen2ForCausalLM.TeamDecode = team || spinB;
                    DecodeTeam.RescueAfterMicroseconds = !team && opts.Get("b") == "norescue" ? 1e12 : 30;
                    GemvMulti.ChunkBytes = !team && spinB ? chunkB : 1L << 16;
                    GemmSmallM.PrefetchBytes = team ? pfA : pfB; Qwen2TeamDecode.PrefetchNextPhase = team ? nextA : nextB;
                    Qwen2TeamDecode.ProfilePhases = team;
                    long t0 = Stopwatch.GetTimestamp();
                    for (int i = 0; i < block; i++) Step(lm, tok, cache);
                    Qwen2TeamDecode.ProfilePhases = false;
                    double tps = block / Stopwatch.GetElapsedTime(t0).TotalSeconds;
                    if (team) on = tps; else off = tps;
                }
                long kvBytes = 2L * c.NumHiddenLayers * c.NumKeyValueHeads * cache.Length * c.HeadDim * sizeof(float);
                double bound = BandwidthBench.CopyGBsQuick(threads) * 1e9 / (weightBytes + kvBytes);
                onTps.Add(on); offTps.Add(off); bounds.Add(bound);
                onShare.Add(on / bound); offShare.Add(off / bound);
            }
            Qwen2ForCausalLM.TeamDecode = true;
            DecodeTeam.RescueAfterMicroseconds = 30;
            GemvMulti.ChunkBytes = 1L << 16;
            GemmSmallM.PrefetchBytes = pfA;
            Qwen2TeamDecode.PrefetchNextPhase = nextA;
            Console.WriteLine(PhaseReport(c, rounds * block));
            Console.WriteLine($"  chunks run by a member that did not claim them: {Interlocked.Exchange(ref Qwen2TeamDecode.ChunksRescued, 0)}");
            double M(List<double> xs) => BandwidthBench.Median([.. xs]);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"decode-ab b={(spinB ? "team-" + opts.Get("b") : "op")} threads={threads} rounds={rounds} block={block} team_on_tps={M(onTps):F2} team_off_tps={M(offTps):F2} " +
                $"on/off={M(onTps.Zip(offTps, (a, b) => a / b).ToList()):F3} bound_tps={M(bounds):F2} " +
                $"on/bound={M(onShare):F3} off/bound={M(offShare):F3} load={File.ReadAllText("/proc/loadavg").Split(' ')[0]}"));
            Console.WriteLine("  per round on/off/bound: " + string.Join(" ", onTps.Select((o, i) =>
                string.Create(CultureInfo.InvariantCulture, $"{o:F1}/{offTps[i]:F1}/{bounds[i]:F1}"))));
        }
    }

    /// <summary>The team step's time per phase kind (member 0's view) booked over <paramref name="tokens"/> steps, ms per
    /// token and weight GB/s of the GEMV kinds; clears the booked times.</summary>
    internal static string PhaseReport(Qwen2Config c, int tokens)
    {
        long L = c.NumHiddenLayers, C = c.HiddenSize, I = c.IntermediateSize, Q = (c.NumAttentionHeads + 2 * c.NumKeyValueHeads) * c.HeadDim;
        long[] kindBytes = [L * Q * C * 2, 0, L * C * C * 2, L * 2 * I * C * 2, L * I * C * 2, (long)c.VocabSize * C * 2, 0, 0];
        string[] kindNames = ["qkv", "attention", "o", "gate_up", "down", "head", "outside", "(of which waiting)"];
        double teamMs = Qwen2TeamDecode.PhaseSeconds.Take(7).Sum() * 1e3 / tokens;
        string report = $"  team phases, ms/token (weight GB/s), total {teamMs:F2}: " + string.Join(" ", kindNames.Select((n, i) =>
        {
            double sec = Qwen2TeamDecode.PhaseSeconds[i] / tokens;
            return string.Create(CultureInfo.InvariantCulture, $"{n}={sec * 1e3:F2}") + (kindBytes[i] > 0 ? string.Create(CultureInfo.InvariantCulture, $"({kindBytes[i] / sec / 1e9:F1})") : "");
        }));
        Array.Clear(Qwen2TeamDecode.PhaseSeconds);
        return report;
    }

    static void Step(Qwen2ForCausalLM lm, Tensor tok, KvCache cache)
    {
        using var scope = TensorScope.Begin();
        using var emb = lm.Model.EmbedTokens.Forward(tok);
        using var logits = lm.Forward(emb, cache, lastOnly: true);
    }
}
