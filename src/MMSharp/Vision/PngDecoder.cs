using System.Buffers.Binary;
using System.IO.Compression;

namespace MMSharp.Vision;

/// <summary>
/// PNG decoder producing what Pillow's <c>convert('RGB')</c> produces: every colour type and bit depth,
/// palette (+tRNS), Adam7 interlace, all five filters, IDAT split over any number of chunks, CRC checked.
/// </summary>
/// <remarks>
/// Pillow's conversions (verified against Pillow 9.4 fixtures):
/// grey 1-bit -> 0/255; grey 2/4-bit -> v*85 / v*17; grey 16-bit is mode "I" and I->RGB clamps the
/// 16-bit value to 0..255 (it does NOT take the high byte); RGB/RGBA/LA 16-bit keep the high byte;
/// alpha and tRNS are dropped without compositing; palette indices beyond the PLTE entries map to
/// Pillow's default grey ramp (i, i, i). Gamma/colour chunks are ignored, as in Pillow.
/// </remarks>
internal static class PngDecoder
{
    static readonly byte[] Signature = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];
    static readonly uint[] CrcTable = MakeCrcTable();

    public static bool HasSignature(byte[] data) => data.Length >= 8 && data.AsSpan(0, 8).SequenceEqual(Signature);

    public static RgbImage Decode(byte[] data, string source)
    {
        if (!HasSignature(data)) throw new ImageDecodeException(source, "not a PNG file (bad signature)");
        int pos = 8;
        int width = 0, height = 0, bitDepth = 0, colorType = -1, interlace = 0;
        byte[]? palette = null;
        var idat = new MemoryStream();
        bool sawIhdr = false, sawIend = false;
        while (pos < data.Length)
        {
            // Pillow stops reading at the end of the image data, so a file cut after its last IDAT
            // (missing or partial IEND / trailing chunks) still decodes; anything cut earlier is an error.
            bool afterIdat = idat.Length > 0;
            if (pos + 8 > data.Length)
            {
                if (afterIdat) break;
                throw new ImageDecodeException(source, $"truncated PNG: chunk header at byte {pos} is cut off");
            }
            uint len = BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(pos));
            string type = System.Text.Encoding.ASCII.GetString(data, pos + 4, 4);
            if (len > int.MaxValue || pos + 12L + len > data.Length)
            {
                if (afterIdat && type != "IDAT") break;
                throw new ImageDecodeException(source, $"truncated PNG: chunk '{type}' at byte {pos} declares {len} bytes but the file ends at {data.Length}");
            }
            var body = data.AsSpan(pos + 8, (int)len);
            uint crc = BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(pos + 8 + (int)len));
            uint actual = Crc32(data.AsSpan(pos + 4, 4 + (int)len));
            if (crc != actual) throw new ImageDecodeException(source, $"CRC mismatch in PNG chunk '{type}' at byte {pos} (stored {crc:X8}, computed {actual:X8})");
            pos += 12 + (int)len;

            if (!sawIhdr && type != "IHDR") throw new ImageDecodeException(source, $"PNG chunk '{type}' before IHDR");
            switch (type)
            {
                case "IHDR":
                    if (len != 13) throw new ImageDecodeException(source, $"IHDR has length {len}, expected 13");
                    width = (int)Math.Min(BinaryPrimitives.ReadUInt32BigEndian(body), int.MaxValue);
                    height = (int)Math.Min(BinaryPrimitives.ReadUInt32BigEndian(body[4..]), int.MaxValue);
                    bitDepth = body[8]; colorType = body[9]; interlace = body[12];
                    if (width == 0 || height == 0) throw new ImageDecodeException(source, $"PNG has zero size {width}x{height}");
                    if ((long)width * height > RgbImage.MaxPixels) throw new ImageDecodeException(source, $"PNG size {width}x{height} exceeds {RgbImage.MaxPixels} pixels (Pillow's decompression-bomb limit)");
                    if (body[10] != 0 || body[11] != 0) throw new ImageDecodeException(source, "unsupported PNG compression or filter method");
                    if (interlace > 1) throw new ImageDecodeException(source, $"unknown PNG interlace method {interlace}");
                    if (!ValidDepth(colorType, bitDepth)) throw new ImageDecodeException(source, $"invalid PNG colour type {colorType} with bit depth {bitDepth}");
                    sawIhdr = true;
                    break;
                case "PLTE":
                    if (len % 3 != 0 || len == 0 || len > 768) throw new ImageDecodeException(source, $"PLTE length {len} is not a multiple of 3 in 3..768");
                    palette = body.ToArray();
                    break;
                case "IDAT":
                    idat.Write(body);
                    break;
                case "IEND":
                    sawIend = true;
                    break;
                default:
                    break; // tRNS, gAMA, text, ... do not change convert('RGB') output
            }
            if (sawIend) break;
        }
        if (!sawIhdr) throw new ImageDecodeException(source, "PNG has no IHDR chunk");
        if (idat.Length == 0) throw new ImageDecodeException(source, "PNG has no image data (no IDAT chunk; file truncated?)");
        if (colorType == 3 && palette == null) throw new ImageDecodeException(source, "palette PNG without PLTE chunk");

        int channels = colorType switch { 0 => 1, 2 => 3, 3 => 1, 4 => 2, _ => 4 };
        int bitsPerPixel = channels * bitDepth;
        // sample plane: every sample widened to ushort, HWC
        var samples = new ushort[(long)width * height * channels];
        idat.Position = 0;
        using (var z = new ZLibStream(idat, CompressionMode.Decompress))
        {
            try
            {
                if (interlace == 0)
                    DecodePass(z, source, samples, width, channels, bitDepth, bitsPerPixel, width, height, 0, 0, 1, 1);
                else
                {
                    ReadOnlySpan<int> x0 = [0, 4, 0, 2, 0, 1, 0], y0 = [0, 0, 4, 0, 2, 0, 1];
                    ReadOnlySpan<int> dx = [8, 8, 4, 4, 2, 2, 1], dy = [8, 8, 8, 4, 4, 2, 2];
                    for (int p = 0; p < 7; p++)
                    {
                        int pw = (width - x0[p] + dx[p] - 1) / dx[p], ph = (height - y0[p] + dy[p] - 1) / dy[p];
                        if (pw <= 0 || ph <= 0) continue;
                        DecodePass(z, source, samples, width, channels, bitDepth, bitsPerPixel, pw, ph, x0[p], y0[p], dx[p], dy[p]);
                    }
                }
            }
            catch (Exception e) when (e is InvalidDataException || (e is IOException && e is not ImageDecodeException))
            {
                throw new ImageDecodeException(source, $"corrupt zlib stream in PNG image data: {e.Message}", e);
            }
        }
        return ToRgb(samples, width, height, colorType, bitDepth, palette);
    }

    static bool ValidDepth(int colorType, int bitDepth) => colorType switch
    {
        0 => bitDepth is 1 or 2 or 4 or 8 or 16,
        3 => bitDepth is 1 or 2 or 4 or 8,
        2 or 4 or 6 => bitDepth is 8 or 16,
        _ => false,
    };

    /// <summary>Reads, unfilters and unpacks one (sub)image of <paramref name="pw"/> x <paramref name="ph"/> pixels.</summary>
    static void DecodePass(Stream z, string source, ushort[] samples, int width, int channels, int bitDepth, int bitsPerPixel,
                           int pw, int ph, int x0, int y0, int dx, int dy)
    {
        int rowBytes = (int)(((long)pw * bitsPerPixel + 7) / 8);
        int bpp = Math.Max(1, bitsPerPixel / 8);
        var prev = new byte[rowBytes];
        var cur = new byte[rowBytes];
        for (int r = 0; r < ph; r++)
        {
            int ft = z.ReadByte();
            if (ft < 0) throw new ImageDecodeException(source, $"truncated PNG image data (ends in row {r} of {ph})");
            z.ReadExactlyOrThrow(cur, source, r, ph);
            Unfilter(ft, cur, prev, bpp, source);
            int y = y0 + r * dy;
            long rowBase = (long)y * width * channels;
            int n = pw * channels;
            long dst0 = rowBase + (long)x0 * channels;
            int step = dx * channels; // sample i of this row lands at dst0 + (i / channels) * step + i % channels
            if (bitDepth == 8 && dx == 1)
                for (int i = 0; i < n; i++) samples[dst0 + i] = cur[i];
            else
                for (int i = 0, px = 0, c = 0; i < n; i++)
                {
                    int v;
                    if (bitDepth == 8) v = cur[i];
                    else if (bitDepth == 16) v = cur[2 * i] << 8 | cur[2 * i + 1];
                    else
                    {
                        int bit = i * bitDepth;
                        v = (cur[bit >> 3] >> (8 - bitDepth - (bit & 7))) & ((1 << bitDepth) - 1);
                    }
                    samples[dst0 + (long)px * step + c] = (ushort)v;
                    if (++c == channels) { c = 0; px++; }
                }
            (prev, cur) = (cur, prev);
        }
    }

    static void ReadExactlyOrThrow(this Stream z, byte[] buf, string source, int row, int rows)
    {
        int got = 0;
        while (got < buf.Length)
        {
            int n = z.Read(buf, got, buf.Length - got);
            if (n == 0) throw new ImageDecodeException(source, $"truncated PNG image data (ends in row {row} of {rows})");
            got += n;
        }
    }

    static void Unfilter(int ft, byte[] cur, byte[] prev, int bpp, string source)
    {
        int n = cur.Length;
        switch (ft)
        {
            case 0: break;
            case 1: for (int i = bpp; i < n; i++) cur[i] += cur[i - bpp]; break;
            case 2: for (int i = 0; i < n; i++) cur[i] += prev[i]; break;
            case 3:
                for (int i = 0; i < n; i++) cur[i] += (byte)(((i >= bpp ? cur[i - bpp] : 0) + prev[i]) >> 1);
                break;
            case 4:
                for (int i = 0; i < n; i++)
                {
                    int a = i >= bpp ? cur[i - bpp] : 0, b = prev[i], c = i >= bpp ? prev[i - bpp] : 0;
                    int p = a + b - c, pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
                    cur[i] += (byte)(pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
                }
                break;
            default: throw new ImageDecodeException(source, $"unknown PNG filter type {ft}");
        }
    }

    static RgbImage ToRgb(ushort[] s, int width, int height, int colorType, int bitDepth, byte[]? palette)
    {
        int n = width * height;
        var rgb = new byte[n * 3];
        switch (colorType)
        {
            case 0:
                for (int i = 0; i < n; i++)
                {
                    int v = s[i];
                    byte g = bitDepth switch
                    {
                        1 => (byte)(v != 0 ? 255 : 0),
                        2 => (byte)(v * 85),
                        4 => (byte)(v * 17),
                        8 => (byte)v,
                        _ => (byte)Math.Min(v, 255), // Pillow: 16-bit grey is mode I; I -> RGB clamps
                    };
                    rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = g;
                }
                break;
            case 4:
                for (int i = 0; i < n; i++)
                {
                    byte g = High(s[2 * i], bitDepth);
                    rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = g;
                }
                break;
            case 2:
            case 6:
                int ch = colorType == 2 ? 3 : 4;
                for (int i = 0; i < n; i++)
                    for (int c = 0; c < 3; c++) rgb[3 * i + c] = High(s[ch * i + c], bitDepth);
                break;
            case 3:
                // Pillow's palette starts as a grey ramp; PLTE overwrites the first entries
                var pal = new byte[768];
                for (int i = 0; i < 256; i++) pal[3 * i] = pal[3 * i + 1] = pal[3 * i + 2] = (byte)i;
                Buffer.BlockCopy(palette!, 0, pal, 0, palette!.Length);
                for (int i = 0; i < n; i++)
                {
                    int k = s[i] * 3;
                    rgb[3 * i] = pal[k]; rgb[3 * i + 1] = pal[k + 1]; rgb[3 * i + 2] = pal[k + 2];
                }
                break;
        }
        return new RgbImage(width, height, rgb);
    }

    static byte High(ushort v, int bitDepth) => bitDepth == 16 ? (byte)(v >> 8) : (byte)v;

    static uint[] MakeCrcTable()
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

    static uint Crc32(ReadOnlySpan<byte> bytes)
    {
        uint c = 0xFFFFFFFFu;
        foreach (byte b in bytes) c = CrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
        return c ^ 0xFFFFFFFFu;
    }
}
