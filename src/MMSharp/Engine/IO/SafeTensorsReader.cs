namespace MMSharp.Engine.IO;

/// <summary>
/// One <c>.safetensors</c> file. The constructor reads and validates only the header; the file is
/// memory-mapped on the first <see cref="Get"/>, and each tensor is a read-only view of the mapping
/// (no copy; pages are read by the OS when first touched).
/// </summary>
/// <remarks>
/// Disposing the reader unmaps the file unless tensors from it are still in use; those keep the
/// mapping alive (their <see cref="Storage.Owner"/>) and it is unmapped once they are gone.
/// A file modified or truncated by another process while mapped is outside this contract.
/// </remarks>
public sealed class SafeTensorsReader : ICheckpointReader
{
    readonly SafeTensorsFormat.Header _header;
    readonly Lock _lock = new();
    MappedFile? _mapped;
    bool _disposed;

    public string Path { get; }
    public string Source => Path;
    public IReadOnlyList<string> Names { get; }
    public IReadOnlyDictionary<string, string> Metadata => _header.Metadata;

    /// <summary>Opens <paramref name="path"/> and validates its header (see <see cref="CheckpointFormatException"/>).</summary>
    public SafeTensorsReader(string path)
    {
        Path = path;
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: safetensors file not found", path);
        _header = SafeTensorsFormat.ReadHeader(path);
        Names = _header.Entries.Select(e => e.Name).ToArray();
    }

    public bool Has(string name) => _header.ByName.ContainsKey(name);

    public TensorInfo Info(string name)
    {
        var e = Find(name);
        return new TensorInfo(e.Name, Path, e.DTypeName, (int[])e.Shape.Clone(), e.End - e.Begin) { Supported = e.DType };
    }

    /// <summary>True once the file is unmapped (after <see cref="Dispose"/> with no tensor from it left in use).</summary>
    public bool IsUnmapped => _mapped?.IsUnmapped ?? _disposed;

    /// <summary>Tensors from this file whose storage is still referenced.</summary>
    public int LiveTensors => _mapped?.LiveStorages ?? 0;

    /// <summary>Whether <paramref name="storage"/> is a view of this reader's mapping.</summary>
    public bool Owns(Storage storage) => _mapped != null && ReferenceEquals(storage.Owner, _mapped);

    /// <summary>
    /// The tensor <paramref name="name"/>: contiguous, read-only, named, viewing the mapped file.
    /// Use <c>Ops.Clone</c> (or <c>Ops.To</c>) for a writable copy.
    /// </summary>
    public Tensor Get(string name)
    {
        var e = Find(name);
        if (e.DType is not DType dtype) throw SafeTensorsFormat.Unsupported(Path, name, e.DTypeName);
        var shape = (int[])e.Shape.Clone();
        if (e.End == e.Begin)
        {
            var empty = Tensor.Empty(shape, dtype); // zero elements: nothing to map
            empty.Name = name;
            return empty;
        }
        var storage = Mapping().Slice(_header.DataStart + e.Begin, e.End - e.Begin);
        return new Tensor(storage, dtype, shape, Tensor.ContiguousStrides(shape), 0) { Name = name };
    }

    SafeTensorsFormat.Entry Find(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_header.ByName.TryGetValue(name, out var e)) return e;
        throw new KeyNotFoundException($"{Path}: no tensor named '{name}' (the file holds {Names.Count} tensors)");
    }

    MappedFile Mapping()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _mapped ??= new MappedFile(Path, _header.FileLength);
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            _mapped?.Release();
        }
    }

    public override string ToString() => $"safetensors '{Path}' ({Names.Count} tensors)";
}
