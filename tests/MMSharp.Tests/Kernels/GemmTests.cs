using System.Runtime.InteropServices;
using MMSharp.Engine;
using MMSharp.Engine.Kernels;

namespace MMSharp.Tests.Kernels;

/// <summary>The packed/blocked GEMM kernels against the naive reference, for every operand layout, SIMD path and edge size.</summary>
public sealed unsafe class GemmTests
{
    /// <summary>Memory for one operand: the logical [rows, cols] matrix stored row-major or transposed (column-major), in a padded buffer.</summary>
    sealed class Operand : IDisposable
    {
        public readonly float* F; public readonly ushort* H;
        public readonly long RowStride, ColStride;
        readonly int _count;

        public Operand(int rows, int cols, bool transposed, ulong seed, int pad = 3)
        {
            // a leading dimension larger than the dense one catches kernels that assume contiguity
            long ld = (transposed ? rows : cols) + pad;
            _count = (int)(ld * (transposed ? cols : rows)) + 16;
            F = (float*)NativeMemory.AlignedAlloc((nuint)(_count * 4), 64);
            H = (ushort*)NativeMemory.AlignedAlloc((nuint)(_count * 2), 64);
            var rng = new Rng(seed);
            for (int i = 0; i < _count; i++)
            {
                H[i] = Half16.FloatToBF16(rng.NextFloat() * 2 - 1);
                F[i] = rng.NextFloat() * 2 - 1;
            }
            (RowStride, ColStride) = transposed ? (1L, ld) : (ld, 1L);
        }

        public void Dispose() { NativeMemory.AlignedFree(F); NativeMemory.AlignedFree(H); }
    }

    static float[] Run(bool bf16, int m, int n, int k, Operand a, Operand b, float beta, float[] cInit, bool reference)
    {
        var c = (float[])cInit.Clone();
        fixed (float* cp = c)
        {
            if (reference)
            {
                if (bf16) GemmReference.SgemmBF16(m, n, k, a.F, a.RowStride, a.ColStride, b.H, b.RowStride, b.ColStride, cp, n + 1, beta);
                else GemmReference.Sgemm(m, n, k, a.F, a.RowStride, a.ColStride, b.F, b.RowStride, b.ColStride, cp, n + 1, beta);
            }
            else if (bf16) Gemm.SgemmBF16(m, n, k, a.F, a.RowStride, a.ColStride, b.H, b.RowStride, b.ColStride, cp, n + 1, beta);
            else Gemm.Sgemm(m, n, k, a.F, a.RowStride, a.ColStride, b.F, b.RowStride, b.ColStride, cp, n + 1, beta);
        }
        return c;
    }

    static float[] InitialC(int m, int n, float beta)
    {
        // ldc = n + 1: the padding column must stay untouched; with beta = 0 C starts as NaN (must not be read)
        var c = new float[m * (n + 1)];
        var rng = new Rng(77);
        for (int i = 0; i < c.Length; i++) c[i] = (i % (n + 1) == n) ? 12345f : beta == 0 ? float.NaN : rng.NextFloat();
        return c;
    }

    static void Check(Gemm.Path path, int m, int n, int k, bool aT, bool bT, bool bf16, float beta)
    {
        var saved = Gemm.ForcedPath;
        Gemm.ForcedPath = path;
        try
        {
            using var a = new Operand(m, k, aT, (ulong)(m * 31 + k));
            using var b = new Operand(k, n, bT, (ulong)(n * 17 + k));
            var c0 = InitialC(m, n, beta);
            var expected = Run(bf16, m, n, k, a, b, beta, c0, reference: true);
            var actual = Run(bf16, m, n, k, a, b, beta, c0, reference: false);
            double tol = 2e-6 * (k + 4);
            for (int i = 0; i < expected.Length; i++)
            {
                double diff = Math.Abs(expected[i] - actual[i]);
                if (!(diff <= tol))
                    Assert.Fail($"{path} m={m} n={n} k={k} aT={aT} bT={bT} bf16={bf16} beta={beta}: C[{i / (n + 1)}, {i % (n + 1)}] = {actual[i]}, reference {expected[i]}");
            }
        }
        finally { Gemm.ForcedPath = saved; }
    }

