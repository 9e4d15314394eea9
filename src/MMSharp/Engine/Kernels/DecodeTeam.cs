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
}

/// <summary>
/// Shared state of one decode step run by a team of threads (one <see cref="Par.For"/> over the members for the whole
/// step instead of one fork/join per op). The step is a fixed sequence of phases; each phase is a set of work items
/// (chunks) that any member may claim, and a member enters phase p + 1 once every chunk of phase p is finished. A
/// member never waits for another member to arrive, only for claimed chunks to finish, so a member that starts late
/// finds the chunks taken and catches up without holding anyone back, and one member alone completes the step.
/// A chunk claimed by a member that the OS then deschedules would hold the phase for a whole time slice; the callers
/// make every chunk idempotent (it stores values that depend only on finished phases, into memory no other chunk of the
/// step writes), so a waiting member may run a chunk that is still unfinished itself (<see cref="Unfinished"/>): the
/// first to <see cref="Finish"/> it counts it, a late duplicate writes the same values again.
/// Two kinds of phases: item phases (chunks claimed in order) and share phases, whose chunks are split into one
/// contiguous share per member (a GEMV: one sequential weight stream per thread, which the hardware prefetchers follow),
/// a member that runs out taking chunks from the back of the others' shares, as <see cref="GemvMulti"/>.
/// GEMV chunks compute each output row as <see cref="GemmSmallM.Row1{TE}"/> (plus the bias), bit-identical to the
/// <see cref="Ops.Linear"/> / <see cref="GemvMulti"/> result, so results do not depend on which member ran a chunk.
/// </summary>
internal sealed unsafe class DecodeTeam : IDisposable
{
    // per phase: one line [next item, -, total, first flag], then one line per member: [share front | back << 32,
    // chunks this member finished] (each member writes its own line, so finishing a chunk moves no cache line between
    // cores; the others read it only while they wait at the end of the phase)
    const int Line = 8;
    readonly long* _state;
    int* _flags;
    long _flagCapacity, _flagCursor;

    public int Members { get; }

    /// <summary>How long a member whose phase has nothing left to claim waits for the others' chunks before running the
    /// unfinished ones itself (a member running normally finishes a 64 KiB chunk within a few µs; a descheduled one
    /// needs a time slice). Tests set 0 to make every wait duplicate work.</summary>
    internal static double RescueAfterMicroseconds = 30;

    public DecodeTeam(int phases, int members)
    {
        Members = members;
        _state = (long*)NativeMemory.AlignedAlloc((nuint)(phases * (members + 1) * Line * sizeof(long)), 64);
    }

    long* Phase(int p) => _state + (long)p * (Members + 1) * Line;

    /// <summary>Starts laying out a new step's phases (their finished-flags are allocated in order).</summary>
    public void BeginStep() => _flagCursor = 0;

    long TakeFlags(long n)
    {
        if (_flagCursor + n > _flagCapacity)
        {
            long cap = Math.Max(2 * _flagCapacity, _flagCursor + n);
            int* f = (int*)NativeMemory.AlignedAlloc((nuint)(cap * sizeof(int)), 64);
            if (_flags != null) NativeMemory.AlignedFree(_flags);
            _flags = f;
            _flagCapacity = cap;
            _flagCursor = 0;                                                     // the phases laid out so far are laid out again
            return -1;
        }
        long at = _flagCursor;
        new Span<int>(_flags + at, checked((int)n)).Clear();
        _flagCursor += n;
        return at;
    }

    /// <summary>Phase <paramref name="p"/> has <paramref name="items"/> chunks claimed in order. False when the flag
    /// storage had to grow: lay out the step again from <see cref="BeginStep"/>.</summary>
    public bool InitItems(int p, int items)
    {
        long at = TakeFlags(items);
        if (at < 0) return false;
        long* s = Phase(p);
        s[0] = 0; s[1] = 0; s[2] = items; s[3] = at;
        for (int m = 0; m < Members; m++) { s[(m + 1) * Line] = 0; s[(m + 1) * Line + 1] = 0; }
        return true;
    }

