using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using MMSharp.Engine.Kernels;

namespace MMSharp.Bench;

/// <summary>
/// Why a long-row GEMV streams slower than a short-row one, and what <see cref="GemmSmallM.PrefetchBytes"/> does about it:
/// the same --count weight buffers of 8.7 MB (one gate_proj or down_proj of InternVL3-1B) read by <see cref="GemvMulti"/>
/// (2 threads) as [4864, 896] (gate/up: x is 3.5 KiB) and as [896, 4864] (down: x is 19 KiB), each with the prefetch
/// and without it, plus the [896, 4864] loop with x's indices wrapped into its first --wrap floats (wrong sums, the same
/// loads, a small x: evidence that x's share of the L1 is what slows the long rows). Variants alternate per repetition;
/// prints weight GB/s (median and best).
/// </summary>
static unsafe class GemvShapeBench
{
    const int Short = 896, Long = 4864;

    public static void Run(Options opts)
    {
        int count = opts.Ints("count", [24])[0], reps = opts.Ints("reps", [11])[0], wrap = opts.Ints("wrap", [2432])[0];
        Par.Threads = opts.Ints("threads", [2])[0];
        long bytes = 2L * Short * Long;
        var ws = new ushort*[count];
        var rng = new Random(1);
        for (int i = 0; i < count; i++)
        {
            ws[i] = (ushort*)NativeMemory.AlignedAlloc((nuint)bytes, 4096);
            for (long e = 0; e < bytes / 2; e++) ws[i][e] = (ushort)(0x3c00 + rng.Next(255));
        }
        float* x = (float*)NativeMemory.AlignedAlloc(Long * 4, 64), y = (float*)NativeMemory.AlignedAlloc(Long * 4, 64);
        for (int i = 0; i < Long; i++) x[i] = (float)rng.NextDouble();
        int prefetch = GemmSmallM.PrefetchBytes;
        string[] variants = ["short", "short_nopf", "long", "long_nopf", "long_wrapped_x"];
        var gbs = variants.ToDictionary(s => s, _ => new List<double>());
        var seg = stackalloc GemvSegment[1];
        try
        {
            for (int rep = 0; rep < reps; rep++)
                foreach (var name in variants)
                {
                    bool isShort = name.StartsWith("short");
                    int k = isShort ? Short : Long, rows = isShort ? Long : Short;
                    GemmSmallM.PrefetchBytes = name.EndsWith("nopf") ? 0 : prefetch;
                    long t0 = Stopwatch.GetTimestamp();
                    for (int i = 0; i < count; i++)
                    {
                        if (name == "long_wrapped_x") { Wrapped(ws[i], x, y, wrap); continue; }
                        seg[0] = new GemvSegment { W = ws[i], Ldw = k, Rows = rows, Out = y };
                        GemvMulti.Run<BF16Elem>(k, x, seg, 1);
                    }
                    if (rep > 0) gbs[name].Add(bytes * count / Stopwatch.GetElapsedTime(t0).TotalSeconds / 1e9);
                }
        }
        finally
        {
            GemmSmallM.PrefetchBytes = prefetch;
            foreach (var w in ws) NativeMemory.AlignedFree(w);
            NativeMemory.AlignedFree(x); NativeMemory.AlignedFree(y);
        }
        Console.WriteLine($"gemv-shape threads={Par.Threads} count={count} prefetch={prefetch} wrap={wrap} " +
            string.Join(" ", gbs.Select(kv => $"{kv.Key}_gbs={BandwidthBench.Median(kv.Value):F1} (best {kv.Value.Max():F1})")) +
            $" load={File.ReadAllText("/proc/loadavg").Split(' ')[0]}");
    }

    /// <summary>[896, 4864] rows split in two halves over the threads, Row1's loop (no prefetch) with x[p mod wrap].</summary>
    static void Wrapped(ushort* w, float* x, float* y, int wrap)
    {
        nint wp = (nint)w, xp = (nint)x, yp = (nint)y;
        Par.For(Par.Threads, t =>
        {
            int j0 = Short * t / Par.Threads, j1 = Short * (t + 1) / Par.Threads;
            for (int j = j0; j < j1; j++) ((float*)yp)[j] = RowWrapped((float*)xp, (ushort*)wp + (long)j * Long, wrap);
        });
    }

    static float RowWrapped(float* a, ushort* w, int wrap)
    {
        Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default;
        for (int p = 0, q = 0; p + 64 <= Long; p += 64, q = q + 64 >= wrap ? 0 : q + 64)
        {
            s0 = Avx512F.FusedMultiplyAdd(Vector512.Load(a + q), BF16Elem.Load16(w, p), s0);
            s1 = Avx512F.FusedMultiplyAdd(Vector512.Load(a + q + 16), BF16Elem.Load16(w, p + 16), s1);
            s2 = Avx512F.FusedMultiplyAdd(Vector512.Load(a + q + 32), BF16Elem.Load16(w, p + 32), s2);
            s3 = Avx512F.FusedMultiplyAdd(Vector512.Load(a + q + 48), BF16Elem.Load16(w, p + 48), s3);
        }
        return Vector512.Sum((s0 + s1) + (s2 + s3));
    }
}
