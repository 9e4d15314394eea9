using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace MMSharp.Engine.Kernels;

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
    // the "next item" counter of a share phase: never below its total, so Claim goes to the shares
    const long SharePhase = long.MaxValue / 2;
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
        s[0] = SharePhase; s[1] = 0; s[2] = chunks; s[3] = at;
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

    /// <summary>The front chunk of <paramref name="member"/>'s share in phase <paramref name="p"/> (−1 for an item phase or
    /// an empty share).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public long ShareStart(int p, int member)
    {
        long* s = Phase(p);
        return s[0] == SharePhase ? WorkShare.Front(s + (member + 1) * Line) : -1;
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
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public long Unfinished(int p, long from)
    {
        long* s = Phase(p);
        int* f = _flags + s[3];
        for (long c = from; c < s[2]; c++)
            if (Volatile.Read(ref f[c]) == 0) return c;
        return -1;
    }

    public void Dispose()
    {
        NativeMemory.AlignedFree(_state);
        if (_flags != null) NativeMemory.AlignedFree(_flags);
        _flags = null;
    }
}