    /// <summary>Phase <paramref name="p"/> has <paramref name="chunks"/> chunks, one contiguous share per member.
    /// False when the flag storage had to grow (see <see cref="InitItems"/>).</summary>
    public bool InitShares(int p, long chunks)
    {
        long at = TakeFlags(chunks);
        if (at < 0) return false;
        long* s = Phase(p);
        s[0] = long.MaxValue / 2; s[1] = 0; s[2] = chunks; s[3] = at;
        for (int m = 0; m < Members; m++)
        {
            s[(m + 1) * Line] = WorkShare.Pack(chunks * m / Members, chunks * (m + 1) / Members);
            s[(m + 1) * Line + 1] = 0;
        }
        return true;
    }

    /// <summary>The next chunk for <paramref name="member"/>, −1 when none is left to claim: item phases in order;
    /// share phases the front of the member's own share, then the backs of the others'.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public long Claim(int p, int member)
    {
        long* s = Phase(p);
        long total = s[2];
        if (Volatile.Read(ref s[0]) < total)
        {
            long i = Interlocked.Increment(ref s[0]) - 1;
            return i < total ? i : -1;
        }
        long c = WorkShare.ClaimFront(s + (member + 1) * Line);
        if (c >= 0) return c;
        for (int o = 1; o < Members; o++)
            if ((c = WorkShare.ClaimBack(s + ((member + o) % Members + 1) * Line)) >= 0) return c;
        return -1;
    }

    /// <summary>Marks chunk <paramref name="c"/> of phase <paramref name="p"/> finished; true for the first caller
    /// (a duplicate run finishing second is not counted).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public bool Finish(int p, long c, int member)
    {
        long* s = Phase(p);
        if (Interlocked.CompareExchange(ref _flags[s[3] + c], 1, 0) != 0) return false;
        Interlocked.Increment(ref s[(member + 1) * Line + 1]);
        return true;
    }

    /// <summary>Whether every chunk of phase <paramref name="p"/> is finished.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public bool IsDone(int p)
    {
        long* s = Phase(p);
        long done = 0;
        for (int m = 0; m < Members; m++) done += Volatile.Read(ref s[(m + 1) * Line + 1]);
        return done >= s[2];
    }

    /// <summary>The first chunk ≥ <paramref name="from"/> of phase <paramref name="p"/> not finished yet, or −1.</summary>
    public long Unfinished(int p, long from)
    {
        long* s = Phase(p);
        int* f = _flags + s[3];
        for (long c = from; c < s[2]; c++)
            if (Volatile.Read(ref f[c]) == 0) return c;
        return -1;
    }

    /// <summary>Rows of one chunk of a GEMV phase: ~64 KiB of weights, a multiple of 8 rows (as <see cref="GemvMulti"/>).</summary>
    public static int ChunkRows(int k, int elemBytes) => (int)Math.Max(8, ChunkBytes / ((long)k * elemBytes) / 8 * 8);

    /// <summary>Weight bytes per chunk (benchmarks compare other sizes; results do not depend on it).</summary>
    internal static long ChunkBytes = 1L << 16;

    /// <summary>Chunk <paramref name="c"/> (rows [c·chunkRows, (c+1)·chunkRows) of the concatenated rows of segs[0..count)) against x[0..k).</summary>
    public static void GemvChunk<TE>(int k, float* x, TeamGemvSegment* segs, int count, long rows, int chunkRows, long c)
        where TE : unmanaged, IGemmElem =>
        Range<TE>(k, x, segs, count, c * chunkRows, Math.Min(rows, (c + 1) * chunkRows));

    /// <summary>Global rows [r0, r1) of the concatenated segments.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
        // the same float operations as Linear: the bias first, the products added to it (v + bias)
        if (bias != null)
            for (int j = j0; j < j1; j++) y[j] = GemmSmallM.Row1<TE>(k, x, GemmPack.Offset<TE>(w, j * ldw)) + bias[j];
        else
            for (int j = j0; j < j1; j++) y[j] = GemmSmallM.Row1<TE>(k, x, GemmPack.Offset<TE>(w, j * ldw));
    }

    public void Dispose()
    {
        NativeMemory.AlignedFree(_state);
        if (_flags != null) NativeMemory.AlignedFree(_flags);
        _flags = null;
    }
}
