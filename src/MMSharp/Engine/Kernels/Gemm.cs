using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MMSharp.Engine.Kernels;

/// <summary>
/// General matrix multiply on fp32 activations: C[m, n] = sum_k A[m, k] * B[k, n] (+ beta * C).
/// Operands are given by pointer and (row, column) strides in elements, so transposed operands
/// need no copy. B may be BF16 (raw 16-bit words), widened on the fly while packing.
/// </summary>
/// <remarks>
/// Blocked as in BLIS/GotoBLAS: for each NC-wide slab of B and KC-deep slice of k, B is packed into
/// NR-column panels, then for each MC-tall block of A, A is packed into MR-row panels and the
/// micro-kernel (<see cref="GemmMicroKernels"/>) computes MR x NR tiles of C with the tile in registers
/// and the B micro-panel in L1. Threads own disjoint rectangles of C and run this whole loop nest on
/// them, so every C element is computed by one thread in a fixed k order: results do not depend on the
/// thread count. Weight-shaped B (W[n, k], as in y = x W^T) with at most <see cref="SmallMMax"/> rows of A
/// goes to <see cref="GemmSmallM"/> instead: no packing, W streamed once (at M = 16 it is as fast as the
/// packed path for fp32 W and ~15% faster for bf16 W; at M = 32 the packed path wins).
/// </remarks>
public static unsafe class Gemm
{
    /// <summary>Which micro-kernel family runs (tests force the AVX2 and scalar paths on an AVX-512 machine).</summary>
    internal enum Path { Auto, Avx512, Avx2, Scalar }

    internal static Path ForcedPath = Path.Auto;

    /// <summary>Largest M that takes the unpacked dot-product path when B is W[n, k].</summary>
    internal static int SmallMMax = 16;

    internal static Path ActivePath
    {
        get
        {
            if (ForcedPath != Path.Auto) return ForcedPath;
            if (Vector512.IsHardwareAccelerated && Avx512F.IsSupported) return Path.Avx512;
            if (Vector256.IsHardwareAccelerated && Fma.IsSupported) return Path.Avx2;
            return Path.Scalar;
        }
    }

    /// <summary>A micro-kernel and the cache blocking that suits it.</summary>
    readonly struct Kernel(int mr, int nr, int kc, int mc, int nc, delegate*<int, float*, float*, float*, long, float, void> run)
    {
        public readonly int MR = mr, NR = nr, KC = kc, MC = mc, NC = nc;
        public readonly delegate*<int, float*, float*, float*, long, float, void> Run = run;
    }

    // Zen 5: 48 KiB L1d, 1 MiB L2 per core. The KC x NR B micro-panel (48 KiB) is read from L1/L2 while MR x KC A
    // micro-panels stream from the MC x KC A block (512 KiB). First sweeps (KC 128..384, NC 768..8192, single
    // thread, CPU clock, forward shapes at M = 256) had KC = 128, NC = 768 marginally ahead; on the training
    // shapes of a Qwen2-0.5B layer at M = 512 (forward x·Wᵀ, dx = g·W, dW = gᵀ·x; bench train-layer --gemms 1)
    // KC = 256, NC = 1536 took ~5% less time in total (half the passes over the C block, which at M = 512
    // does not fit in L2), and the forward shapes at M = 256 / 1024 stayed within noise.
    static Kernel KernelFor(Path p) => p switch
    {
        Path.Avx512 => new Kernel(8, 48, 256, 512, 1536, &GemmMicroKernels.Avx512_8x48),
        Path.Avx2 => new Kernel(6, 16, 256, 6 * 40, 16 * 256, &GemmMicroKernels.Avx2_6x16),
        _ => new Kernel(4, 8, 256, 4 * 32, 8 * 256, &GemmMicroKernels.Scalar_4x8),
    };

    /// <summary>C = A·B + beta·C with fp32 B. A(i,k) = a[i*aRow + k*aCol]; B(k,j) = b[k*bRow + j*bCol]; C(i,j) = c[i*ldc + j].</summary>
    /// <remarks>beta = 0 never reads C (it may hold garbage or NaN).</remarks>
    public static void Sgemm(int m, int n, int k, float* a, long aRow, long aCol, float* b, long bRow, long bCol, float* c, long ldc, float beta = 0f)
        => Run<F32Elem>(m, n, k, a, aRow, aCol, b, bRow, bCol, c, ldc, beta);

    /// <summary>As <see cref="Sgemm"/> with B stored as BF16 words (widened exactly to fp32; products and sums in fp32).</summary>
    public static void SgemmBF16(int m, int n, int k, float* a, long aRow, long aCol, ushort* b, long bRow, long bCol, float* c, long ldc, float beta = 0f)
        => Run<BF16Elem>(m, n, k, a, aRow, aCol, b, bRow, bCol, c, ldc, beta);

