using System.Diagnostics;
using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.Engine.Kernels;
using MMSharp.Models.InternVL;
using MMSharp.Training;

namespace MMSharp.Bench;

/// <summary>
/// One training step of a single Qwen2 decoder layer of Qwen2-0.5B geometry (hidden 896, 14 query / 2 key-value heads
/// of 64, intermediate 4864, RMSNorm eps 1e-6, RoPE theta 1e6, q/k/v bias), fp32, built with the model code the trainer
/// uses (<see cref="Qwen2DecoderLayer"/>, <see cref="AdamW"/>): input [1, seq, 896] random (requiring grad, as inside a
/// model), forward, backward of sum(y·g) for a fixed random g (y.Backward(g)), AdamW step (lr 1e-5, no decay).
/// Warm-up steps are untimed (then a pause for the JIT's background tier-up and one more untimed step); the printed
/// times are medians over the timed steps.
/// The PyTorch reference of the same loop is <c>bench/reference/torch_train_layer.py</c> (run it with /usr/bin/python3).
/// Options: --seq 512 --threads 2 --steps 10 --warmup 3 --recompute 0|1 (gradient checkpointing of the layer, as
/// <see cref="Qwen2Model.Recompute"/>) --profile 0|1 (forward op families and backward nodes by name, over the timed steps).
/// </summary>
static class TrainLayerBench
{
    public static void Run(Options opts)
    {
        int seq = opts.Ints("seq", [512])[0], steps = opts.Ints("steps", [10])[0], warmup = opts.Ints("warmup", [3])[0];
        bool recompute = opts.Ints("recompute", [0])[0] != 0, profile = opts.Ints("profile", [0])[0] != 0;
        if (opts.Ints("gemms", [0])[0] != 0)
        {
            _cpuClock = opts.Get("clock") == "cpu";
            foreach (int threads in opts.Ints("threads", [2])) Gemms(seq, threads);
            return;
        }
        foreach (int threads in opts.Ints("threads", [2]))
            Case(seq, threads, steps, warmup, recompute, profile);
    }

