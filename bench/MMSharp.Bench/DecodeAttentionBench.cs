using System.Runtime.InteropServices;
using MMSharp.Engine.Kernels;

namespace MMSharp.Bench;

/// <summary>
/// One decode-attention work item as the decode step runs it (<see cref="DecodeAttention"/>: one kv head, its --g query
/// heads, one query, --tk cached positions of a [1, 2, tk + 64, 64] cache), timed with the thread's CPU clock so a busy
/// machine does not count: µs per item (the InternVL3-1B step runs 2 per layer, 48 per token).
/// </summary>
static unsafe class DecodeAttentionBench
{
    [StructLayout(LayoutKind.Sequential)] struct TimeSpec { public long Sec, Nsec; }
    [DllImport("libc", EntryPoint = "clock_gettime")] static extern int ClockGetTime(int clock, out TimeSpec ts);

    static double CpuSeconds() { ClockGetTime(3, out var t); return t.Sec + t.Nsec * 1e-9; }

    public static void Run(Options opts)
    {
        int G = opts.Ints("g", [7])[0], D = 64;
        foreach (int tk in opts.Ints("tk", [330, 1000]))
        {
            int max = tk + 64;
            float* k = (float*)NativeMemory.AlignedAlloc((nuint)(2L * max * D * 4), 64), v = (float*)NativeMemory.AlignedAlloc((nuint)(2L * max * D * 4), 64);
            float* q = (float*)NativeMemory.AlignedAlloc((nuint)(G * D * 4), 64), o = (float*)NativeMemory.AlignedAlloc((nuint)(G * D * 4), 64);
            var rng = new Random(1);
            for (long i = 0; i < 2L * max * D; i++) { k[i] = (float)rng.NextDouble() - 0.5f; v[i] = (float)rng.NextDouble() - 0.5f; }
            for (int i = 0; i < G * D; i++) q[i] = (float)rng.NextDouble() - 0.5f;
            // warm-up until the call-counting tiers have promoted Forward and its item to their final code (~0.5 s)
            for (var w = System.Diagnostics.Stopwatch.StartNew(); w.ElapsedMilliseconds < 500;)
                DecodeAttention.Forward(1, G, 1, 1, tk, D, 0.125f, true, q, k, 2L * max * D, (long)max * D, D, v, 2L * max * D, (long)max * D, D, o);
            var times = new List<double>();
            for (int rep = 0; rep < 7; rep++)
            {
                const int n = 2000;
                double t0 = CpuSeconds();
                for (int i = 0; i < n; i++)
                    DecodeAttention.Forward(1, G, 1, 1, tk, D, 0.125f, true, q, k, 2L * max * D, (long)max * D, D, v, 2L * max * D, (long)max * D, D, o);
                times.Add((CpuSeconds() - t0) / n);
            }
            Console.WriteLine($"decode-attention g={G} tk={tk} d={D} us_per_item={BandwidthBench.Median(times) * 1e6:F2} (best {times.Min() * 1e6:F2})");
            NativeMemory.AlignedFree(k); NativeMemory.AlignedFree(v); NativeMemory.AlignedFree(q); NativeMemory.AlignedFree(o);
        }
    }
}
