using System.IO.MemoryMappedFiles;

namespace MMSharp.Engine.IO;

/// <summary>
/// A read-only memory mapping of a whole file, shared by every tensor read from it.
/// Each tensor's <see cref="Storage"/> names this object as its <see cref="Storage.Owner"/>, so the
/// mapping stays reachable (and mapped) while any such tensor is reachable.
/// <see cref="Release"/> (called when the reader is disposed) unmaps at once when no storage handed
/// out is still in use; otherwise the unmapping is left to the finalizers of the mapping handles,
/// which run only after the last storage became unreachable. Either way no live tensor ever sees
/// unmapped memory.
/// </summary>
internal sealed unsafe class MappedFile
{
    readonly MemoryMappedFile _mmf;
    readonly MemoryMappedViewAccessor _view;
    readonly List<WeakReference<Storage>> _handedOut = new();
    readonly Lock _lock = new();
    int _pruneAt = 64;

    public string Path { get; }
    public long Length { get; }
    public bool IsUnmapped { get; private set; }
    byte* _base;

    public MappedFile(string path, long expectedLength)
    {
        Path = path;
        var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.None);
        try
        {
            // The header was validated against this length; a file that changed since would make the offsets lie.
            if (fs.Length != expectedLength)
                throw new CheckpointFormatException(path, null, $"file changed size since its header was read ({expectedLength} -> {fs.Length} bytes)");
            _mmf = MemoryMappedFile.CreateFromFile(fs, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
        }
        catch
        {
            fs.Dispose();
            throw;
        }
        _view = _mmf.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        // DangerousGetHandle takes no reference: the handle is kept alive by this object, and this object by the storages.
        _base = (byte*)_view.SafeMemoryMappedViewHandle.DangerousGetHandle() + _view.PointerOffset;
        Length = expectedLength;
        // Before any page is touched: page-cache folios of 2 MiB (ext4 reads a cold file into large folios) are then
        // mapped whole, so decoding streams the weights through 2 MiB pages (HugePages); a file whose pages the cache
        // holds as small folios (e.g. written just now) still maps in 4 KiB pages.
        HugePages.Advise(_base, expectedLength);
    }

    /// <summary>A read-only storage over bytes [offset, offset + length) of the file.</summary>
    public Storage Slice(long offset, long length)
    {
        lock (_lock)
        {
            if (IsUnmapped) throw new ObjectDisposedException(Path, "the checkpoint reader was disposed");
            if (offset < 0 || length < 0 || offset + length > Length)
                throw new ArgumentOutOfRangeException(nameof(offset), $"{Path}: slice [{offset}, {offset + length}) outside the file");
            var s = new Storage(_base + offset, length, owner: this, readOnly: true);
            // Prune dead entries only when the list doubled: loading a model keeps thousands alive.
            if (_handedOut.Count >= _pruneAt)
            {
                _handedOut.RemoveAll(w => !w.TryGetTarget(out var t) || t.IsReleased);
                _pruneAt = Math.Max(64, 2 * _handedOut.Count);
            }
            _handedOut.Add(new WeakReference<Storage>(s));
            return s;
        }
    }

    /// <summary>Number of storages from this mapping still referenced by some tensor.</summary>
    public int LiveStorages
    {
        get
        {
            lock (_lock) return _handedOut.Count(w => w.TryGetTarget(out var t) && !t.IsReleased);
        }
    }

    /// <summary>Unmaps now if no storage is in use; otherwise leaves that to finalization (see the class remarks).</summary>
    public void Release()
    {
        lock (_lock)
        {
            if (IsUnmapped) return;
            if (_handedOut.Any(w => w.TryGetTarget(out var t) && !t.IsReleased)) return;
            IsUnmapped = true;
            _base = null;
            _view.Dispose();
            _mmf.Dispose();
        }
    }
}