    static void Run<TE>(int m, int n, int k, float* a, long aRow, long aCol, void* b, long bRow, long bCol, float* c, long ldc, float beta)
        where TE : unmanaged, IGemmElem
    {
        if (m <= 0 || n <= 0) return;
        if (k <= 0) { ScaleC(m, n, c, ldc, beta); return; }
        var path = ActivePath;

        if (path == Path.Avx512 && bRow == 1 && m <= SmallMMax && k >= 16)
        {
            long lda = aRow;
            if (aCol != 1)
            {
                // few rows: gather them into contiguous rows once
                float* s = PackBuffers.GetScratch((long)m * k);
                for (int i = 0; i < m; i++)
                    for (int p = 0; p < k; p++) s[(long)i * k + p] = a[i * aRow + p * aCol];
                a = s; lda = k;
            }
            GemmSmallM.Dot<TE>(m, n, k, a, lda, b, bCol, c, ldc, beta);
            return;
        }

        var ker = KernelFor(path);
        // Threads: only when each gets ~1M multiply-adds. C is cut into tM x tN rectangles of whole tiles: the cut
        // whose largest rectangle has the fewest MR x NR tiles, preferring cuts along n on a tie (each thread then
        // packs only its own B columns). n = 896 is 18⅔ panels of 48, so halving it along n leaves one thread 10
        // panels; with enough rows, halving m is 5% better balanced.
        long macs = (long)m * n * k;
        int threads = (int)Math.Clamp(macs >> 20, 1, Par.Threads);
        int panelsN = (n + ker.NR - 1) / ker.NR, panelsM = (m + ker.MR - 1) / ker.MR;
        int tN, tM;
        if (panelsN >= 4 * threads || panelsM < 2 * threads) { tN = Math.Min(threads, panelsN); tM = Math.Max(1, Math.Min(threads / tN, panelsM)); }
        else { tM = Math.Min(threads, panelsM); tN = Math.Max(1, Math.Min(threads / tM, panelsN)); }
        if (panelsM >= 4 * threads && (long)Ceil(panelsM, threads) * panelsN < (long)Ceil(panelsN, tN) * Ceil(panelsM, tM))
            (tM, tN) = (threads, 1);

        if (tM * tN == 1) { Blocked<TE>(ker, m, n, k, a, aRow, aCol, b, bRow, bCol, c, ldc, beta); return; }
        nint ap = (nint)a, bp = (nint)b, cp = (nint)c;
        Par.For(tM * tN, t =>
        {
            int ti = t / tN, tj = t % tN;
            int i0 = Split(panelsM, tM, ti) * ker.MR, i1 = Math.Min(m, Split(panelsM, tM, ti + 1) * ker.MR);
            int j0 = Split(panelsN, tN, tj) * ker.NR, j1 = Math.Min(n, Split(panelsN, tN, tj + 1) * ker.NR);
            if (i1 <= i0 || j1 <= j0) return;
            Blocked<TE>(ker, i1 - i0, j1 - j0, k, (float*)ap + i0 * aRow, aRow, aCol,
                GemmPack.Offset<TE>((void*)bp, j0 * bCol), bRow, bCol, (float*)cp + i0 * ldc + j0, ldc, beta);
        });
    }

    static int Ceil(int a, int b) => (a + b - 1) / b;

    static int Split(int panels, int parts, int index) => (int)((long)panels * index / parts);

    /// <summary>Single-threaded blocked GEMM over one rectangle of C.</summary>
    static void Blocked<TE>(in Kernel ker, int m, int n, int k, float* a, long aRow, long aCol, void* b, long bRow, long bCol, float* c, long ldc, float beta)
        where TE : unmanaged, IGemmElem
    {
        int MR = ker.MR, NR = ker.NR;
        // equal-sized blocks (a k of KC + 10 gives two halves, not KC and 10)
        int kc = BlockSize(k, ker.KC, 16);
        int mcMax = BlockSize(m, ker.MC, MR);
        int ncMax = BlockSize(n, ker.NC, NR);
        var buf = PackBuffers.Get(RoundUp(ncMax, NR) * (long)kc, RoundUp(mcMax, MR) * (long)kc, MR * NR);
        float* tile = buf.Tile;
        for (int jc = 0; jc < n; jc += ncMax)
        {
            int nc = Math.Min(ncMax, n - jc);
            for (int pc = 0; pc < k; pc += kc)
            {
                int kcur = Math.Min(kc, k - pc);
                float betaK = pc == 0 ? beta : 1f;
                GemmPack.PackB<TE>(kcur, nc, GemmPack.Offset<TE>(b, pc * bRow + jc * bCol), bRow, bCol, NR, buf.B);
                for (int ic = 0; ic < m; ic += mcMax)
                {
                    int mc = Math.Min(mcMax, m - ic);
                    GemmPack.PackA(mc, kcur, a + ic * aRow + pc * aCol, aRow, aCol, MR, buf.A);
                    for (int jr = 0; jr < nc; jr += NR)
                    {
                        int nr = Math.Min(NR, nc - jr);
                        float* bPanel = buf.B + (long)jr * kcur;
                        for (int ir = 0; ir < mc; ir += MR)
                        {
                            int mr = Math.Min(MR, mc - ir);
                            float* aPanel = buf.A + (long)ir * kcur;
                            float* cTile = c + (ic + ir) * ldc + jc + jr;
                            if (mr == MR && nr == NR)
                            {
                                PrefetchTile(cTile, ldc, MR, NR);
                                ker.Run(kcur, aPanel, bPanel, cTile, ldc, betaK);
                            }
                            else
                            {
                                ker.Run(kcur, aPanel, bPanel, tile, NR, 0f);
                                MergeTile(tile, NR, cTile, ldc, mr, nr, betaK);
                            }
                        }
                    }
                }
            }
        }
    }

