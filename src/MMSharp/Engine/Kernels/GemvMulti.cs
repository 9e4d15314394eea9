using System.Runtime.CompilerServices;

namespace MMSharp.Engine.Kernels;

/// <summary>One weight of a <see cref="GemvMulti"/> call: out[j] = sum_p x[p] * W[j*Ldw + p] (+ bias[j]) for j &lt; Rows.</summary>
internal unsafe struct GemvSegment
{
    /// <summary>W[Rows, k] (fp32 or bf16 words as the call's element type), rows Ldw elements apart, unit stride along k.</summary>
    public void* W;
    public long Ldw;
    public int Rows;
    /// <summary>fp32 [Rows] or null.</summary>
    public float* Bias;
    /// <summary>fp32 [Rows].</summary>
    public float* Out;
}

/// <summary>
/// M = 1 products (decode steps): one weight (every <see cref="GemmSmallM"/> call with one row), or several that read
/// the same input vector (q/k/v, gate/up) in one parallel region instead of one fork/join each. The rows of all
/// weights are one list, cut into ~64 KiB chunks; each thread owns one contiguous share of chunks, so it reads one
/// sequential stream (the hardware prefetchers follow it), and a thread that runs out takes chunks from the back of
/// another's share (a late or descheduled worker's part is done by the others). Each output is
/// <see cref="GemmSmallM.Row1{TE}"/> (plus the bias) whichever thread computes it, so results are bit-identical to
/// the separate products and do not depend on the thread count. Weights are read in place (memory-mapped views stay
/// views).
/// </summary>
/// <remarks>
/// Measured on the InternVL3-1B decode weights, 2 threads (bench decode-gemv): on a quiet machine the earlier split
/// (4 work items per thread, claimed in order; <see cref="ItemsPerThread"/> = 4) was 5-8% slower; with another process
/// busy on one of the two cores it measured 10-30% faster than this one (not understood yet). A call costs ~5 µs
/// besides its streaming (the LM head cut into 400 calls drops from 63 to 43 GB/s), which is why the projections
/// that share an input are fused.
/// </remarks>
internal static unsafe class GemvMulti
{
    /// <summary>
    /// 0: each thread owns one contiguous share of the rows and, when done, takes chunks from the back of the others'
    /// shares (every thread reads one sequential stream, and a late or descheduled thread's work is taken over).
    /// n &gt; 0: n equal work items per thread claimed in order (the plain <see cref="Par.For"/> split), for comparison.
    /// </summary>
    internal static int ItemsPerThread = 0;

    /// <summary>Runs every segment of <paramref name="segs"/>[0..count) against x[0..k).</summary>
    internal static void Run<TE>(int k, float* x, GemvSegment* segs, int count) where TE : unmanaged, IGemmElem
    {
        long rows = 0;
        for (int s = 0; s < count; s++) rows += segs[s].Rows;
        if (rows == 0) return;
        int ahead = GemmSmallM.PrefetchBytes;                                    // read once per call, not per row
        nint xp = (nint)x, sp = (nint)segs;
        if (ItemsPerThread > 0)
        {
            // items of at least ~64K multiply-adds, in blocks of 8 rows
            long blocks = (rows + 7) / 8;
            long minBlocks = Math.Max(1, (1L << 16) / (8L * Math.Max(1, k)));
            int items = (int)Math.Clamp(blocks / minBlocks, 1, Math.Max(1, ItemsPerThread * Par.Threads));
            if (items == 1) { Range<TE>(k, x, segs, count, 0, rows, ahead); return; }
            Par.For(items, t =>
            {
                long r0 = Math.Min(rows, blocks * t / items * 8), r1 = Math.Min(rows, blocks * (t + 1) / items * 8);
                Range<TE>(k, (float*)xp, (GemvSegment*)sp, count, r0, r1, ahead);
            });
            return;
        }

        // chunks of ~64 KiB of weights (a multiple of 8 rows), split into one share of consecutive chunks per thread
        int chunkRows = ChunkRows(k, TE.Bytes);
        int chunks = (int)((rows + chunkRows - 1) / chunkRows);
        int shares = Math.Min(Par.Threads, chunks / 2);
        if (shares <= 1) { Range<TE>(k, x, segs, count, 0, rows, ahead); return; }
        // one [front, back) chunk range per share, packed in a long, each on its own cache line
        long* state = stackalloc long[shares * 8 + 8];
        state = (long*)(((nint)state + 63) & ~(nint)63);
        for (int s = 0; s < shares; s++) state[s * 8] = WorkShare.Pack((long)chunks * s / shares, (long)chunks * (s + 1) / shares);
        nint stp = (nint)state;
        Par.For(shares, s =>
        {
            long* st = (long*)stp;
            long c;
            while ((c = WorkShare.ClaimFront(st + s * 8)) >= 0) Chunk<TE>(k, (float*)xp, (GemvSegment*)sp, count, c, chunkRows, rows, ahead);
            for (int o = 1; o < shares; o++)
            {
                long* other = st + (s + o) % shares * 8;
                while ((c = WorkShare.ClaimBack(other)) >= 0) Chunk<TE>(k, (float*)xp, (GemvSegment*)sp, count, c, chunkRows, rows, ahead);
            }
        });
    }