    static void Case(int seq, int threads, int steps, int warmup, bool recompute, bool profile)
    {
        Par.Threads = threads;
        var c = new Qwen2Config("Qwen2ForCausalLM", 151936, 896, 4864, 1, 14, 2, 64, 32768, 1e-6, 1000000.0, null,
            true, "silu", null, 151645);
        using var layer = new Qwen2DecoderLayer(c, DType.F32);
        ulong seed = 1;
        foreach (var (name, p) in layer.NamedParameters())
        {
            using var f = name.EndsWith("layernorm.weight") ? Tensor.Ones(p.Shape) : Tensor.RandN(p.Shape, seed++, 0.02f);
            p.Set(f);
            p.RequiresGrad = true;
        }
        layer.PrepareTrainableParameters(DType.F32);
        layer.Train();
        var opt = new AdamW(layer.NamedParameters().Where(p => p.Parameter.RequiresGrad), new AdamWOptions { WeightDecay = 0 });

        using var positions = Qwen2Rotary.Positions(0, seq);
        var (cos, sin) = Qwen2Rotary.Tables(c, positions, seq - 1);
        using var cosOwned = cos;
        using var sinOwned = sin;
        using var x = Tensor.RandN([1, seq, c.HiddenSize], 100);
        using var g = Tensor.RandN([1, seq, c.HiddenSize], 101);
        x.RequiresGrad = true;

        var fwd = new List<double>(); var bwd = new List<double>(); var optMs = new List<double>(); var tot = new List<double>();
        long freshStart = 0, faultsStart = 0;
        for (int step = 0; step < warmup + steps; step++)
        {
            if (step == warmup)
            {
                // the kernels reach the JIT's optimised tier after ~30 calls, compiled on a background thread: give it
                // time and run one more untimed step, so the timed steps measure steady state (as a long training run)
                Thread.Sleep(500);
                StepOnce(layer, opt, x, g, cos, sin, recompute);
                freshStart = Interlocked.Read(ref BufferPool.FreshAllocations);
                faultsStart = MinorFaults();
                if (profile) { Profiler.Reset(); Profiler.Enabled = true; }
            }
            long t0 = Stopwatch.GetTimestamp();
            var y = recompute
                ? Checkpoint.Run(t => layer.Forward(t[0], t[1], t[2], null, 0), x, cos, sin)
                : layer.Forward(x, cos, sin, null, 0);
            long t1 = Stopwatch.GetTimestamp();
            y.Backward(g);
            long t2 = Stopwatch.GetTimestamp();
            using (GradMode.NoGrad()) opt.Step(1e-5);
            layer.ZeroGrad();
            x.ZeroGrad();
            y.Dispose();
            long t3 = Stopwatch.GetTimestamp();
            if (step < warmup) continue;
            double ms(long a, long b) => (b - a) * 1e3 / Stopwatch.Frequency;
            fwd.Add(ms(t0, t1)); bwd.Add(ms(t1, t2)); optMs.Add(ms(t2, t3)); tot.Add(ms(t0, t3));
        }
        Profiler.Enabled = false;
        long fresh = Interlocked.Read(ref BufferPool.FreshAllocations) - freshStart, faults = MinorFaults() - faultsStart;
        double total = Median(tot);
        Console.WriteLine($"train-layer seq={seq} hidden={c.HiddenSize} threads={threads} tokens_per_s={seq / (total / 1e3):F0} " +
            $"ms_per_step={total:F1} fwd_ms={Median(fwd):F1} bwd_ms={Median(bwd):F1} opt_ms={Median(optMs):F1} recompute={(recompute ? 1 : 0)} " +
            $"fresh_allocs_per_step={fresh / (double)steps:F1} minor_faults_per_step={faults / (double)steps:F0} " +
            $"load={File.ReadAllText("/proc/loadavg").Split(' ')[0]}");
        if (profile) PrintProfile(tot.Sum(), fwd.Sum());
    }

    static void StepOnce(Qwen2DecoderLayer layer, AdamW opt, Tensor x, Tensor g, Tensor cos, Tensor sin, bool recompute)
    {
        using (var y = recompute ? Checkpoint.Run(t => layer.Forward(t[0], t[1], t[2], null, 0), x, cos, sin) : layer.Forward(x, cos, sin, null, 0))
            y.Backward(g);
        using (GradMode.NoGrad()) opt.Step(1e-5);
        layer.ZeroGrad();
        x.ZeroGrad();
    }

    static void PrintProfile(double totalMs, double fwdMs)
    {
        var parts = new List<string>();
        double booked = 0;
        for (var cat = (ProfileCategory)0; cat < ProfileCategory.Count; cat++)
        {
            if (Profiler.Calls(cat) == 0) continue;
            double ms = Profiler.Seconds(cat) * 1e3;
            booked += ms;
            parts.Add($"{cat}={100 * ms / totalMs:F1}%");
        }
        parts.Add($"other={100 * (fwdMs - booked) / totalMs:F1}%");
        Console.WriteLine("  forward (share of step time): " + string.Join(" ", parts));
        foreach (var (name, sec, calls) in Profiler.Named())
            Console.WriteLine($"  {name,-48} {100 * sec * 1e3 / totalMs,5:F1}%  {sec * 1e3 / calls,8:F2} ms/call  calls={calls}");
    }

