using System.Buffers.Binary;
using System.Runtime.Intrinsics.X86;
using System.Text;

namespace MMSharp.Training;

/// <summary>
/// Writes TensorBoard scalar event files (<c>events.out.tfevents.&lt;unix time&gt;.&lt;host&gt;</c>) that
/// <c>tensorboard --logdir</c> reads, without a protobuf library: the few fields needed are encoded by hand.
/// </summary>
/// <remarks>
/// File = TFRecords: <c>uint64 length | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)</c>,
/// little-endian, with <c>mask(c) = ((c &gt;&gt; 15) | (c &lt;&lt; 17)) + 0xa282ead8</c>.
/// Each record is an <c>Event</c>: wall_time (double, field 1), step (int64, field 2), then either file_version
/// (string, field 3; "brain.Event:2", the first record) or summary (field 5) = repeated value (field 1) =
/// { tag (string, field 1), simple_value (float, field 2) }.
/// </remarks>
public sealed class TensorBoardWriter : IDisposable
{
    readonly FileStream _fs;

    public string FilePath { get; }

    public TensorBoardWriter(string logDirectory)
    {
        Directory.CreateDirectory(logDirectory);
        long now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        string host = Environment.MachineName;
        string path = Path.Combine(logDirectory, $"events.out.tfevents.{now}.{host}");
        // two writers in one second (a quick resume) must not share a file
        for (int k = 1; File.Exists(path); k++) path = Path.Combine(logDirectory, $"events.out.tfevents.{now}.{host}.{k}");
        FilePath = path;
        _fs = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.Read);
        var ev = new ProtoBuffer();
        ev.Double(1, WallTime());
        ev.Int64(2, 0);
        ev.String(3, "brain.Event:2");
        WriteRecord(ev.ToArray());
    }

    static double WallTime() => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0;

    /// <summary>Writes scalars <paramref name="values"/> (tag → value) for <paramref name="step"/> and flushes.</summary>
    public void AddScalars(long step, IEnumerable<KeyValuePair<string, double>> values, double? wallTime = null)
    {
        var summary = new ProtoBuffer();
        foreach (var (tag, v) in values)
        {
            var value = new ProtoBuffer();
            value.String(1, tag);
            value.Float(2, (float)v);
            summary.Message(1, value);
        }
        var ev = new ProtoBuffer();
        ev.Double(1, wallTime ?? WallTime());
        ev.Int64(2, step);
        ev.Message(5, summary);
        WriteRecord(ev.ToArray());
    }

    public void AddScalar(long step, string tag, double value) => AddScalars(step, [KeyValuePair.Create(tag, value)]);

    /// <summary>
    /// Writes a <c>SessionLog{status: START}</c> (Event field 6) at <paramref name="step"/>: TensorBoard then discards the
    /// points at steps ≥ <paramref name="step"/> written earlier in this directory, i.e. those of a crashed run that the
    /// resumed run recomputes.
    /// </summary>
    public void AddSessionStart(long step)
    {
        var sessionLog = new ProtoBuffer();
        sessionLog.Int64(1, 1); // status = START
        var ev = new ProtoBuffer();
        ev.Double(1, WallTime());
        ev.Int64(2, step);
        ev.Message(6, sessionLog);
        WriteRecord(ev.ToArray());
    }

    void WriteRecord(byte[] data)
    {
        Span<byte> head = stackalloc byte[12];
        BinaryPrimitives.WriteUInt64LittleEndian(head, (ulong)data.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(head[8..], Crc32C.Masked(head[..8]));
        _fs.Write(head);
        _fs.Write(data);
        Span<byte> tail = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(tail, Crc32C.Masked(data));
        _fs.Write(tail);
        _fs.Flush();
    }

    public void Dispose() => _fs.Dispose();

    /// <summary>The protobuf wire format for the field kinds an Event needs.</summary>
    sealed class ProtoBuffer
    {
        readonly MemoryStream _ms = new();

        void Varint(ulong v)
        {
            while (v >= 0x80) { _ms.WriteByte((byte)(v | 0x80)); v >>= 7; }
            _ms.WriteByte((byte)v);
        }

        void Tag(int field, int wireType) => Varint((ulong)(field << 3 | wireType));

        public void Double(int field, double v)
        {
            Tag(field, 1);
            Span<byte> b = stackalloc byte[8];
            BinaryPrimitives.WriteDoubleLittleEndian(b, v);
            _ms.Write(b);
        }

        public void Float(int field, float v)
        {
            Tag(field, 5);
            Span<byte> b = stackalloc byte[4];
            BinaryPrimitives.WriteSingleLittleEndian(b, v);
            _ms.Write(b);
        }

        public void Int64(int field, long v)
        {
            Tag(field, 0);
            Varint((ulong)v);
        }

        public void Bytes(int field, ReadOnlySpan<byte> bytes)
        {
            Tag(field, 2);
            Varint((ulong)bytes.Length);
            _ms.Write(bytes);
        }

        public void String(int field, string s) => Bytes(field, Encoding.UTF8.GetBytes(s));

        public void Message(int field, ProtoBuffer m) => Bytes(field, m._ms.GetBuffer().AsSpan(0, (int)m._ms.Length));

        public byte[] ToArray() => _ms.ToArray();
    }
}

/// <summary>CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), with the SSE4.2 instruction when available.</summary>
public static class Crc32C
{
    static readonly uint[] Table = MakeTable();

    static uint[] MakeTable()
    {
        var t = new uint[256];
        for (uint i = 0; i < 256; i++)
        {
            uint c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            t[i] = c;
        }
        return t;
    }

    public static uint Compute(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFFu;
        int i = 0;
        if (Sse42.X64.IsSupported)
        {
            ulong c = crc;
            for (; i + 8 <= data.Length; i += 8) c = Sse42.X64.Crc32(c, BinaryPrimitives.ReadUInt64LittleEndian(data[i..]));
            crc = (uint)c;
        }
        if (Sse42.IsSupported)
            for (; i < data.Length; i++) crc = Sse42.Crc32(crc, data[i]);
        for (; i < data.Length; i++) crc = Table[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
        return ~crc;
    }

    /// <summary>The TFRecord mask: ((crc &gt;&gt; 15) | (crc &lt;&lt; 17)) + 0xa282ead8.</summary>
    public static uint Masked(ReadOnlySpan<byte> data)
    {
        uint crc = Compute(data);
        return unchecked(((crc >> 15) | (crc << 17)) + 0xa282ead8u);
    }

    /// <summary>The table-driven path alone (to check the hardware path against).</summary>
    internal static uint ComputeTable(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFFu;
        foreach (var b in data) crc = Table[(crc ^ b) & 0xFF] ^ (crc >> 8);
        return ~crc;
    }
}