    /// <summary>Rows of one chunk: ~<see cref="ChunkBytes"/> of weights, a multiple of 8 rows.</summary>
    internal static int ChunkRows(int k, int elemBytes) => (int)Math.Max(8, ChunkBytes / ((long)k * elemBytes) / 8 * 8);

    /// <summary>Weight bytes per chunk (benchmarks compare other sizes; results do not depend on it).</summary>
    internal static long ChunkBytes = 1L << 16;

    /// <summary>Chunk <paramref name="c"/>: rows [c·chunkRows, (c+1)·chunkRows) of the concatenated rows of segs[0..count), against
    /// x[0..k), each row prefetching <paramref name="ahead"/> bytes on (<see cref="GemmSmallM.PrefetchBytes"/>, read by the
    /// caller once: methods compiled once, fully optimised, must not read a static whose class may not be initialised yet).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Chunk<TE>(int k, float* x, GemvSegment* segs, int count, long c, int chunkRows, long rows, int ahead) where TE : unmanaged, IGemmElem =>
        Range<TE>(k, x, segs, count, c * chunkRows, Math.Min(rows, (c + 1) * chunkRows), ahead);

    /// <summary>Non-temporal prefetch of the first <paramref name="bytes"/> of chunk <paramref name="c"/>'s weights (its first
    /// rows, all in the segment the chunk starts in).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void PrefetchChunk<TE>(int k, GemvSegment* segs, int count, long c, int chunkRows, long bytes) where TE : unmanaged, IGemmElem
    {
        long r = c * chunkRows, start = 0;
        for (int s = 0; s < count; s++)
        {
            ref var g = ref segs[s];
            if (r < start + g.Rows)
            {
                long j = r - start, avail = (g.Rows - j) * g.Ldw * TE.Bytes;
                byte* w = (byte*)GemmPack.Offset<TE>(g.W, j * g.Ldw);
                for (long o = 0, n = Math.Min(bytes, avail); o < n; o += 64) System.Runtime.Intrinsics.X86.Sse.PrefetchNonTemporal(w + o);
                return;
            }
            start += g.Rows;
        }
    }

    /// <summary>Global rows [r0, r1) of the concatenated segments.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Range<TE>(int k, float* x, GemvSegment* segs, int count, long r0, long r1, int ahead) where TE : unmanaged, IGemmElem
    {
        long start = 0;
        for (int s = 0; s < count && start < r1; s++)
        {
            ref var g = ref segs[s];
            long end = start + g.Rows;
            long j0 = Math.Max(r0, start) - start, j1 = Math.Min(r1, end) - start;
            if (j0 < j1) Rows<TE>(k, x, g.W, g.Ldw, g.Bias, g.Out, (int)j0, (int)j1, ahead);
            start = end;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Rows<TE>(int k, float* x, void* w, long ldw, float* bias, float* y, int j0, int j1, int ahead) where TE : unmanaged, IGemmElem
    {
        // bias + 1·v in the unfused path (bias copied into y, then beta = 1) is v + bias: the same float
        if (bias != null)
            for (int j = j0; j < j1; j++) y[j] = GemmSmallM.Row1<TE>(k, x, GemmPack.Offset<TE>(w, j * ldw), ahead) + bias[j];
        else
            for (int j = j0; j < j1; j++) y[j] = GemmSmallM.Row1<TE>(k, x, GemmPack.Offset<TE>(w, j * ldw), ahead);
    }
}
