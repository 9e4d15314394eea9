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
/// Several M = 1 products that read the same input vector (q/k/v projections, gate/up projections of a decode step)
/// in one parallel region instead of one fork/join each. The rows of all weights are treated as one list and cut
/// into contiguous pieces of equal bytes; each output is <see cref="GemmSmallM.Row1{TE}"/> (plus the bias) exactly
/// as a separate <see cref="GemmSmallM"/> call computes it, so the results are bit-identical to the unfused path
/// and do not depend on the thread count. Weights are read in place (memory-mapped views stay views).
/// </summary>
internal static unsafe class GemvMulti
{
    /// <summary>Work items per thread (a descheduled thread on a busy machine then holds up only a small share).</summary>
    internal static int ItemsPerThread = 4;

    /// <summary>Runs every segment of <paramref name="segs"/>[0..count) against x[0..k).</summary>
    internal static void Run<TE>(int k, float* x, GemvSegment* segs, int count) where TE : unmanaged, IGemmElem
    {
        long rows = 0;
        for (int s = 0; s < count; s++) rows += segs[s].Rows;
        if (rows == 0) return;
        // items of at least ~64K multiply-adds, in blocks of 8 rows, so the cut does not depend on the thread count
        long blocks = (rows + 7) / 8;
        long minBlocks = Math.Max(1, (1L << 16) / (8L * Math.Max(1, k)));
        int items = (int)Math.Clamp(blocks / minBlocks, 1, Math.Max(1, ItemsPerThread * Par.Threads));
        if (items == 1) { Range<TE>(k, x, segs, count, 0, rows); return; }
        nint xp = (nint)x, sp = (nint)segs;
        Par.For(items, t =>
        {
            long r0 = Math.Min(rows, blocks * t / items * 8), r1 = Math.Min(rows, blocks * (t + 1) / items * 8);
            Range<TE>(k, (float*)xp, (GemvSegment*)sp, count, r0, r1);
        });
    }

    /// <summary>Global rows [r0, r1) of the concatenated segments.</summary>
    static void Range<TE>(int k, float* x, GemvSegment* segs, int count, long r0, long r1) where TE : unmanaged, IGemmElem
    {
        long start = 0;
        for (int s = 0; s < count && start < r1; s++)
        {
            ref var g = ref segs[s];
            long end = start + g.Rows;
            long j0 = Math.Max(r0, start) - start, j1 = Math.Min(r1, end) - start;
            if (j0 < j1) Rows<TE>(k, x, g.W, g.Ldw, g.Bias, g.Out, (int)j0, (int)j1);
            start = end;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Rows<TE>(int k, float* x, void* w, long ldw, float* bias, float* y, int j0, int j1) where TE : unmanaged, IGemmElem
    {
        // bias + 1·v in the unfused path (bias copied into y, then beta = 1) is v + bias: the same float
        if (bias != null)
            for (int j = j0; j < j1; j++) y[j] = GemmSmallM.Row1<TE>(k, x, GemmPack.Offset<TE>(w, j * ldw)) + bias[j];
        else
            for (int j = j0; j < j1; j++) y[j] = GemmSmallM.Row1<TE>(k, x, GemmPack.Offset<TE>(w, j * ldw));
    }
}
