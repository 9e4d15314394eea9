using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;

namespace MMSharp.Vision;

/// <summary>
/// Minimal PNG writer: 8-bit RGB (colour type 2), not interlaced, one IDAT chunk compressed with zlib
/// (<see cref="ZLibStream"/>), CRC-32 per chunk. Each row's filter is chosen by the libpng heuristic
/// (the filter whose output has the smallest sum of absolute signed bytes).
/// </summary>
public static class PngEncoder
{
    private static readonly byte[] Signature = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];
    private static readonly uint[] CrcTable = MakeCrcTable();

    /// <summary>Encodes <paramref name="image"/> as PNG bytes.</summary>
    public static byte[] Encode(RgbImage image, CompressionLevel level = CompressionLevel.Optimal)
    {
        int w = image.Width, h = image.Height, stride = w * 3;
        var raw = new byte[(long)h * (stride + 1)];
        var candidate = new byte[stride];
        var best = new byte[stride];
        for (int y = 0; y < h; y++)
        {
            var cur = image.Pixels.AsSpan(y * stride, stride);
            var prev = y > 0 ? image.Pixels.AsSpan((y - 1) * stride, stride) : default;
            long bestCost = long.MaxValue; byte bestFilter = 0;
            for (byte f = 0; f <= 4; f++)
            {
                if (y == 0 && f >= 2) break;   // Up/Average/Paeth need a previous row to be worth it
                Filter(f, cur, prev, candidate);
                long cost = 0;
                foreach (byte b in candidate) cost += Math.Abs((int)(sbyte)b);
                if (cost < bestCost) { bestCost = cost; bestFilter = f; candidate.CopyTo(best, 0); }
            }
            long at = (long)y * (stride + 1);
            raw[at] = bestFilter;
            best.CopyTo(raw.AsSpan((int)at + 1, stride));
        }

        var compressed = new MemoryStream();
        using (var z = new ZLibStream(compressed, level, leaveOpen: true)) z.Write(raw);

        var output = new MemoryStream();
        output.Write(Signature);
        var ihdr = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(ihdr, w);
        BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), h);
        ihdr[8] = 8; ihdr[9] = 2;   // bit depth 8, colour type RGB; compression, filter, interlace = 0
        WriteChunk(output, "IHDR", ihdr);
        WriteChunk(output, "IDAT", compressed.ToArray());
        WriteChunk(output, "IEND", []);
        return output.ToArray();
    }

    /// <summary>Encodes and writes to <paramref name="path"/>.</summary>
    public static void Save(RgbImage image, string path) => File.WriteAllBytes(path, Encode(image));

    // PNG filter types 0-4 on a row of 3-byte pixels (bpp = 3).
    private static void Filter(byte type, ReadOnlySpan<byte> cur, ReadOnlySpan<byte> prev, Span<byte> dst)
    {
        for (int i = 0; i < cur.Length; i++)
        {
            int a = i >= 3 ? cur[i - 3] : 0;
            int b = prev.IsEmpty ? 0 : prev[i];
            int c = i >= 3 && !prev.IsEmpty ? prev[i - 3] : 0;
            int pred = type switch
            {
                0 => 0,
                1 => a,
                2 => b,
                3 => (a + b) >> 1,
                _ => Paeth(a, b, c),
            };
            dst[i] = (byte)(cur[i] - pred);
        }
    }

    private static int Paeth(int a, int b, int c)
    {
        int p = a + b - c, pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
        return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }

    private static void WriteChunk(Stream s, string type, byte[] data)
    {
        Span<byte> len = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(len, data.Length);
        s.Write(len);
        var typeBytes = Encoding.ASCII.GetBytes(type);
        s.Write(typeBytes);
        s.Write(data);
        uint crc = Crc(Crc(0xFFFFFFFFu, typeBytes), data) ^ 0xFFFFFFFFu;
        BinaryPrimitives.WriteUInt32BigEndian(len, crc);
        s.Write(len);
    }

    private static uint Crc(uint crc, ReadOnlySpan<byte> data)
    {
        foreach (byte b in data) crc = CrcTable[(crc ^ b) & 0xFF] ^ (crc >> 8);
        return crc;
    }

    private static uint[] MakeCrcTable()
    {
        var t = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            uint c = n;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[n] = c;
        }
        return t;
    }
}
