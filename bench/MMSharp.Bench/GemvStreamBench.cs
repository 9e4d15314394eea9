using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using MMSharp.Engine;
using MMSharp.Engine.Kernels;

namespace MMSharp.Bench;

/// <summary>
/// How the order of weight reads affects an M = 1 bf16 GEMV streaming from DRAM (a weight far larger than the L3,
/// as in decoding): the same dot products as a 1×4 tile (four rows read interleaved, GemmSmallM's order) and one row
/// at a time (one sequential stream), beside a plain read of the same bytes. Weight GB/s per variant, alternating
/// in one run. Evidence for the GEMV owner; not a library kernel.
/// </summary>
static unsafe class GemvStreamBench
{
    public static void Run(Options opts)
    {
        int K = opts.Ints("k", [896])[0];
        long N = (512L << 20) / (2L * K);
        long bytes = N * K * 2;
        ushort* w = (ushort*)NativeMemory.AlignedAlloc((nuint)bytes, 2 << 20);
        HugePages.Advise((byte*)w, bytes);                             // as the weights are (WeightArena)
        float* a = (float*)NativeMemory.AlignedAlloc((nuint)K * 4, 64), c = (float*)NativeMemory.AlignedAlloc((nuint)N * 4, 64);
        try
        {
            for (long i = 0; i < bytes / 2; i++) w[i] = 0x3f80;
            for (int i = 0; i < K; i++) a[i] = 1f / K;
            foreach (int threads in opts.Ints("threads", [1, 2]))
            {
                Par.Threads = threads;
                var gbs = new Dictionary<string, List<double>> { ["tile1x4"] = [], ["row"] = [], ["read"] = [] };
                for (int rep = 0; rep < 6; rep++)
                    foreach (var v in gbs.Keys)
                    {
                        var sw = Stopwatch.StartNew();
                        nint wp = (nint)w, ap = (nint)a, cp = (nint)c;
                        Par.ForChunks(N / 4, 1024, (s, e) =>
                        {
                            for (long t = s; t < e; t++)
                            {
                                long j = 4 * t;
                                ushort* wj = (ushort*)wp + j * K;
                                if (v == "tile1x4") Tile1x4(K, (float*)ap, wj, K, (float*)cp + j);
                                else if (v == "row") for (int r = 0; r < 4; r++) ((float*)cp)[j + r] = Row(K, (float*)ap, wj + (long)r * K);
                                else ((float*)cp)[j] = Read(4 * K, wj);
                            }
                        });
                        if (rep > 0) gbs[v].Add(bytes / sw.Elapsed.TotalSeconds / 1e9);
                    }
                Console.WriteLine($"gemv-stream k={K} weight_mb={bytes >> 20} threads={threads} " +
                    string.Join(" ", gbs.Select(kv => $"{kv.Key}_gbs={BandwidthBench.Median(kv.Value):F1}")));
            }
        }
        finally { NativeMemory.AlignedFree(w); NativeMemory.AlignedFree(a); NativeMemory.AlignedFree(c); }
    }

    static Vector512<float> Widen(ushort* p) => Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512Int32(Vector256.Load(p)), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Tile1x4(int k, float* a, ushort* w, long ldw, float* c)
    {
        Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default;
        for (int p = 0; p + 16 <= k; p += 16)
        {
            var av = Vector512.Load(a + p);
            s0 = Avx512F.FusedMultiplyAdd(av, Widen(w + p), s0);
            s1 = Avx512F.FusedMultiplyAdd(av, Widen(w + ldw + p), s1);
            s2 = Avx512F.FusedMultiplyAdd(av, Widen(w + 2 * ldw + p), s2);
            s3 = Avx512F.FusedMultiplyAdd(av, Widen(w + 3 * ldw + p), s3);
        }
        c[0] = Vector512.Sum(s0); c[1] = Vector512.Sum(s1); c[2] = Vector512.Sum(s2); c[3] = Vector512.Sum(s3);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float Row(int k, float* a, ushort* w)
    {
        Vector512<float> s0 = default, s1 = default;
        int p = 0;
        for (; p + 32 <= k; p += 32)
        {
            s0 = Avx512F.FusedMultiplyAdd(Vector512.Load(a + p), Widen(w + p), s0);
            s1 = Avx512F.FusedMultiplyAdd(Vector512.Load(a + p + 16), Widen(w + p + 16), s1);
        }
        for (; p + 16 <= k; p += 16) s0 = Avx512F.FusedMultiplyAdd(Vector512.Load(a + p), Widen(w + p), s0);
        return Vector512.Sum(s0 + s1);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float Read(int n, ushort* w)
    {
        var acc = Vector512<float>.Zero;
        for (int i = 0; i + 32 <= n; i += 32) acc += Vector512.Load((float*)(w + i));
        return Vector512.Sum(acc);
    }
}
