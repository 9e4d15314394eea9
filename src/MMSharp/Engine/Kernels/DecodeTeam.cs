using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace MMSharp.Engine.Kernels;

/// <summary>One weight of a <see cref="DecodeTeam"/> GEMV phase: rows of W[Rows, k] against the phase's input vector.</summary>
internal unsafe struct TeamGemvSegment
{
    /// <summary>W[Rows, k] (fp32 or bf16 words), rows Ldw elements apart, unit stride along k.</summary>
    public void* W;
    public long Ldw;
    public int Rows;
    /// <summary>fp32 [Rows] or null: out[j] = dot + Bias[j].</summary>
    public float* Bias;
    /// <summary>fp32 [Rows].</summary>
    public float* Out;
    /// <summary>out[j] = out[j] + dot (a residual add fused into the product) instead of a store.</summary>
    public bool Accumulate;
}

/// <summary>
/// Shared state of one decode step run by a team of threads (one <see cref="Par.For"/> over the members for the whole
/// step instead of one fork/join per op). The step is a fixed sequence of phases; each phase is a set of work items
/// that any member may claim, and a member enters phase p + 1 once every item of phase p is done. A member never
/// waits for another member to arrive, only for claimed items to finish, so a member that starts late (or is
/// descheduled) finds the items taken and catches up without holding anyone back, and one member alone completes
/// the step. Every output is computed by the same function whichever member claims it, so results do not depend on
/// the thread count.
/// Two kinds of phases: item phases (items claimed in order) and GEMV phases, whose rows are cut into ~64 KiB chunks
/// split into one contiguous share per member (one sequential weight stream per thread, which the hardware
/// prefetchers follow), a member that runs out taking chunks from the back of the others' shares, as
/// <see cref="GemvMulti"/>. Each output row is <see cref="GemmSmallM.Row1{TE}"/> (plus the bias, or added to the
/// output), bit-identical to the <see cref="Ops.Linear"/> / <see cref="GemvMulti"/> result and the separate residual add.
/// </summary>
internal sealed unsafe class DecodeTeam : IDisposable
{
    // per phase: one line [next item, done count, total], then one line per member share [front | back << 32]
    const int Line = 8;
    readonly long* _state;
    readonly int _phases;

    public int Members { get; }

    public DecodeTeam(int phases, int members)
    {
        _phases = phases;
        Members = members;
        _state = (long*)NativeMemory.AlignedAlloc((nuint)(phases * (members + 1) * Line * sizeof(long)), 64);
    }

    long* Phase(int p) => _state + (long)p * (Members + 1) * Line;

    /// <summary>Phase <paramref name="p"/> has <paramref name="items"/> items claimed in order.</summary>
    public void InitItems(int p, int items)
    {
        long* s = Phase(p);
        s[0] = 0; s[1] = 0; s[2] = items;
    }

    /// <summary>Phase <paramref name="p"/> is a GEMV of <paramref name="chunks"/> chunks, one share per member.</summary>
    public void InitShares(int p, long chunks)
    {
        long* s = Phase(p);
        s[0] = 0; s[1] = 0; s[2] = chunks;
        for (int m = 0; m < Members; m++) s[(m + 1) * Line] = Pack(chunks * m / Members, chunks * (m + 1) / Members);
    }

    /// <summary>The next unclaimed item of an item phase, or −1.</summary>
    public int ClaimItem(int p)
    {
        long* s = Phase(p);
        if (Volatile.Read(ref s[0]) >= s[2]) return -1;
        long i = Interlocked.Increment(ref s[0]) - 1;
        return i < s[2] ? (int)i : -1;
    }

    /// <summary>Whether a GEMV phase still has unclaimed chunks (a late member skips its input preparation otherwise).</summary>
    public bool AnyChunkLeft(int p)
    {
        long* s = Phase(p);
        for (int m = 0; m < Members; m++)
        {
            long v = Volatile.Read(ref s[(m + 1) * Line]);
            if ((v & 0xFFFFFFFF) < v >> 32) return true;
        }
        return false;
    }

    /// <summary>The next chunk for <paramref name="member"/>: the front of its own share, then the backs of the others'; −1 when none is left.</summary>
    public long ClaimChunk(int p, int member)
    {
        long* s = Phase(p);
        long c = ClaimFront(s + (member + 1) * Line);
        if (c >= 0) return c;
        for (int o = 1; o < Members; o++)
            if ((c = ClaimBack(s + ((member + o) % Members + 1) * Line)) >= 0) return c;
        return -1;
    }

