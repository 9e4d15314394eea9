using System.Numerics;
using System.Runtime.CompilerServices;

namespace MMSharp.Engine;

/// <summary>
/// Pool of pinned, 64-byte aligned byte buffers grouped by size class (powers of two with four
/// sub-steps, so at most 25% slack). First touch of fresh memory is expensive on the target
/// machines (~10 µs per 4 KiB page), so tensors that are disposed hand their buffer back here and
/// a steady-state step reuses already-faulted memory instead of asking the GC for new arrays.
/// </summary>
public static class BufferPool
{
    public const int Alignment = 64;
    const int MinClassBytes = 256;

    static readonly object Gate = new();
    static readonly Dictionary<long, Stack<byte[]>> Free = new();
    static long _pooledBytes;

    /// <summary>Upper bound on bytes kept idle in the pool; beyond it returned buffers go to the GC.</summary>
    public static long MaxPooledBytes { get; set; } = 8L << 30;

    /// <summary>Bytes currently idle in the pool.</summary>
    public static long PooledBytes { get { lock (Gate) return _pooledBytes; } }

    /// <summary>Number of arrays obtained from the GC so far (a steady-state loop should stop increasing it).</summary>
    public static long FreshAllocations;

    /// <summary>Rounds a request up to its size class.</summary>
    public static long SizeClass(long bytes)
    {
        if (bytes <= MinClassBytes) return MinClassBytes;
        int log = 63 - BitOperations.LeadingZeroCount((ulong)(bytes - 1));
        long pow = 1L << log;               // pow < bytes <= 2 pow
        long step = pow / 4;
        return pow + (bytes - pow + step - 1) / step * step;
    }

    /// <summary>Rents an array whose data, at <see cref="AlignedOffset"/>, holds at least <paramref name="bytes"/> bytes.</summary>
    public static byte[] Rent(long bytes)
    {
        long cls = SizeClass(bytes);
        lock (Gate)
        {
            if (Free.TryGetValue(cls, out var stack) && stack.Count > 0)
            {
                _pooledBytes -= cls;
                return stack.Pop();
            }
        }
        Interlocked.Increment(ref FreshAllocations);
        long total = cls + Alignment;
        if (total > Array.MaxLength) throw new OutOfMemoryException($"tensor of {bytes} bytes is larger than one buffer can hold");
        return GC.AllocateUninitializedArray<byte>((int)total, pinned: true);
    }

    public static void Return(byte[] array)
    {
        long cls = array.LongLength - Alignment;
        lock (Gate)
        {
            if (_pooledBytes + cls > MaxPooledBytes) return;
            if (!Free.TryGetValue(cls, out var stack)) Free[cls] = stack = new Stack<byte[]>();
            stack.Push(array);
            _pooledBytes += cls;
        }
    }

    /// <summary>Drops every idle buffer (they become garbage).</summary>
    public static void Trim()
    {
        lock (Gate) { Free.Clear(); _pooledBytes = 0; }
    }

    /// <summary>Byte offset inside a pinned array at which 64-byte aligned data starts.</summary>
    public static unsafe int AlignedOffset(byte[] array)
    {
        nint addr = (nint)Unsafe.AsPointer(ref array[0]);
        return (int)((Alignment - (addr & (Alignment - 1))) & (Alignment - 1));
    }
}
