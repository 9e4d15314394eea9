using System.Diagnostics;
using System.Runtime.InteropServices;
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
        byte* src = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 4096), dst = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 4096);
        try
        {
            new Span<byte>(src, (int)bytes).Fill(1); // touch every page of both buffers first
            new Span<byte>(dst, (int)bytes).Clear();
            Par.Threads = threads;
            var times = new List<double>();
            for (int rep = 0; rep < 7; rep++)
            {
                var sw = Stopwatch.StartNew();
                nint s = (nint)src, d = (nint)dst;
                Par.ForChunks(bytes, 1 << 20, (a, b) => Buffer.MemoryCopy((byte*)s + a, (byte*)d + a, b - a, b - a));
                times.Add(sw.Elapsed.TotalSeconds);
            }
            return 2.0 * bytes / Median(times.Skip(1).ToList()) / 1e9;
        }
        finally { NativeMemory.AlignedFree(src); NativeMemory.AlignedFree(dst); }
    }

    public static double Median(List<double> xs)
    {
        xs.Sort();
        return xs.Count % 2 == 1 ? xs[xs.Count / 2] : 0.5 * (xs[xs.Count / 2 - 1] + xs[xs.Count / 2]);
    }
}
