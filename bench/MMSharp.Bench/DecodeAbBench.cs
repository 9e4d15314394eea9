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
/// their ratio, and each variant's share of the round's bound (copy bandwidth / weight bytes per token, as the
/// generate bench counts them).
/// </summary>
static unsafe class DecodeAbBench
{
    /// <summary>Options: --threads 2 --rounds 8 --block 4 --prompt 300 --clock cpu (phase times as thread CPU time)
    /// --b (the second variant, <see cref="Variant.Parse"/>).</summary>
    public static void Run(Options opts)
    {
        int rounds = opts.Ints("rounds", [8])[0], block = opts.Ints("block", [4])[0], prompt = opts.Ints("prompt", [300])[0];
        using var lm = BenchQwen2.Random(24, out var c, out long weightBytes);
        weightBytes += 2L * c.HiddenSize;                                        // the embedding row of the token
        // --clock cpu: the phase times are the CPU time of the thread running member 0 (preemption not counted)
        Qwen2TeamDecode.ProfileCpuClock = opts.Get("clock") == "cpu";
        // variant A is the team step as configured; --b names variant B (by default the op-by-op step)
        var va = Variant.Current();
        var vb = Variant.Parse(opts.Get("b"), va);
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
                (team ? va : vb).Apply();
                Step(lm, tok, cache);
            }
            Thread.Sleep(200);
            double[] phasesA = new double[Qwen2TeamDecode.PhaseSeconds.Length], phasesB = new double[phasesA.Length];
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
                    (team ? va : vb).Apply();
                    Qwen2TeamDecode.ProfilePhases = vb.Team || team;
                    long t0 = Stopwatch.GetTimestamp();
                    for (int i = 0; i < block; i++) Step(lm, tok, cache);
                    Qwen2TeamDecode.ProfilePhases = false;
                    var phases = team ? phasesA : phasesB;
                    for (int i = 0; i < phases.Length; i++) phases[i] += Qwen2TeamDecode.PhaseSeconds[i];
                    Array.Clear(Qwen2TeamDecode.PhaseSeconds);
                    double tps = block / Stopwatch.GetElapsedTime(t0).TotalSeconds;
                    if (team) on = tps; else off = tps;
                }
                double bound = BandwidthBench.CopyGBsQuick(threads) * 1e9 / weightBytes;
                onTps.Add(on); offTps.Add(off); bounds.Add(bound);
                onShare.Add(on / bound); offShare.Add(off / bound);
            }
            va.Apply();
            Console.WriteLine("A " + PhaseReport(c, rounds * block, phasesA));
            if (vb.Team) Console.WriteLine("B " + PhaseReport(c, rounds * block, phasesB));
            Console.WriteLine($"  chunks run by a member that did not claim them: {Interlocked.Exchange(ref Qwen2TeamDecode.ChunksRescued, 0)}");
            double M(List<double> xs) => BandwidthBench.Median([.. xs]);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"decode-ab b={vb.Name} threads={threads} rounds={rounds} block={block} team_on_tps={M(onTps):F2} team_off_tps={M(offTps):F2} " +
                $"on/off={M(onTps.Zip(offTps, (a, b) => a / b).ToList()):F3} bound_tps={M(bounds):F2} " +
                $"on/bound={M(onShare):F3} off/bound={M(offShare):F3} load={File.ReadAllText("/proc/loadavg").Split(' ')[0]}"));
            Console.WriteLine("  per round on/off/bound: " + string.Join(" ", onTps.Select((o, i) =>
                string.Create(CultureInfo.InvariantCulture, $"{o:F1}/{offTps[i]:F1}/{bounds[i]:F1}"))));
        }
    }

    /// <summary>The team step's time per phase kind (member 0's view) booked over <paramref name="tokens"/> steps, ms per
    /// token and weight GB/s of the GEMV kinds; clears the booked times.</summary>
    internal static string PhaseReport(Qwen2Config c, int tokens, double[]? seconds = null)
    {
        seconds ??= Qwen2TeamDecode.PhaseSeconds;
        long L = c.NumHiddenLayers, C = c.HiddenSize, I = c.IntermediateSize, Q = (c.NumAttentionHeads + 2 * c.NumKeyValueHeads) * c.HeadDim;
        long[] kindBytes = [L * Q * C * 2, 0, L * C * C * 2, L * 2 * I * C * 2, L * I * C * 2, (long)c.VocabSize * C * 2, 0];
        string[] kindNames = ["qkv", "attention", "o", "gate_up", "down", "head", "outside"];
        double teamMs = seconds.Take(7).Sum() * 1e3 / tokens, waitMs = seconds.Skip(7).Sum() * 1e3 / tokens;
        string report = string.Create(CultureInfo.InvariantCulture, $"  team phases, ms/token (weight GB/s; waiting at the end), total {teamMs:F2} (waiting {waitMs:F2}): ") +
            string.Join(" ", kindNames.Select((n, i) =>
            {
                double sec = seconds[i] / tokens;
                return string.Create(CultureInfo.InvariantCulture, $"{n}={sec * 1e3:F2}") +
                    (i < 6 ? string.Create(CultureInfo.InvariantCulture, $"({(kindBytes[i] > 0 ? $"{kindBytes[i] / sec / 1e9:F1}; " : "")}{seconds[7 + i] * 1e3 / tokens:F2})") : "");
            }));
        Array.Clear(seconds);
        return report;
    }

    /// <summary>The tunables of one decode step variant.</summary>
    readonly record struct Variant(string Name, bool Team, double RescueMicroseconds, long ChunkBytes, int RowPrefetch, int NextPrefetch)
    {
        public static Variant Current() => new("team", Qwen2ForCausalLM.TeamDecode, DecodeTeam.RescueAfterMicroseconds, GemvMulti.ChunkBytes,
            GemmSmallM.PrefetchBytes, Qwen2TeamDecode.PrefetchNextPhase);

        /// <summary>--b: op (the op-by-op step), or the team step with one tunable changed: norescue, chunk32|chunk128|chunk256,
        /// nopf | pf:BYTES (row prefetch), nonext | next:BYTES (next-phase prefetch).</summary>
        public static Variant Parse(string? b, Variant a)
        {
            int Bytes(string prefix) => int.Parse(b![prefix.Length..], CultureInfo.InvariantCulture);
            var team = a with { Name = "team-" + b };
            return b switch
            {
                null or "op" => a with { Name = "op", Team = false },
                "norescue" => team with { RescueMicroseconds = 1e12 },
                "chunk32" => team with { ChunkBytes = 1L << 15 },
                "chunk128" => team with { ChunkBytes = 1L << 17 },
                "chunk256" => team with { ChunkBytes = 1L << 18 },
                "nopf" => team with { RowPrefetch = 0 },
                "nonext" => team with { NextPrefetch = 0 },
                _ when b.StartsWith("pf:") => team with { RowPrefetch = Bytes("pf:") },
                _ when b.StartsWith("next:") => team with { NextPrefetch = Bytes("next:") },
                _ => throw new ArgumentException($"--b {b}: expected op, norescue, chunk32, chunk128, chunk256, nopf, pf:BYTES, nonext or next:BYTES"),
            };
        }

        public void Apply()
        {
            Qwen2ForCausalLM.TeamDecode = Team;
            DecodeTeam.RescueAfterMicroseconds = RescueMicroseconds;
            GemvMulti.ChunkBytes = ChunkBytes;
            GemmSmallM.PrefetchBytes = RowPrefetch;
            Qwen2TeamDecode.PrefetchNextPhase = NextPrefetch;
        }
    }

    static void Step(Qwen2ForCausalLM lm, Tensor tok, KvCache cache)
    {
        using var scope = TensorScope.Begin();
        using var emb = lm.Model.EmbedTokens.Forward(tok);
        using var logits = lm.Forward(emb, cache, lastOnly: true);
    }
}