    /// <summary>
    /// Starts loading a C tile that the micro-kernel will read and write only after its k loop. With large M
    /// the C block (M x NC) falls out of L2, and without this each tile update stalls on ~24 cache misses.
    /// </summary>
    static void PrefetchTile(float* c, long ldc, int rows, int cols)
    {
        if (!Sse.IsSupported) return;
        for (int i = 0; i < rows; i++)
        {
            float* row = c + i * ldc;
            for (int j = 0; j < cols; j += 16) Sse.Prefetch0(row + j);
            Sse.Prefetch0(row + cols - 1);
        }
    }

    static int RoundUp(int x, int m) => (x + m - 1) / m * m;

    static int BlockSize(int total, int max, int multiple)
    {
        int blocks = (total + max - 1) / max;
        return Math.Min(RoundUp((total + blocks - 1) / blocks, multiple), RoundUp(max, multiple));
    }

    static void MergeTile(float* tile, int ldt, float* c, long ldc, int rows, int cols, float beta)
    {
        for (int i = 0; i < rows; i++)
        {
            float* t = tile + i * ldt, d = c + i * ldc;
            if (beta == 0f) for (int j = 0; j < cols; j++) d[j] = t[j];
            else if (beta == 1f) for (int j = 0; j < cols; j++) d[j] += t[j];
            else for (int j = 0; j < cols; j++) d[j] = MathF.FusedMultiplyAdd(beta, d[j], t[j]);
        }
    }

    static void ScaleC(int m, int n, float* c, long ldc, float beta)
    {
        for (int i = 0; i < m; i++)
        {
            var row = new Span<float>(c + i * ldc, n);
            if (beta == 0f) row.Clear();
            else if (beta != 1f) System.Numerics.Tensors.TensorPrimitives.Multiply(row, beta, row);
        }
    }

    /// <summary>
    /// Per-thread packing memory, grown on demand and reused (no allocation in steady state). Freed by
    /// the finalizer when its thread is gone.
    /// </summary>
    sealed class PackBuffers
    {
        [ThreadStatic] static PackBuffers? _current;

        public float* A, B, Tile, Scratch;
        long _aCap, _bCap, _tileCap, _scratchCap;

        public static PackBuffers Get(long bFloats, long aFloats, long tileFloats)
        {
            var p = _current ??= new PackBuffers();
            Ensure(ref p.B, ref p._bCap, bFloats + GemmPack.Slack);
            Ensure(ref p.A, ref p._aCap, aFloats + GemmPack.Slack);
            Ensure(ref p.Tile, ref p._tileCap, tileFloats);
            return p;
        }

        /// <summary>A scratch area of at least <paramref name="floats"/> for the calling thread.</summary>
        public static float* GetScratch(long floats)
        {
            var p = _current ??= new PackBuffers();
            Ensure(ref p.Scratch, ref p._scratchCap, floats);
            return p.Scratch;
        }

        static void Ensure(ref float* ptr, ref long cap, long need)
        {
            if (cap >= need) return;
            if (ptr != null) NativeMemory.AlignedFree(ptr);
            long n = Math.Max(need, cap * 3 / 2);
            ptr = (float*)NativeMemory.AlignedAlloc((nuint)(n * sizeof(float)), 64);
            cap = n;
        }

        ~PackBuffers()
        {
            if (A != null) NativeMemory.AlignedFree(A);
            if (B != null) NativeMemory.AlignedFree(B);
            if (Tile != null) NativeMemory.AlignedFree(Tile);
            if (Scratch != null) NativeMemory.AlignedFree(Scratch);
        }
    }
}
