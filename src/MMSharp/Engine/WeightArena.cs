using System.Runtime.InteropServices;

namespace MMSharp.Engine;

/// <summary>
/// Memory for a model's weights, handed out from large blocks that are advised to be backed by transparent huge pages
/// (<see cref="HugePages"/>), so every weight, small ones included, is read through 2 MiB pages. A tensor from
/// the arena keeps its block alive through <see cref="Storage.Owner"/>; a block's native memory is freed by its
/// finalizer once no tensor views it. Nothing is returned to <see cref="BufferPool"/>. Thread-safe.
/// </summary>
public sealed unsafe class WeightArena
{
    /// <summary>Size of a shared block; a tensor of more than a quarter of it gets a block of its own.</summary>
    const long BlockBytes = 64L << 20;

    readonly Lock _lock = new();
    Block? _current;

    /// <summary>Native memory, 2 MiB aligned so that all of it can be huge pages; freed by the finalizer once no storage
    /// names the block as its owner.</summary>
    sealed class Block
    {
        public readonly byte* Start;
        public readonly long Capacity;
        public long Used;

        public Block(long capacity)
        {
            long rounded = (capacity + HugePages.Size - 1) / HugePages.Size * HugePages.Size;
            Start = (byte*)NativeMemory.AlignedAlloc((nuint)rounded, HugePages.Size);
            Capacity = rounded;
            GC.AddMemoryPressure(rounded);
            HugePages.Advise(Start, rounded);
        }

        ~Block()
        {
            NativeMemory.AlignedFree(Start);
            GC.RemoveMemoryPressure(Capacity);
        }
    }

    /// <summary>Bytes handed out so far.</summary>
    public long AllocatedBytes { get; private set; }

    /// <summary>An uninitialised contiguous tensor in the arena.</summary>
    public Tensor Empty(int[] shape, DType dtype)
    {
        var s = (int[])shape.Clone();
        long bytes = Math.Max(1, Tensor.Product(s) * dtype.SizeOf());
        return new Tensor(Carve(bytes), dtype, s, Tensor.ContiguousStrides(s), 0);
    }

    /// <summary>A contiguous copy of <paramref name="source"/> in the arena, in its dtype (e.g. a memory-mapped
    /// checkpoint tensor brought into process memory).</summary>
    public Tensor Copy(Tensor source)
    {
        var t = Empty(source.Shape, source.DType);
        if (source.IsContiguous)
        {
            // a checkpoint tensor: a plain byte copy, on every thread (the first touch of the new pages is half the cost)
            nint src = (nint)source.DataPtr, dst = (nint)t.DataPtr;
            Kernels.Par.ForChunks(source.NumEl * source.DType.SizeOf(), 1 << 20,
                (a, b) => Buffer.MemoryCopy((byte*)src + a, (byte*)dst + a, b - a, b - a));
        }
        else Ops.CopyInto(source, t);
        t.Name = source.Name;
        return t;
    }

    Storage Carve(long bytes)
    {
        long size = (bytes + BufferPool.Alignment - 1) / BufferPool.Alignment * BufferPool.Alignment;
        lock (_lock)
        {
            Block block;
            if (size > BlockBytes / 4) block = new Block(size);
            else
            {
                if (_current == null || _current.Capacity - _current.Used < size) _current = new Block(BlockBytes);
                block = _current;
            }
            byte* p = block.Start + block.Used;
            block.Used += size;
            AllocatedBytes += bytes;
            return new Storage(p, bytes, block, readOnly: false);
        }
    }
}
