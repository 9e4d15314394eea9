using System.Diagnostics;
using System.Runtime.InteropServices;
using MMSharp.Engine.Kernels;

namespace MMSharp.Bench;

/// <summary>
/// Weight GB/s of the decode GEMV kernel (<see cref="GemvMulti"/>, bf16, k = 896) over one 512 MiB weight buffer backed
/// by 4 KiB pages and one backed by transparent huge pages (anonymous mmap + madvise(MADV_HUGEPAGE) before the first
/// touch), issued as calls of --call-mb each (1.6: o_proj-sized, 17: gate/up-sized, 512: one call), alternated per
/// repetition so a busy machine affects both alike. Prints the AnonHugePages the process got.
/// </summary>
static unsafe class GemvPagesBench
{
    [DllImport("libc", SetLastError = true)] static extern nint mmap(nint addr, nuint len, int prot, int flags, int fd, nint off);
    [DllImport("libc", SetLastError = true)] static extern int madvise(nint addr, nuint len, int advice);
    [DllImport("libc", SetLastError = true)] static extern int munmap(nint addr, nuint len);

    const int ProtRW = 3, MapPrivateAnon = 0x22, MadvHugepage = 14, MadvNoHugepage = 15;

    static byte* Map(long bytes, bool huge)
    {
        // 2 MiB-aligned start inside an over-sized mapping, so whole huge pages fit
        nint raw = mmap(0, (nuint)(bytes + (2 << 20)), ProtRW, MapPrivateAnon, -1, 0);
        if (raw == -1) throw new InvalidOperationException($"mmap failed: {Marshal.GetLastPInvokeError()}");
        nint p = (raw + (2 << 20) - 1) & ~((nint)(2 << 20) - 1);
        madvise(p, (nuint)bytes, huge ? MadvHugepage : MadvNoHugepage);
        return (byte*)p;
    }

    static void PfRows(ushort* w, int k, float* y, int j0, int j1, float* x, int dist)
    {
        byte* end = (byte*)(w + (long)j1 * k);
        for (int j = j0; j < j1; j++)
        {
            ushort* wj = w + (long)j * k;
            // prefetch the bytes dist ahead of this row, one line per 64 bytes of the row
            byte* pf = (byte*)wj + dist;
            for (int o = 0; o < k * 2; o += 64) if (pf + o < end) System.Runtime.Intrinsics.X86.Sse.Prefetch0(pf + o);
            y[j] = GemmSmallM.Row1<BF16Elem>(k, x, wj, GemmSmallM.PrefetchBytes);
        }
    }

    public static void Run(Options opts)
    {
        int dist = opts.Ints("dist", [4096])[0];
        const int K = 896;
        const long bytes = 512L << 20;
        long rows = bytes / (2 * K);
        byte* small = Map(bytes, false), huge = Map(bytes, true);
        float* x = (float*)NativeMemory.AlignedAlloc(K * 4, 64), y = (float*)NativeMemory.AlignedAlloc((nuint)rows * 4, 64);
        for (int i = 0; i < K; i++) x[i] = 1f / K;
        var init = (ushort)0x3c00;
        Par.ForChunks(bytes / 2, 1 << 16, (a, b) => { for (long i = a; i < b; i++) { ((ushort*)small)[i] = init; ((ushort*)huge)[i] = init; } });
        var anon = File.ReadAllLines("/proc/self/smaps_rollup").FirstOrDefault(l => l.StartsWith("AnonHugePages")) ?? "?";
        Console.WriteLine($"gemv-pages {anon.Replace(" ", "")}");
        foreach (int threads in opts.Ints("threads", [2]))
        foreach (var callMb in (opts.AllValues("call-mb") is { Count: > 0 } cm ? cm : ["1.6", "17", "512"]).Select(double.Parse))
        {
            Par.Threads = threads;
            long callRows = Math.Max(8, (long)(callMb * (1 << 20) / (2 * K)));
            var gbs = new Dictionary<string, List<double>> { ["4k"] = [], ["thp"] = [], ["pf"] = [], ["thp_pf"] = [] };
            for (int rep = 0; rep < 8; rep++)
                foreach (var v in gbs.Keys)
                {
                    byte* w = v.StartsWith("thp") ? huge : small;
                    bool pf = v.EndsWith("pf");
                    long t0 = Stopwatch.GetTimestamp();
                    for (long r = 0; r < rows; r += callRows)
                    {
                        if (pf)
                        {
                            nint wp = (nint)(w + r * K * 2), yp = (nint)(y + r);
                            int n = (int)Math.Min(callRows, rows - r);
                            Par.ForChunks(n, 64, (a, b) => PfRows((ushort*)wp, K, (float*)yp, (int)a, (int)b, x, dist));
                            continue;
                        }
                        var seg = new GemvSegment { W = w + r * K * 2, Ldw = K, Rows = (int)Math.Min(callRows, rows - r), Out = y + r };
                        GemvMulti.Run<BF16Elem>(K, x, &seg, 1);
                    }
                    if (rep > 0) gbs[v].Add(bytes / Stopwatch.GetElapsedTime(t0).TotalSeconds / 1e9);
                }
            Console.WriteLine($"gemv-pages threads={threads} call_mb={callMb} " +
                string.Join(" ", gbs.Select(kv => $"{kv.Key}_gbs={BandwidthBench.Median(kv.Value):F1} (best {kv.Value.Max():F1})")) +
                $" load={File.ReadAllText("/proc/loadavg").Split(' ')[0]}");
        }
    }
}