    /// <summary>
    /// --gemms 1: GFLOP/s of the three GEMMs of each linear of the layer at this seq (forward y = x Wᵀ, dx = g W,
    /// dW = gᵀ x, with the strides Ops.Linear passes), ours and OpenBLAS (what torch calls) alternating, medians of 7.
    /// </summary>
    static unsafe void Gemms(int rows, int threads)
    {
        Par.Threads = threads;
        OpenBlas.openblas_set_num_threads(threads);
        (string Name, int Out, int In)[] linears = [("q_proj", 896, 896), ("k_proj", 128, 896), ("o_proj", 896, 896), ("gate_proj", 4864, 896), ("down_proj", 896, 4864)];
        foreach (var (name, outF, inF) in linears)
        {
            using var x = Tensor.RandN([rows, inF], 1);
            using var w = Tensor.RandN([outF, inF], 2);
            using var g = Tensor.RandN([rows, outF], 3);
            using var y = Tensor.Empty([rows, outF]);
            using var gx = Tensor.Empty([rows, inF]);
            using var gw = Tensor.Empty([outF, inF]);
            float* xp = x.F32Ptr, wp = w.F32Ptr, gp = g.F32Ptr, yp = y.F32Ptr, gxp = gx.F32Ptr, gwp = gw.F32Ptr;
            double flop = 2.0 * rows * outF * inF;
            var cases = new (string Kind, Action Ours, Action Blas)[]
            {
                ("fwd", () => Gemm.Sgemm(rows, outF, inF, xp, inF, 1, wp, 1, inF, yp, outF),
                        () => OpenBlas.cblas_sgemm(OpenBlas.RowMajor, OpenBlas.NoTrans, OpenBlas.Trans, rows, outF, inF, 1, xp, inF, wp, inF, 0, yp, outF)),
                ("dx", () => Gemm.Sgemm(rows, inF, outF, gp, outF, 1, wp, inF, 1, gxp, inF),
                       () => OpenBlas.cblas_sgemm(OpenBlas.RowMajor, OpenBlas.NoTrans, OpenBlas.NoTrans, rows, inF, outF, 1, gp, outF, wp, inF, 0, gxp, inF)),
                ("dW", () => Gemm.Sgemm(outF, inF, rows, gp, 1, outF, xp, inF, 1, gwp, inF),
                       () => OpenBlas.cblas_sgemm(OpenBlas.RowMajor, OpenBlas.Trans, OpenBlas.NoTrans, outF, inF, rows, 1, gp, outF, xp, inF, 0, gwp, inF)),
            };
            foreach (var (kind, ours, blas) in cases)
            {
                var to = new List<double>(); var tb = new List<double>();
                for (int r = 0; r < 8; r++)
                {
                    double t0 = Now(); ours(); double t1 = Now(); blas(); double t2 = Now();
                    if (r == 0) continue;
                    to.Add(t1 - t0); tb.Add(t2 - t1);
                }
                double o = Median(to), b = Median(tb);
                Console.WriteLine($"gemm {name,-10} {kind,-3} m={(kind == "dW" ? outF : rows)} n={(kind == "dx" ? inF : kind == "dW" ? inF : outF)} k={(kind == "dx" ? outF : kind == "dW" ? rows : inF)} threads={threads}: " +
                    $"ours {o * 1e3:F2} ms {flop / o / 1e9:F0} GFLOP/s | openblas {b * 1e3:F2} ms {flop / b / 1e9:F0} GFLOP/s | ours/openblas time {o / b:F2}");
            }
        }
    }

    static bool _cpuClock;

    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)] struct TimeSpec { public long Sec, NSec; }
    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "clock_gettime")] static extern int ClockGetTime(int clock, out TimeSpec ts);

    /// <summary>Seconds on the wall clock, or (--clock cpu, single-threaded cases) on this thread's CPU clock.</summary>
    static double Now()
    {
        if (!_cpuClock) return Stopwatch.GetTimestamp() / (double)Stopwatch.Frequency;
        ClockGetTime(3, out var ts); // CLOCK_THREAD_CPUTIME_ID
        return ts.Sec + ts.NSec * 1e-9;
    }

    static double Median(List<double> xs) { var s = xs.Order().ToList(); return s[s.Count / 2]; }

    /// <summary>Minor page faults of this process so far (/proc/self/stat field 10).</summary>
    static long MinorFaults()
    {
        var stat = File.ReadAllText("/proc/self/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return long.Parse(fields[7]);
    }
}
