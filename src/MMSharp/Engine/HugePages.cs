using System.Runtime.InteropServices;

namespace MMSharp.Engine;

/// <summary>
/// Transparent huge pages for memory that is streamed whole and often, i.e. weights: <see cref="WeightArena"/> blocks
/// and memory-mapped checkpoints. Read through 4 KiB pages, a weight stream takes a TLB miss (a nested page walk in a
/// VM) every 4 KiB and the hardware prefetchers stop at each page boundary; decoding ran ~15% slower that way here
/// (README, generation benchmark). Other buffers (<see cref="BufferPool"/>) keep 4 KiB pages: a training step measured
/// no faster on huge pages, and the pool's size-class slack would become resident.
/// </summary>
public static unsafe class HugePages
{
    public const int Size = 2 << 20;
    const int MadvHugepage = 14;

    /// <summary>Whether <see cref="Advise"/> advises anything (Linux; on by default, <c>MMSHARP_HUGEPAGES=0</c> turns it off).</summary>
    public static bool Enabled { get; set; } = OperatingSystem.IsLinux() && Environment.GetEnvironmentVariable("MMSHARP_HUGEPAGES") != "0";

    [DllImport("libc", EntryPoint = "madvise")] static extern int MAdvise(nint addr, nuint length, int advice);

    /// <summary>madvise(MADV_HUGEPAGE) over the whole 2 MiB pages inside [start, start + length) when <see cref="Enabled"/>,
    /// before anything there is touched (the page size is chosen when a page is first mapped). Advice only: an error (a
    /// kernel without THP) changes nothing.</summary>
    public static void Advise(byte* start, long length)
    {
        if (!Enabled) return;
        nint first = ((nint)start + Size - 1) & ~(nint)(Size - 1), end = ((nint)start + (nint)length) & ~(nint)(Size - 1);
        if (end > first) MAdvise(first, (nuint)(end - first), MadvHugepage);
    }
}
