using System.Buffers.Binary;
using System.Text.Json;

namespace MMSharp.Engine.IO;

/// <summary>
/// The safetensors layout and its validation:
/// <c>[u64 little-endian N][N bytes of UTF-8 JSON header][data section]</c>. The header maps each
/// tensor name to <c>{"dtype", "shape", "data_offsets": [begin, end]}</c> with offsets relative to
/// the data section, plus an optional <c>"__metadata__"</c> string-to-string map.
/// </summary>
internal static class SafeTensorsFormat
{
    /// <summary>Larger headers are refused before reading them (the reference implementation uses the same cap).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    public const string MetadataKey = "__metadata__";

    /// <summary>Bits per element of every dtype the format defines; only some of them map to <see cref="DType"/>.</summary>
    static readonly Dictionary<string, int> BitsPerElement = new(StringComparer.Ordinal)
    {
        ["BOOL"] = 8, ["U8"] = 8, ["I8"] = 8, ["F8_E5M2"] = 8, ["F8_E4M3"] = 8, ["F8_E8M0"] = 8,
        ["I16"] = 16, ["U16"] = 16, ["F16"] = 16, ["BF16"] = 16,
        ["I32"] = 32, ["U32"] = 32, ["F32"] = 32,
        ["I64"] = 64, ["U64"] = 64, ["F64"] = 64, ["C64"] = 64,
        ["F4"] = 4, ["F6_E2M3"] = 6, ["F6_E3M2"] = 6,
    };

    public static Exception Unsupported(string file, string tensor, string dtype) =>
        new CheckpointFormatException(file, tensor,
            $"unsupported dtype {dtype} (MMSharp holds F32, BF16, F16, I64, I32, U8, BOOL; convert the checkpoint first)");

    /// <summary>One validated header entry. Offsets are relative to the data section.</summary>
    public sealed record Entry(string Name, string DTypeName, DType? DType, int[] Shape, long Begin, long End);

    /// <summary>A parsed, validated header.</summary>
    public sealed class Header
    {
        public required string File { get; init; }
        public required long FileLength { get; init; }
        /// <summary>Absolute file offset of the data section (8 + header length).</summary>
        public required long DataStart { get; init; }
        public required List<Entry> Entries { get; init; }
        public required Dictionary<string, Entry> ByName { get; init; }
        public required Dictionary<string, string> Metadata { get; init; }
    }

