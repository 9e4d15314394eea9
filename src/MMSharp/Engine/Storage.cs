namespace MMSharp.Engine;

/// <summary>
/// A flat block of memory that tensors view. Either a pinned pooled array (owned), or a region of
/// a memory-mapped file (borrowed; the mapping is kept alive by <see cref="Owner"/>).
/// Reference counted: each tensor that views the storage holds one reference, autograd holds one
/// for each saved tensor. When the count reaches zero a pooled buffer goes back to
/// <see cref="BufferPool"/>. Storage that is simply dropped is reclaimed by the GC.
/// </summary>
public sealed unsafe class Storage
{
    readonly byte[]? _array;
    int _refs = 1;

    /// <summary>Aligned start of the data.</summary>
    public byte* Ptr { get; private set; }
    public long ByteLength { get; }
    /// <summary>Keeps a borrowed region (memory-mapped file) alive.</summary>
    public object? Owner { get; }
    public bool ReadOnly { get; }
    /// <summary>Bumped by every in-place write, so autograd can detect modified saved tensors.</summary>
    public int Version;

    Storage(byte[] array, long byteLength)
    {
        _array = array;
        fixed (byte* p = array) Ptr = p + BufferPool.AlignedOffset(array); // pinned array: address is stable
        ByteLength = byteLength;
    }

    /// <summary>Wraps external memory (e.g. a memory-mapped file view) without copying.</summary>
    public Storage(byte* ptr, long byteLength, object owner, bool readOnly)
    {
        Ptr = ptr;
        ByteLength = byteLength;
        Owner = owner;
        ReadOnly = readOnly;
    }

    /// <summary>Uninitialized storage of <paramref name="byteLength"/> bytes from the pool.</summary>
    public static Storage Allocate(long byteLength)
    {
        var arr = BufferPool.Rent(Math.Max(byteLength, 1));
        return new Storage(arr, byteLength);
    }

    public bool IsReleased => Volatile.Read(ref _refs) <= 0;

    /// <summary>Current number of references (1 means the holder is the only user and may write in place).</summary>
    public int RefCount => Volatile.Read(ref _refs);

    public void Retain()
    {
        if (Interlocked.Increment(ref _refs) <= 1)
            throw new ObjectDisposedException("Storage", "storage was used after it was released");
    }

    public void Release()
    {
        int left = Interlocked.Decrement(ref _refs);
        if (left == 0)
        {
            if (_array != null) BufferPool.Return(_array);
            Ptr = null;
        }
        else if (left < 0) throw new ObjectDisposedException("Storage", "storage released more times than retained");
    }
}