    /// <summary>Marks one item (or chunk) of phase <paramref name="p"/> done.</summary>
    public void Done(int p) => Interlocked.Increment(ref Phase(p)[1]);

    /// <summary>Benchmarks: 0 waits with <see cref="SpinWait.SpinOnce(int)"/> (yields the core after a few spins),
    /// 1 polls with <see cref="Thread.SpinWait"/> only (never yields), 2 yields at once between polls.</summary>
    internal static int WaitMode;

    /// <summary>Waits until every item of phase <paramref name="p"/> is done.</summary>
    public void Wait(int p)
    {
        long* s = Phase(p);
        if (Volatile.Read(ref s[1]) >= s[2]) return;
        if (WaitMode == 1)
        {
            while (Volatile.Read(ref s[1]) < s[2]) Thread.SpinWait(4);
            return;
        }
        if (WaitMode == 2)
        {
            while (Volatile.Read(ref s[1]) < s[2]) Thread.Yield();
            return;
        }
        var spin = new SpinWait();
        while (Volatile.Read(ref s[1]) < s[2]) spin.SpinOnce(-1);
    }

    static long Pack(long front, long back) => front | back << 32;

    static long ClaimFront(long* st)
    {
        while (true)
        {
            long v = Volatile.Read(ref *st);
            long f = v & 0xFFFFFFFF, b = v >> 32;
            if (f >= b) return -1;
            if (Interlocked.CompareExchange(ref *st, Pack(f + 1, b), v) == v) return f;
        }
    }

    static long ClaimBack(long* st)
    {
        while (true)
        {
            long v = Volatile.Read(ref *st);
            long f = v & 0xFFFFFFFF, b = v >> 32;
            if (f >= b) return -1;
            if (Interlocked.CompareExchange(ref *st, Pack(f, b - 1), v) == v) return b - 1;
        }
    }

    /// <summary>Rows of one chunk of a GEMV phase: ~64 KiB of weights, a multiple of 8 rows (as <see cref="GemvMulti"/>).</summary>
    public static int ChunkRows(int k, int elemBytes) => (int)Math.Max(8, (1L << 16) / ((long)k * elemBytes) / 8 * 8);

    /// <summary>
    /// Runs GEMV phase <paramref name="p"/> for <paramref name="member"/>: claims chunks of the concatenated rows of
    /// segs[0..count) until none is left, each against x[0..k).
    /// </summary>
    public void RunGemv<TE>(int p, int member, int k, float* x, TeamGemvSegment* segs, int count, long rows, int chunkRows)
        where TE : unmanaged, IGemmElem
    {
        long c;
        while ((c = ClaimChunk(p, member)) >= 0)
        {
            Range<TE>(k, x, segs, count, c * chunkRows, Math.Min(rows, (c + 1) * chunkRows));
            Done(p);
        }
    }

    /// <summary>Global rows [r0, r1) of the concatenated segments.</summary>
    static void Range<TE>(int k, float* x, TeamGemvSegment* segs, int count, long r0, long r1) where TE : unmanaged, IGemmElem
    {
        long start = 0;
        for (int s = 0; s < count && start < r1; s++)
        {
            ref var g = ref segs[s];
            long end = start + g.Rows;
            long j0 = Math.Max(r0, start) - start, j1 = Math.Min(r1, end) - start;
            if (j0 < j1) Rows<TE>(k, x, ref g, (int)j0, (int)j1);
            start = end;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void Rows<TE>(int k, float* x, ref TeamGemvSegment g, int j0, int j1) where TE : unmanaged, IGemmElem
    {
        void* w = g.W;
        long ldw = g.Ldw;
        float* y = g.Out, bias = g.Bias;
        // the same float operations as the unfused ops: Linear (bias first, products added: v + bias) and Add (x + v)
        if (g.Accumulate)
            for (int j = j0; j < j1; j++) y[j] = y[j] + GemmSmallM.Row1<TE>(k, x, GemmPack.Offset<TE>(w, j * ldw));
        else if (bias != null)
            for (int j = j0; j < j1; j++) y[j] = GemmSmallM.Row1<TE>(k, x, GemmPack.Offset<TE>(w, j * ldw)) + bias[j];
        else
            for (int j = j0; j < j1; j++) y[j] = GemmSmallM.Row1<TE>(k, x, GemmPack.Offset<TE>(w, j * ldw));
    }

    public void Dispose() => NativeMemory.AlignedFree(_state);
}