    /// <summary>Reads and validates the header of <paramref name="file"/>; never reads the data section.</summary>
    public static Header ReadHeader(string file)
    {
        using var fs = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.None);
        long length = fs.Length;
        if (length < 8)
            throw new CheckpointFormatException(file, null, $"file is {length} bytes, too short for the 8-byte header length (truncated or not a safetensors file)");
        Span<byte> prefix = stackalloc byte[8];
        fs.ReadExactly(prefix);
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (n > MaxHeaderBytes)
            throw new CheckpointFormatException(file, null, $"header length {n} bytes exceeds the cap of {MaxHeaderBytes} bytes (corrupt length prefix or not a safetensors file)");
        if ((long)n > length - 8)
            throw new CheckpointFormatException(file, null, $"header length {n} bytes runs past the end of the file ({length} bytes): truncated or corrupt");
        var json = new byte[n];
        fs.ReadExactly(json);
        return Parse(file, json, length, 8 + (long)n);
    }

    /// <summary>Validates a header: JSON shape, dtypes, byte lengths, ranges and overlaps.</summary>
    public static Header Parse(string file, byte[] json, long fileLength, long dataStart)
    {
        // JsonDocument defers UTF-8 checks of string contents to GetString; check everything up front instead.
        if (!System.Text.Unicode.Utf8.IsValid(json))
            throw new CheckpointFormatException(file, null, "header is not valid UTF-8");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 16 });
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException(file, null, $"header is not valid JSON: {e.Message}", e);
        }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new CheckpointFormatException(file, null, $"header must be a JSON object, found {doc.RootElement.ValueKind}");

            long dataLength = fileLength - dataStart;
            var entries = new List<Entry>();
            var byName = new Dictionary<string, Entry>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            bool sawMetadata = false;
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == MetadataKey)
                {
                    if (sawMetadata) throw new CheckpointFormatException(file, null, "header has two __metadata__ entries");
                    sawMetadata = true;
                    ParseMetadata(file, prop.Value, metadata);
                    continue;
                }
                if (byName.ContainsKey(prop.Name))
                    throw new CheckpointFormatException(file, prop.Name, "tensor is listed twice in the header");
                var e = ParseEntry(file, prop.Name, prop.Value, dataLength);
                entries.Add(e);
                byName.Add(e.Name, e);
            }
            CheckNoOverlap(file, entries);
            return new Header
            {
                File = file, FileLength = fileLength, DataStart = dataStart,
                Entries = entries, ByName = byName, Metadata = metadata,
            };
        }
    }

    static void ParseMetadata(string file, JsonElement v, Dictionary<string, string> into)
    {
        if (v.ValueKind != JsonValueKind.Object)
            throw new CheckpointFormatException(file, null, $"__metadata__ must be an object of strings, found {v.ValueKind}");
        foreach (var m in v.EnumerateObject())
        {
            if (m.Value.ValueKind != JsonValueKind.String)
                throw new CheckpointFormatException(file, null, $"__metadata__ value of '{m.Name}' must be a string, found {m.Value.ValueKind}");
            into[m.Name] = m.Value.GetString()!;
        }
    }

    static Entry ParseEntry(string file, string name, JsonElement v, long dataLength)
    {
        CheckpointFormatException Bad(string problem) => new(file, name, problem);
        if (v.ValueKind != JsonValueKind.Object) throw Bad($"header entry must be an object, found {v.ValueKind}");

        if (!v.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String)
            throw Bad("header entry has no string 'dtype'");
        string dtypeName = dt.GetString()!;
        if (!BitsPerElement.TryGetValue(dtypeName, out int bits)) throw Bad($"unknown dtype '{dtypeName}'");
        DType? dtype = DTypeInfo.TryParseSafetensors(dtypeName, out var d) ? d : null;

        if (!v.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array)
            throw Bad("header entry has no 'shape' array");
        var shape = new int[sh.GetArrayLength()];
        int i = 0;
        foreach (var dim in sh.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out long dv) || dv < 0)
                throw Bad($"shape entry {i} is not a non-negative integer ({dim.GetRawText()})");
            if (dv > int.MaxValue) throw Bad($"dimension {dv} is larger than MMSharp supports ({int.MaxValue})");
            shape[i++] = (int)dv;
        }

        if (!v.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw Bad("header entry has no 'data_offsets' pair [begin, end]");
        long begin = ReadOffset(off[0]), end = ReadOffset(off[1]);
        if (begin < 0 || end < 0) throw Bad($"data_offsets {off.GetRawText()} are not non-negative integers");
        if (begin > end) throw Bad($"data_offsets [{begin}, {end}] have begin after end");
        if (end > dataLength)
            throw Bad($"data_offsets [{begin}, {end}] run past the end of the data section ({dataLength} bytes): file truncated or offsets corrupt");

        long bytes;
        try
        {
            long numel = 1;
            foreach (var s in shape) numel = checked(numel * s);
            long totalBits = checked(numel * bits);
            if (totalBits % 8 != 0) throw Bad($"{numel} elements of {dtypeName} do not fill whole bytes");
            bytes = totalBits / 8;
        }
        catch (OverflowException)
        {
            throw Bad($"shape {Tensor.ShapeString(shape)} is too large");
        }
        if (bytes != end - begin)
            throw Bad($"shape {Tensor.ShapeString(shape)} of {dtypeName} needs {bytes} bytes but data_offsets [{begin}, {end}] give {end - begin}");
        return new Entry(name, dtypeName, dtype, shape, begin, end);
    }

    static long ReadOffset(JsonElement e) =>
        e.ValueKind == JsonValueKind.Number && e.TryGetInt64(out long v) ? v : -1;

    static void CheckNoOverlap(string file, List<Entry> entries)
    {
        // Empty tensors occupy no bytes and cannot overlap anything.
        var sorted = entries.Where(e => e.End > e.Begin).OrderBy(e => e.Begin).ThenBy(e => e.End).ToList();
        for (int i = 1; i < sorted.Count; i++)
        {
            var a = sorted[i - 1];
            var b = sorted[i];
            if (b.Begin < a.End)
                throw new CheckpointFormatException(file, b.Name,
                    $"data_offsets [{b.Begin}, {b.End}] overlap tensor '{a.Name}' at [{a.Begin}, {a.End}]");
        }
    }
}
