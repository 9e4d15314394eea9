using System.Text;
using System.Text.Json;
using MMSharp.Engine.Autograd;

namespace MMSharp.Engine.IO;

/// <summary>
/// Writes safetensors files (single or sharded with a Hugging Face index). Each file is written to a
/// temporary file in the target directory, flushed to disk (fsync) and renamed over the target, so
/// a crash leaves either the old file or the complete new one — and a tensor memory-mapped from the
/// old file stays valid while it is overwritten.
/// </summary>
/// <remarks>
/// Layout: the JSON header is padded with spaces so the data section starts at a multiple of 8,
/// and tensors are ordered by element size (8-byte types first, then by name). The format allows no
/// gaps between tensors, so this ordering is what keeps every tensor aligned to its element size.
/// Any dtype and any strides are accepted; non-contiguous tensors are written in row-major order.
/// </remarks>
public static class SafeTensorsWriter
{
    // Names stay readable in the header ("a+b" rather than "a\u002Bb"); the output is still valid JSON.
    static readonly System.Text.Encodings.Web.JavaScriptEncoder RelaxedJson = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping;

    /// <summary>Writes <paramref name="tensors"/> and optional string <paramref name="metadata"/> to <paramref name="path"/>.</summary>
    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        CheckNames(path, list);
        WriteFile(path, list, metadata);
    }

    /// <summary>
    /// Writes <paramref name="tensors"/> into <c>{baseName}-0000k-of-0000n.safetensors</c> files of at most
    /// <paramref name="maxShardBytes"/> of tensor data each (a larger tensor gets a shard of its own), in the
    /// given order, then <c>{baseName}.safetensors.index.json</c>. When everything fits in one shard it writes
    /// <c>{baseName}.safetensors</c> and no index, as Hugging Face does. Shards and index of an earlier save
    /// with the same base name that are not part of this one are deleted afterwards.
    /// </summary>
    /// <returns>The files written (shards, then the index if any).</returns>
    public static IReadOnlyList<string> WriteSharded(string directory, IEnumerable<KeyValuePair<string, Tensor>> tensors,
        long maxShardBytes, IReadOnlyDictionary<string, string>? metadata = null, string baseName = "model")
    {
        if (maxShardBytes <= 0) throw new ArgumentOutOfRangeException(nameof(maxShardBytes), "max shard size must be positive");
        var list = tensors.ToList();
        CheckNames(directory, list);
        Directory.CreateDirectory(directory);

        var shards = new List<List<KeyValuePair<string, Tensor>>>();
        long current = 0;
        foreach (var kv in list)
        {
            long bytes = kv.Value.NumEl * kv.Value.DType.SizeOf();
            if (shards.Count == 0 || (current > 0 && current + bytes > maxShardBytes))
            {
                shards.Add(new());
                current = 0;
            }
            shards[^1].Add(kv);
            current += bytes;
        }
        if (shards.Count == 0) shards.Add(new());

        var written = new List<string>();
        string indexPath = Path.Combine(directory, baseName + ".safetensors.index.json");
        if (shards.Count == 1)
        {
            string single = Path.Combine(directory, baseName + ".safetensors");
            WriteFile(single, shards[0], metadata);
            written.Add(single);
            RemoveStale(directory, baseName, keep: written);
            if (File.Exists(indexPath)) File.Delete(indexPath);
            return written;
        }

        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        long totalSize = 0;
        for (int i = 0; i < shards.Count; i++)
        {
            string file = $"{baseName}-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
            string full = Path.Combine(directory, file);
            WriteFile(full, shards[i], metadata);
            written.Add(full);
            foreach (var kv in shards[i])
            {
                weightMap[kv.Key] = file;
                totalSize += kv.Value.NumEl * kv.Value.DType.SizeOf();
            }
        }

        // The index goes last: a reader that finds it finds all its shards complete.
        using (var ms = new MemoryStream())
        {
            using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true, Encoder = RelaxedJson }))
            {
                w.WriteStartObject();
                w.WriteStartObject("metadata");
                if (metadata != null)
                    foreach (var (k, v) in metadata.OrderBy(p => p.Key, StringComparer.Ordinal))
                        if (k != "total_size") w.WriteString(k, v);
                w.WriteNumber("total_size", totalSize);
                w.WriteEndObject();
                w.WriteStartObject("weight_map");
                foreach (var (k, v) in weightMap) w.WriteString(k, v);
                w.WriteEndObject();
                w.WriteEndObject();
            }
            ms.WriteByte((byte)'\n');
            DurableFile.Write(indexPath, fs => fs.Write(ms.GetBuffer(), 0, (int)ms.Length));
        }
        written.Add(indexPath);
        RemoveStale(directory, baseName, keep: written);
        return written;
    }

    static void CheckNames(string target, List<KeyValuePair<string, Tensor>> list)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, t) in list)
        {
            if (string.IsNullOrEmpty(name)) throw new ArgumentException($"{target}: tensor names must not be empty");
            if (name == SafeTensorsFormat.MetadataKey) throw new ArgumentException($"{target}: '{name}' is reserved for metadata");
            if (!seen.Add(name)) throw new ArgumentException($"{target}: tensor '{name}' given twice");
            ArgumentNullException.ThrowIfNull(t, name);
            if (t.IsDisposed) throw new ArgumentException($"{target}: tensor '{name}' was disposed");
        }
    }

    static void WriteFile(string path, List<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        var ordered = tensors
            .OrderByDescending(kv => kv.Value.DType.SizeOf())
            .ThenBy(kv => kv.Key, StringComparer.Ordinal)
            .ToList();
        byte[] header = BuildHeader(ordered, metadata);
        DurableFile.Write(path, fs =>
        {
            Span<byte> len = stackalloc byte[8];
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)header.Length);
            fs.Write(len);
            fs.Write(header);
            foreach (var (_, t) in ordered) WriteData(fs, t);
        });
    }

    static byte[] BuildHeader(List<KeyValuePair<string, Tensor>> ordered, IReadOnlyDictionary<string, string>? metadata)
    {
        var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Encoder = RelaxedJson }))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject(SafeTensorsFormat.MetadataKey);
                foreach (var (k, v) in metadata) w.WriteString(k, v);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var (name, t) in ordered)
            {
                long bytes = t.NumEl * t.DType.SizeOf();
                w.WriteStartObject(name);
                w.WriteString("dtype", t.DType.SafetensorsName());
                w.WriteStartArray("shape");
                foreach (var d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + bytes);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += bytes;
            }
            w.WriteEndObject();
        }
        int pad = (int)((8 - (8 + ms.Length) % 8) % 8);
        for (int i = 0; i < pad; i++) ms.WriteByte((byte)' ');
        return ms.ToArray();
    }

    static unsafe void WriteData(FileStream fs, Tensor t)
    {
        if (t.NumEl == 0) return;
        Tensor c;
        using (GradMode.NoGrad())
        using (TensorScope.Suspend())
            c = Ops.Contiguous(t);
        try
        {
            byte* p = c.DataPtr;
            long left = c.NumEl * c.DType.SizeOf();
            while (left > 0)
            {
                int chunk = (int)Math.Min(left, 1 << 26);
                fs.Write(new ReadOnlySpan<byte>(p, chunk));
                p += chunk;
                left -= chunk;
            }
        }
        finally
        {
            c.Dispose();
        }
    }

    static void RemoveStale(string directory, string baseName, List<string> keep)
    {
        var keepSet = new HashSet<string>(keep.Select(Path.GetFullPath), StringComparer.Ordinal);
        foreach (var f in Directory.GetFiles(directory, $"{baseName}-?????-of-?????.safetensors"))
            if (!keepSet.Contains(Path.GetFullPath(f))) File.Delete(f);
        string single = Path.Combine(directory, baseName + ".safetensors");
        if (!keepSet.Contains(Path.GetFullPath(single)) && File.Exists(single)) File.Delete(single);
    }
}
