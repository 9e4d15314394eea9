namespace MMSharp.Engine.Kernels;

/// <summary>
/// A contiguous share of work chunks [front, back) packed into one 64-bit word (front | back &lt;&lt; 32): its owner claims
/// chunks from the front, a thread that ran out of work steals from the back, each with one compare-exchange, so the two
/// meet without a lock and every chunk is claimed once.
/// </summary>
internal static unsafe class WorkShare
{
    /// <summary>The word of the share [front, back).</summary>
    public static long Pack(long front, long back) => front | back << 32;

    /// <summary>The first unclaimed chunk of the share at <paramref name="st"/> without claiming it, −1 when it is empty.</summary>
    public static long Front(long* st)
    {
        long v = Volatile.Read(ref *st);
        long f = v & 0xFFFFFFFF, b = v >> 32;
        return f < b ? f : -1;
    }

    /// <summary>Claims the first unclaimed chunk of the share at <paramref name="st"/>, −1 when it is empty.</summary>
    public static long ClaimFront(long* st)
    {
        while (true)
        {
            long v = Volatile.Read(ref *st);
            long f = v & 0xFFFFFFFF, b = v >> 32;
            if (f >= b) return -1;
            if (Interlocked.CompareExchange(ref *st, Pack(f + 1, b), v) == v) return f;
        }
    }

    /// <summary>Claims the last unclaimed chunk of the share at <paramref name="st"/>, −1 when it is empty.</summary>
    public static long ClaimBack(long* st)
    {
        while (true)
        {
            long v = Volatile.Read(ref *st);
            long f = v & 0xFFFFFFFF, b = v >> 32;
            if (f >= b) return -1;
            if (Interlocked.CompareExchange(ref *st, Pack(f, b - 1), v) == v) return b - 1;
        }
    }
}
