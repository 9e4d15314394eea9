using System.Diagnostics;
using System.Reflection;
using System.Runtime.InteropServices;
using MMSharp.Engine;
using MMSharp.Engine.Kernels;

namespace MMSharp.Bench;

/// <summary>
/// y[M, N] = x[M, K] W^T with W[N, K] as stored in a checkpoint (fp32, or bf16 = "bf16w" with fp32
/// activations), ours vs OpenBLAS cblas_sgemm(NoTrans, Trans) on the same (for bf16w: widened) data.
/// GFLOP/s = 2 M N K / time, median of repetitions after a warm-up, the two libraries in alternating blocks.
/// For M = 1 a second line gives the weight bytes streamed per second and its fraction of the copy bandwidth
/// (see <see cref="BandwidthBench"/>) measured right after.
/// </summary>
static unsafe class GemmBench
{
    static readonly int[] Ms = [1, 16, 256, 1024, 2048];
    static readonly (int K, int N)[] Shapes = [(896, 896), (896, 4864), (4864, 896), (1024, 3072), (3584, 3584), (3584, 18944)];

    /// <summary>Time with the calling thread's CPU clock instead of the wall clock (for tuning single-threaded
    /// kernels on a busy machine: time slices lost to other processes do not count).</summary>
    static bool _cpuClock;

    [StructLayout(LayoutKind.Sequential)] struct TimeSpec { public long Sec, NSec; }
    [DllImport("libc", EntryPoint = "clock_gettime")] static extern int ClockGetTime(int clock, out TimeSpec ts);
    const int ClockThreadCpuTime = 3;

    public static void Run(Options opts)
    {
        _cpuClock = opts.Get("clock") == "cpu";
        if (opts.Get("path") is string path)
        {
            // internal switch of the library (the bench is not a friend assembly), for comparing SIMD paths
            var field = typeof(Gemm).GetField("ForcedPath", BindingFlags.NonPublic | BindingFlags.Static)!;
            field.SetValue(null, Enum.Parse(field.FieldType, path, ignoreCase: true));
        }
        var threadList = opts.Ints("threads", [1, 2]);
        foreach (var dtype in new[] { "fp32", "bf16w" })
        {
            if (!opts.Allows("dtype", dtype)) continue;
            foreach (var (K, N) in Shapes)
            {
                if (!opts.Allows("k", K) || !opts.Allows("n", N)) continue;
                foreach (int M in opts.Ints("m", Ms))
                    Case(dtype, M, K, N, threadList);
            }
        }
    }

    static void Case(string dtype, int M, int K, int N, int[] threadList)
    {
        bool bf16 = dtype == "bf16w";
        long wCount = (long)N * K;
        float* x = Alloc<float>((long)M * K), w = Alloc<float>(wCount), c = Alloc<float>((long)M * N);
        ushort* wh = bf16 ? Alloc<ushort>(wCount) : null;
        try
        {
            var rng = new Rng(42);
            for (long i = 0; i < (long)M * K; i++) x[i] = rng.NextFloat() - 0.5f;
            for (long i = 0; i < wCount; i++)
            {
                float v = (rng.NextFloat() - 0.5f) * 0.1f;
                if (bf16) { wh[i] = Half16.FloatToBF16(v); w[i] = Half16.BF16ToFloat(wh[i]); }
                else w[i] = v;
            }
            foreach (int threads in threadList)
            {
                Par.Threads = threads;
                OpenBlas.openblas_set_num_threads(threads);
                Action ours = bf16
                    ? () => Gemm.SgemmBF16(M, N, K, x, K, 1, wh, 1, K, c, N)
                    : () => Gemm.Sgemm(M, N, K, x, K, 1, w, 1, K, c, N);
                Action blas = () => OpenBlas.cblas_sgemm(OpenBlas.RowMajor, OpenBlas.NoTrans, OpenBlas.Trans, M, N, K, 1f, x, K, w, K, 0f, c, N);
                var (tOurs, tBlas) = TimePair(ours, blas, 2.0 * M * N * K);
                double flop = 2.0 * M * N * K;
                double gOurs = flop / tOurs / 1e9, gBlas = flop / tBlas / 1e9;
                Console.WriteLine($"gemm dtype={dtype} M={M} K={K} N={N} threads={threads} ours={gOurs:F1} openblas={gBlas:F1} ratio={gOurs / gBlas:F2}");
                if (M == 1)
                {
                    // the decode target: weight bytes streamed per second against the copy bandwidth measured right now
                    double weightGBs = wCount * (bf16 ? 2 : 4) / tOurs / 1e9, copyGBs = BandwidthBench.CopyGBs(threads);
                    Console.WriteLine($"gemv dtype={dtype} M=1 K={K} N={N} threads={threads} weight_gbs={weightGBs:F1} copy_gbs={copyGBs:F1} fraction={weightGBs / copyGBs:F2}");
                }
            }
        }
        finally
        {
            NativeMemory.AlignedFree(x); NativeMemory.AlignedFree(w); NativeMemory.AlignedFree(c);
            if (wh != null) NativeMemory.AlignedFree(wh);
        }
    }

    /// <summary>
    /// Median seconds of each. The two run in alternating blocks (3 rounds of ours x r, OpenBLAS x r) with a
    /// pause before each block: both libraries keep idle worker threads spinning for a while after a call
    /// (OpenBLAS for up to ~0.1 s), and on a 2-core machine a spinning thread of one would steal a core from
    /// the other if single calls alternated.
    /// </summary>
    static (double, double) TimePair(Action a, Action b, double flop)
    {
        int reps = (int)Math.Clamp(1e10 / flop, 2, 67);
        var ta = new List<double>(); var tb = new List<double>();
        for (int round = 0; round < 3; round++)
        {
            Block(a, reps, ta);
            Block(b, reps, tb);
        }
        return (BandwidthBench.Median(ta), BandwidthBench.Median(tb));
    }

    static void Block(Action f, int reps, List<double> times)
    {
        Thread.Sleep(150);
        f(); // warm-up: JIT, page faults, packing buffers, waking the other threads
        for (int r = 0; r < reps; r++) times.Add(Time(f));
    }

    static double Time(Action f)
    {
        if (_cpuClock)
        {
            ClockGetTime(ClockThreadCpuTime, out var c0);
            f();
            ClockGetTime(ClockThreadCpuTime, out var c1);
            return (c1.Sec - c0.Sec) + (c1.NSec - c0.NSec) * 1e-9;
        }
        long t0 = Stopwatch.GetTimestamp();
        f();
        return (Stopwatch.GetTimestamp() - t0) / (double)Stopwatch.Frequency;
    }

    static T* Alloc<T>(long count) where T : unmanaged => (T*)NativeMemory.AlignedAlloc((nuint)(count * sizeof(T)), 64);
}
