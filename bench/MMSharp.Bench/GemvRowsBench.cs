using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using MMSharp.Engine.Kernels;

namespace MMSharp.Bench;

/// <summary>
/// Single-thread weight GB/s of the M = 1 bf16 row kernel over a 512 MiB weight [N, --k] (DRAM-resident): one row at a
/// time (<see cref="GemmSmallM.Row1{TE}"/>, the decode kernel) against two rows per pass sharing the x loads (the same
/// per-row accumulation order, so the same floats), alternated per repetition.
/// </summary>
static unsafe class GemvRowsBench
{
    public static void Run(Options opts)
    {
        foreach (int K in opts.Ints("k", [4864, 896]))
        {
            const long bytes = 512L << 20;
            long N = bytes / (2L * K) / 2 * 2;
            ushort* w = (ushort*)NativeMemory.AlignedAlloc((nuint)bytes, 4096);
            float* x = (float*)NativeMemory.AlignedAlloc((nuint)K * 4, 64), y = (float*)NativeMemory.AlignedAlloc((nuint)N * 4, 64), y2 = (float*)NativeMemory.AlignedAlloc((nuint)N * 4, 64);
            var rng = new Random(1);
            for (long i = 0; i < bytes / 2; i++) w[i] = (ushort)(0x3c00 + (i * 7919 % 255));
            for (int i = 0; i < K; i++) x[i] = (float)rng.NextDouble();
            int dist = opts.Ints("dist", [2048])[0];
            var gbs = new Dictionary<string, List<double>> { ["row1"] = [], ["row2"] = [], ["nta"] = [], ["t0"] = [] };
            for (int rep = 0; rep < 7; rep++)
                foreach (var v in gbs.Keys)
                {
                    long t0 = Stopwatch.GetTimestamp();
                    if (v == "row1") for (long j = 0; j < N; j++) y[j] = GemmSmallM.Row1<BF16Elem>(K, x, w + j * K, 0);
                    else if (v == "row2") for (long j = 0; j < N; j += 2) Row2(K, x, w + j * K, K, y2 + j);
                    else if (v == "nta") for (long j = 0; j < N; j++) y2[j] = RowPf(K, x, w + j * K, dist, true);
                    else for (long j = 0; j < N; j++) y2[j] = RowPf(K, x, w + j * K, dist, false);
                    if (rep > 0) gbs[v].Add(bytes / Stopwatch.GetElapsedTime(t0).TotalSeconds / 1e9);
                }
            bool same = new ReadOnlySpan<float>(y, (int)N).SequenceEqual(new ReadOnlySpan<float>(y2, (int)N));
            Console.WriteLine($"gemv-rows k={K} " + string.Join(" ", gbs.Select(kv => $"{kv.Key}_gbs={BandwidthBench.Median(kv.Value):F1} (best {kv.Value.Max():F1})")) +
                $" identical={same} load={File.ReadAllText("/proc/loadavg").Split(' ')[0]}");
            NativeMemory.AlignedFree(w); NativeMemory.AlignedFree(x); NativeMemory.AlignedFree(y); NativeMemory.AlignedFree(y2);
        }
    }

    static Vector512<float> L(ushort* p) => Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512UInt32(Vector256.Load(p)), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static float RowPf(int k, float* a, ushort* w, int dist, bool nta)
    {
        Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default;
        int p = 0;
        byte* pf = (byte*)w + dist;
        for (; p + 64 <= k; p += 64)
        {
            if (nta) { Sse.PrefetchNonTemporal(pf + 2 * p); Sse.PrefetchNonTemporal(pf + 2 * p + 64); }
            else { Sse.Prefetch0(pf + 2 * p); Sse.Prefetch0(pf + 2 * p + 64); }
            s0 = Avx512F.FusedMultiplyAdd(Vector512.Load(a + p), L(w + p), s0);
            s1 = Avx512F.FusedMultiplyAdd(Vector512.Load(a + p + 16), L(w + p + 16), s1);
            s2 = Avx512F.FusedMultiplyAdd(Vector512.Load(a + p + 32), L(w + p + 32), s2);
            s3 = Avx512F.FusedMultiplyAdd(Vector512.Load(a + p + 48), L(w + p + 48), s3);
        }
        for (; p + 16 <= k; p += 16) s0 = Avx512F.FusedMultiplyAdd(Vector512.Load(a + p), L(w + p), s0);
        float r = Vector512.Sum((s0 + s1) + (s2 + s3));
        for (; p < k; p++) r += a[p] * BitConverter.Int32BitsToSingle(w[p] << 16);
        return r;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Row2(int k, float* a, ushort* w, long ldw, float* y)
    {
        ushort* v = w + ldw;
        Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default, t0 = default, t1 = default, t2 = default, t3 = default;
        int p = 0;
        for (; p + 64 <= k; p += 64)
        {
            var x0 = Vector512.Load(a + p); var x1 = Vector512.Load(a + p + 16); var x2 = Vector512.Load(a + p + 32); var x3 = Vector512.Load(a + p + 48);
            s0 = Avx512F.FusedMultiplyAdd(x0, L(w + p), s0); t0 = Avx512F.FusedMultiplyAdd(x0, L(v + p), t0);
            s1 = Avx512F.FusedMultiplyAdd(x1, L(w + p + 16), s1); t1 = Avx512F.FusedMultiplyAdd(x1, L(v + p + 16), t1);
            s2 = Avx512F.FusedMultiplyAdd(x2, L(w + p + 32), s2); t2 = Avx512F.FusedMultiplyAdd(x2, L(v + p + 32), t2);
            s3 = Avx512F.FusedMultiplyAdd(x3, L(w + p + 48), s3); t3 = Avx512F.FusedMultiplyAdd(x3, L(v + p + 48), t3);
        }
        for (; p + 16 <= k; p += 16)
        {
            var x0 = Vector512.Load(a + p);
            s0 = Avx512F.FusedMultiplyAdd(x0, L(w + p), s0); t0 = Avx512F.FusedMultiplyAdd(x0, L(v + p), t0);
        }
        float r = Vector512.Sum((s0 + s1) + (s2 + s3)), q = Vector512.Sum((t0 + t1) + (t2 + t3));
        for (; p < k; p++) { r += a[p] * BitConverter.Int32BitsToSingle(w[p] << 16); q += a[p] * BitConverter.Int32BitsToSingle(v[p] << 16); }
        y[0] = r; y[1] = q;
    }
}