    public static IEnumerable<object[]> Shapes() =>
        new (int m, int n, int k)[]
        {
            (1, 1, 1), (1, 7, 17), (2, 33, 16), (3, 5, 40), (7, 17, 33), (14, 32, 16), (15, 33, 17), (16, 64, 48),
            (8, 48, 16), (9, 49, 130), (17, 50, 100), (29, 65, 200), (6 * 16 + 7, 97, 7), (100, 129, 385), (33, 1, 70), (1, 300, 257),
        }.Select(s => new object[] { s.m, s.n, s.k });

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Sgemm_MatchesReference_ForEveryLayoutAndPath(int m, int n, int k)
    {
        foreach (var path in new[] { Gemm.Path.Auto, Gemm.Path.Avx2, Gemm.Path.Scalar })
            foreach (bool aT in new[] { false, true })
                foreach (bool bT in new[] { false, true })
                    foreach (bool bf16 in new[] { false, true })
                        Check(path, m, n, k, aT, bT, bf16, beta: 0f);
    }

    [Theory]
    [InlineData(0.5f)]
    [InlineData(1f)]
    [InlineData(-2f)]
    public void Sgemm_AddsBetaTimesC(float beta)
    {
        foreach (var path in new[] { Gemm.Path.Auto, Gemm.Path.Avx2, Gemm.Path.Scalar })
            foreach (var (m, n, k) in new[] { (1, 40, 33), (9, 37, 300), (30, 70, 20) })
                foreach (bool bT in new[] { false, true })
                    foreach (bool bf16 in new[] { false, true })
                        Check(path, m, n, k, false, bT, bf16, beta);
    }

    /// <summary>Sizes that cross the cache blocks (KC, MC, NC) and the thread split, in each layout.</summary>
    [Theory]
    [InlineData(600, 45, 70)]
    [InlineData(70, 300, 450)]
    [InlineData(3, 8300, 20)]
    [InlineData(256, 129, 64)]
    [InlineData(40, 1000, 150)]
    [InlineData(300, 700, 400)]
    public void Sgemm_MatchesReference_AcrossCacheBlocks(int m, int n, int k)
    {
        foreach (bool aT in new[] { false, true })
            foreach (bool bT in new[] { false, true })
                Check(Gemm.Path.Auto, m, n, k, aT, bT, bf16: bT, beta: 0f);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(16)]
    [InlineData(200)]
    public void Sgemm_GivesIdenticalBits_RunToRun_ForOneAndTwoThreads(int m)
    {
        int n = 300, k = 517;
        using var a = new Operand(m, k, false, 5);
        using var b = new Operand(k, n, true, 6);
        var c0 = InitialC(m, n, 0f);
        int savedThreads = Par.Threads;
        try
        {
            foreach (int threads in new[] { 1, 2 })
            {
                Par.Threads = threads;
                foreach (bool bf16 in new[] { false, true })
                {
                    var first = Run(bf16, m, n, k, a, b, 0f, c0, false);
                    var second = Run(bf16, m, n, k, a, b, 0f, c0, false);
                    Assert.Equal(first, second);
                }
            }
        }
        finally { Par.Threads = savedThreads; }
    }

    /// <summary>Two threads cut C along n (40 x 1000), or along m where that balances the tiles better (64 x 400:
    /// 9 panels of 48 columns would leave one thread 5 of them); either way each element is the one-thread value.</summary>
    [Theory]
    [InlineData(64, 400, 300)]
    [InlineData(40, 1000, 150)]
    [InlineData(520, 896, 64)]
    public void Sgemm_GivesTheOneThreadBits_WithTwoThreads(int m, int n, int k)
    {
        using var a = new Operand(m, k, true, 7);
        using var b = new Operand(k, n, false, 8);
        var c0 = InitialC(m, n, 0f);
        int savedThreads = Par.Threads;
        try
        {
            Par.Threads = 1;
            var one = Run(false, m, n, k, a, b, 0f, c0, false);
            Par.Threads = 2;
            var two = Run(false, m, n, k, a, b, 0f, c0, false);
            Assert.Equal(one, two);
        }
        finally { Par.Threads = savedThreads; }
    }

    [Fact]
    public void Sgemm_WithZeroK_ScalesC()
    {
        var c = new float[] { 1, 2, 3, 4 };
        fixed (float* cp = c) Gemm.Sgemm(2, 2, 0, null, 0, 0, null, 0, 0, cp, 2, 0.5f);
        Assert.Equal(new float[] { 0.5f, 1, 1.5f, 2 }, c);
    }
}
