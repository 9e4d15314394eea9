namespace MMSharp.Engine.IO;

/// <summary>
/// Header facts about one stored tensor, known without touching its data.
/// <see cref="DTypeName"/> is the safetensors spelling; <see cref="DType"/> throws for the
/// dtypes MMSharp cannot hold (F64, I8, F8_*, ...), naming the file and tensor.
/// </summary>
public sealed record TensorInfo(string Name, string File, string DTypeName, int[] Shape, long ByteLength)
{
    internal DType? Supported { get; init; }

    public bool IsSupported => Supported.HasValue;

    public DType DType => Supported ?? throw SafeTensorsFormat.Unsupported(File, Name, DTypeName);

    public long NumEl => Tensor.Product(Shape);

    public override string ToString() => $"{Name} {DTypeName}{Tensor.ShapeString(Shape)}";
}

/// <summary>
/// Read access to a set of named tensors on disk (one safetensors file, a sharded checkpoint, ...).
/// <see cref="Info"/> reads only headers; <see cref="Get"/> maps the data lazily, without copying.
/// Tensors returned by <see cref="Get"/> are read-only, owned by the caller, and keep their file
/// mapping alive after the reader is disposed.
/// </summary>
public interface ICheckpointReader : IDisposable
{
    /// <summary>Where the tensors come from (file, index or directory), for messages.</summary>
    string Source { get; }

    /// <summary>All tensor names, in file (or index) order.</summary>
    IReadOnlyList<string> Names { get; }

    /// <summary>String metadata (safetensors <c>__metadata__</c>, or the index's <c>metadata</c>).</summary>
    IReadOnlyDictionary<string, string> Metadata { get; }

    bool Has(string name);

    /// <summary>dtype and shape of <paramref name="name"/> without mapping its data.</summary>
    TensorInfo Info(string name);

    /// <summary>The tensor <paramref name="name"/> as a read-only view of the mapped file (no copy).</summary>
    Tensor Get(string name);
}

/// <summary>Opens checkpoints of the layouts Hugging Face writes.</summary>
public static class CheckpointReader
{
    public const string IndexFileName = "model.safetensors.index.json";
    public const string SingleFileName = "model.safetensors";

    /// <summary>
    /// Opens <paramref name="path"/>: a <c>.safetensors</c> file, a <c>*.safetensors.index.json</c>
    /// index, or a directory holding <c>model.safetensors.index.json</c>, <c>model.safetensors</c>,
    /// exactly one other index, or one or more <c>.safetensors</c> files (read as one set; a name
    /// stored in two files is an error).
    /// </summary>
    public static ICheckpointReader Open(string path)
    {
        if (File.Exists(path))
        {
            if (path.EndsWith(".json", StringComparison.OrdinalIgnoreCase)) return ShardedCheckpointReader.OpenIndex(path);
            return new SafeTensorsReader(path);
        }
        if (!Directory.Exists(path)) throw new FileNotFoundException($"{path}: no such checkpoint file or directory", path);

        var index = Path.Combine(path, IndexFileName);
        if (File.Exists(index)) return ShardedCheckpointReader.OpenIndex(index);
        var single = Path.Combine(path, SingleFileName);
        if (File.Exists(single)) return new SafeTensorsReader(single);

        var indexes = Directory.GetFiles(path, "*.safetensors.index.json");
        if (indexes.Length == 1) return ShardedCheckpointReader.OpenIndex(indexes[0]);
        if (indexes.Length > 1)
            throw new InvalidDataException($"{path}: several index files ({string.Join(", ", indexes.Select(Path.GetFileName))}); open one of them directly");
        var files = Directory.GetFiles(path, "*.safetensors");
        Array.Sort(files, StringComparer.Ordinal);
        if (files.Length == 0) throw new FileNotFoundException($"{path}: directory holds no .safetensors file and no index", path);
        if (files.Length == 1) return new SafeTensorsReader(files[0]);
        return ShardedCheckpointReader.OpenFiles(path, files);
    }
}
