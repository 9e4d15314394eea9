using System.Globalization;
using System.Text.Json;

namespace MMSharp.Engine.IO;

/// <summary>
/// A checkpoint split over several safetensors files, as Hugging Face writes it:
/// <c>model.safetensors.index.json</c> = <c>{"metadata": {"total_size": bytes}, "weight_map": {tensor: shard file}}</c>
/// next to <c>model-0000k-of-0000n.safetensors</c>. Shard files must all exist when the index is opened;
/// their headers are read on first use and each must hold the tensors the index assigns to it.
/// </summary>
public sealed class ShardedCheckpointReader : ICheckpointReader
{
    readonly Dictionary<string, string> _weightMap;               // tensor -> shard path
    readonly Dictionary<string, SafeTensorsReader> _shards = new(StringComparer.Ordinal);
    readonly Lock _lock = new();
    bool _disposed;

    public string Source { get; }
    public IReadOnlyList<string> Names { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }
    /// <summary>The index's <c>metadata.total_size</c> (bytes of tensor data), if present.</summary>
    public long? TotalSize { get; }
    /// <summary>The shard files, in first-use order of the index.</summary>
    public IReadOnlyList<string> ShardFiles { get; }

    ShardedCheckpointReader(string source, Dictionary<string, string> weightMap, IReadOnlyList<string> names,
        Dictionary<string, string> metadata, long? totalSize, Dictionary<string, SafeTensorsReader>? opened = null)
    {
        Source = source;
        _weightMap = weightMap;
        Names = names;
        Metadata = metadata;
        TotalSize = totalSize;
        ShardFiles = names.Select(n => weightMap[n]).Distinct().ToArray();
        if (opened != null) foreach (var (k, v) in opened) _shards[k] = v;
    }

    /// <summary>Opens a <c>*.safetensors.index.json</c>; checks the JSON and that every shard file exists.</summary>
    public static ShardedCheckpointReader OpenIndex(string indexPath)
    {
        byte[] bytes = File.ReadAllBytes(indexPath);
        if (!System.Text.Unicode.Utf8.IsValid(bytes))
            throw new CheckpointFormatException(indexPath, null, "index is not valid UTF-8");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(bytes); }
        catch (JsonException e) { throw new CheckpointFormatException(indexPath, null, $"index is not valid JSON: {e.Message}", e); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("weight_map", out var wm) || wm.ValueKind != JsonValueKind.Object)
                throw new CheckpointFormatException(indexPath, null, "index has no 'weight_map' object");
            string dir = Path.GetDirectoryName(Path.GetFullPath(indexPath))!;

            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            long? totalSize = null;
            if (root.TryGetProperty("metadata", out var md) && md.ValueKind == JsonValueKind.Object)
            {
                foreach (var p in md.EnumerateObject())
                {
                    metadata[p.Name] = p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString()! : p.Value.GetRawText();
                    if (p.Name == "total_size" && p.Value.ValueKind == JsonValueKind.Number && p.Value.TryGetDouble(out double ts))
                        totalSize = (long)ts; // some writers store it as a float
                }
            }

            var map = new Dictionary<string, string>(StringComparer.Ordinal);
            var names = new List<string>();
            var firstUser = new Dictionary<string, (string Tensor, int Count)>(StringComparer.Ordinal);
            foreach (var p in wm.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String)
                    throw new CheckpointFormatException(indexPath, p.Name, "weight_map value must be a shard file name");
                string shard = p.Value.GetString()!;
                if (shard.Length == 0 || Path.IsPathRooted(shard) || shard.Split('/', '\\').Contains(".."))
                    throw new CheckpointFormatException(indexPath, p.Name, $"shard file name '{shard}' must be a plain file name next to the index");
                if (map.ContainsKey(p.Name)) throw new CheckpointFormatException(indexPath, p.Name, "tensor is listed twice in weight_map");
                string full = Path.Combine(dir, shard);
                map[p.Name] = full;
                names.Add(p.Name);
                firstUser[full] = firstUser.TryGetValue(full, out var u) ? (u.Tensor, u.Count + 1) : (p.Name, 1);
            }
            foreach (var (shard, user) in firstUser)
            {
                if (!File.Exists(shard))
                    throw new CheckpointFormatException(indexPath, user.Tensor,
                        $"shard file '{Path.GetFileName(shard)}' is missing (it holds this tensor{(user.Count > 1 ? $" and {user.Count - 1} more" : "")})");
            }
            return new ShardedCheckpointReader(indexPath, map, names, metadata, totalSize);
        }
    }

    /// <summary>Reads several safetensors files without an index as one set (a name in two files is an error).</summary>
    public static ShardedCheckpointReader OpenFiles(string source, IReadOnlyList<string> files)
    {
        var opened = new Dictionary<string, SafeTensorsReader>(StringComparer.Ordinal);
        try
        {
            var map = new Dictionary<string, string>(StringComparer.Ordinal);
            var names = new List<string>();
            foreach (var f in files)
            {
                var r = new SafeTensorsReader(f);
                opened[f] = r;
                foreach (var n in r.Names)
                {
                    if (map.TryGetValue(n, out var other))
                        throw new CheckpointFormatException(f, n, $"tensor is also stored in '{Path.GetFileName(other)}'");
                    map[n] = f;
                    names.Add(n);
                }
            }
            long total = names.Sum(n => opened[map[n]].Info(n).ByteLength);
            return new ShardedCheckpointReader(source, map, names, new Dictionary<string, string>(), total, opened);
        }
        catch
        {
            foreach (var r in opened.Values) r.Dispose();
            throw;
        }
    }

    public bool Has(string name) => _weightMap.ContainsKey(name);

    public TensorInfo Info(string name) => ShardFor(name).Info(name);

    public Tensor Get(string name) => ShardFor(name).Get(name);

    /// <summary>The shard reader for <paramref name="name"/>, opening the shard's header on first use.</summary>
    SafeTensorsReader ShardFor(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_weightMap.TryGetValue(name, out var shard))
            throw new KeyNotFoundException($"{Source}: no tensor named '{name}' in the index ({Names.Count} tensors)");
        SafeTensorsReader r;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_shards.TryGetValue(shard, out r!))
            {
                if (!File.Exists(shard))
                    throw new CheckpointFormatException(Source, name, $"shard file '{Path.GetFileName(shard)}' is missing");
                r = new SafeTensorsReader(shard);
                _shards[shard] = r;
            }
        }
        if (!r.Has(name))
            throw new CheckpointFormatException(shard, name, $"the index '{Path.GetFileName(Source)}' places this tensor in this shard, but the shard does not hold it");
        return r;
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            foreach (var r in _shards.Values) r.Dispose();
        }
    }

    public override string ToString() =>
        $"sharded checkpoint '{Source}' ({Names.Count} tensors in {ShardFiles.Count} files{(TotalSize is long t ? ", " + t.ToString(CultureInfo.InvariantCulture) + " bytes" : "")})";
}
