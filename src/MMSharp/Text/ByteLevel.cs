namespace MMSharp.Text;

/// <summary>
/// GPT-2's reversible byte &lt;-&gt; printable-character mapping (<c>bytes_to_unicode</c>), used by every byte-level BPE
/// vocabulary (GPT-2, Qwen2, Llama 3): vocabulary strings are written in these characters, one per UTF-8 byte.
/// </summary>
/// <remarks>
/// Bytes 33..126, 161..172 and 174..255 map to the same code point; the remaining 68 bytes (controls, space, 127..160,
/// 173) map to U+0100, U+0101, ... in byte order, so that no vocabulary string contains whitespace or controls.
/// </remarks>
public static class ByteLevel
{
    /// <summary>Character that stands for byte <c>b</c>.</summary>
    public static readonly char[] ByteToChar = BuildByteToChar();

    // Inverse map; every mapped character is below U+0144.
    private static readonly short[] CharToByteTable = BuildCharToByte();

    /// <summary>The byte a vocabulary character stands for, or -1 when <paramref name="c"/> is not a byte symbol.</summary>
    public static int CharToByte(char c) => c < CharToByteTable.Length ? CharToByteTable[c] : -1;

    /// <summary>Writes the vocabulary spelling of a byte string (each byte replaced by its symbol).</summary>
    public static string Encode(ReadOnlySpan<byte> bytes)
    {
        return string.Create(bytes.Length, bytes.ToArray(), static (dst, src) =>
        {
            for (int i = 0; i < src.Length; i++) dst[i] = ByteToChar[src[i]];
        });
    }

    /// <summary>
    /// Bytes of a vocabulary string. Returns null when a character is not a byte symbol (the caller then falls back to
    /// the string's own UTF-8, as HF's ByteLevel decoder does).
    /// </summary>
    public static byte[]? TryDecode(string token)
    {
        var bytes = new byte[token.Length];
        for (int i = 0; i < token.Length; i++)
        {
            int b = CharToByte(token[i]);
            if (b < 0) return null;
            bytes[i] = (byte)b;
        }
        return bytes;
    }

    private static char[] BuildByteToChar()
    {
        var map = new char[256];
        int next = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
            map[b] = printable ? (char)b : (char)(256 + next++);
        }
        return map;
    }

    private static short[] BuildCharToByte()
    {
        var table = new short[256 + 68];
        Array.Fill(table, (short)-1);
        for (int b = 0; b < 256; b++) table[ByteToChar[b]] = (short)b;
        return table;
    }
}
