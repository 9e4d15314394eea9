using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using MMSharp.Engine;
using MMSharp.Engine.Kernels;

namespace MMSharp.Bench;

/// <summary>
/// Memory copy bandwidth of the machine: a 1 GiB buffer copied into another, split over the threads.
/// copy_gbs counts bytes read plus bytes written (2 GiB per copy) per second, in 1e9 bytes; the GEMV
/// target compares the weight bytes streamed per second against it.
/// </summary>
static unsafe class BandwidthBench
{
    public static void Run(Options opts)
    {
        foreach (int threads in opts.Ints("threads", [2])) Console.WriteLine($"bandwidth copy_gbs={CopyGBs(threads):F1} threads={threads}");
    }

    public static double CopyGBs(int threads)
    {
        const long bytes = 1L << 30;
        TouchedPair(bytes, out byte* src, out byte* dst);
        try { return CopyGBs(src, dst, bytes, threads, reps: 7, skipFirst: true); }
        finally { NativeMemory.AlignedFree(src); NativeMemory.AlignedFree(dst); }
    }

    static byte* _src, _dst;

    /// <summary>Copy bandwidth as <see cref="BandwidthBench"/> measures it (read + written bytes per second), from the
    /// median of 3 copies of 256 MiB (short enough to sit between decode blocks).</summary>
    public static double CopyGBsQuick(int threads)
    {
        QuickBuffers();
        return CopyGBs(_src, _dst, QuickBytes, threads, reps: 3, skipFirst: false);
    }

    /// <summary>The quick samples' buffers, made on first use and kept (first touch is not what is measured).</summary>
    const long QuickBytes = 256L << 20;
    static void QuickBuffers()
    {
        if (_src == null) TouchedPair(QuickBytes, out _src, out _dst);
    }

    /// <summary>Read-only bandwidth (bytes read per second, 1e9) of the same 256 MiB buffer as <see cref="CopyGBsQuick"/>,
    /// median of 3 passes: the most a weight stream (a decode step reads its weights and writes almost nothing) can get,
    /// where a copy also keeps its non-temporal writes in flight.</summary>
    public static double ReadGBsQuick(int threads)
    {
        QuickBuffers();
        return ReadGBs(_src, QuickBytes, threads, reps: 3, skipFirst: false);
    }

    /// <summary>buf summed with Vector512 loads in 1 MiB chunks over the threads, <paramref name="reps"/> times: bytes read
    /// per second (1e9) of the median pass.</summary>
    public static double ReadGBs(byte* buf, long bytes, int threads, int reps, bool skipFirst)
    {
        Par.Threads = threads;
        var times = new List<double>();
        nint s = (nint)buf;
        float sink = 0;
        for (int rep = 0; rep < reps; rep++)
        {
            long t0 = Stopwatch.GetTimestamp();
            Par.ForChunks(bytes / 64, 1 << 14, (a, b) =>
            {
                // four independent sums: the loads, not an add chain, set the pace
                Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default;
                float* p = (float*)s;
                long i = a * 16, end = b * 16;
                for (; i + 64 <= end; i += 64)
                {
                    s0 += Vector512.Load(p + i); s1 += Vector512.Load(p + i + 16);
                    s2 += Vector512.Load(p + i + 32); s3 += Vector512.Load(p + i + 48);
                }
                for (; i < end; i += 16) s0 += Vector512.Load(p + i);
                if (Vector512.Sum((s0 + s1) + (s2 + s3)) == 12345f) sink = 1;    // keeps the loads
            });
            times.Add(Stopwatch.GetElapsedTime(t0).TotalSeconds);
        }
        GC.KeepAlive(sink);
        return bytes / Median(skipFirst ? times.Skip(1).ToList() : times) / 1e9;
    }

    /// <summary>Two 2 MiB-aligned buffers with every page touched (first touch is not what is measured), on huge pages
    /// when <see cref="HugePages.Enabled"/> is on, as the weights are: the bound compares like with like.</summary>
    static void TouchedPair(long bytes, out byte* src, out byte* dst)
    {
        src = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 2 << 20);
        dst = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 2 << 20);
        HugePages.Advise(src, bytes);
        HugePages.Advise(dst, bytes);
        new Span<byte>(src, (int)bytes).Fill(1);
        new Span<byte>(dst, (int)bytes).Clear();
    }

    /// <summary>src copied into dst in 1 MiB chunks over the threads, <paramref name="reps"/> times: read + written bytes
    /// per second (1e9) of the median copy.</summary>
    static double CopyGBs(byte* src, byte* dst, long bytes, int threads, int reps, bool skipFirst)
    {
        Par.Threads = threads;
        var times = new List<double>();
        nint s = (nint)src, d = (nint)dst;
        for (int rep = 0; rep < reps; rep++)
        {
            long t0 = Stopwatch.GetTimestamp();
            Par.ForChunks(bytes, 1 << 20, (a, b) => Buffer.MemoryCopy((byte*)s + a, (byte*)d + a, b - a, b - a));
            times.Add(Stopwatch.GetElapsedTime(t0).TotalSeconds);
        }
        return 2.0 * bytes / Median(skipFirst ? times.Skip(1).ToList() : times) / 1e9;
    }

    public static double Median(List<double> xs)
    {
        xs.Sort();
        return xs.Count % 2 == 1 ? xs[xs.Count / 2] : 0.5 * (xs[xs.Count / 2 - 1] + xs[xs.Count / 2]);
    }
}
