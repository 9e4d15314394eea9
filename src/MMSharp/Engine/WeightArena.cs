using System.Runtime.InteropServices;

namespace MMSharp.Engine;

/// <summary>
/// Memory for a model's weights, handed out from large blocks that are advised to be backed by transparent huge pages
/// (<see cref="BufferPool.HugePages"/>), so every weight, small ones included, is read through 2 MiB pages. Decoding
/// streams all weights once per token; through 4 KiB pages it runs ~10% slower here (see the README's generation
/// benchmark). A tensor from the arena keeps its block alive through <see cref="Storage.Owner"/>; a block goes back to
/// native memory when no tensor views it any more (its finalizer). Nothing is returned to <see cref="BufferPool"/>. Thread-safe.
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
            long rounded = (capacity + BufferPool.HugePage - 1) / BufferPool.HugePage * BufferPool.HugePage;
            Start = (byte*)NativeMemory.AlignedAlloc((nuint)rounded, BufferPool.HugePage);
            Capacity = rounded;
            GC.AddMemoryPressure(rounded);
            BufferPool.AdviseHugePages(Start, rounded);
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
        Ops.CopyInto(source, t);
        t.Name = source.Name;
        return t;
    }

    Storage Carve(long bytes)
    {
        long size = (bytes + BufferPool.Alignment - 1) / BufferPool.Alignment * BufferPool.Alignment;
        lock (_lock)
        {
            Block block;
            if (size > BlockBytes / 4) block = NewBlock(size);
            else
            {
                if (_current == null || _current.Capacity - _current.Used < size) _current = NewBlock(BlockBytes);
                block = _current;
            }
            byte* p = block.Start + block.Used;
            block.Used += size;
            AllocatedBytes += bytes;
            return new Storage(p, bytes, block, readOnly: false);
        }
    }

    static Block NewBlock(long capacity) => new(capacity);
}
