namespace MMSharp.Data;

/// <summary>One raw JSONL line with where it came from and which dataset of the mix it belongs to.</summary>
public readonly record struct RawLine(byte[] Bytes, SourceLocation Location, int DatasetIndex);

/// <summary>
/// Byte-level JSONL line scanning shared by the indexed and streaming readers. Lines are split on <c>\n</c>
/// (a trailing <c>\r</c> is dropped); blank lines are not records and are skipped, but still count for line numbers.
/// </summary>
public static class JsonlLines
{
    /// <summary>
    /// Reads the next non-blank line starting at <paramref name="offset"/> (1-based line number <paramref name="line"/>).
    /// Returns false at end of file. On return <paramref name="offset"/>/<paramref name="line"/> point after the line read,
    /// and <paramref name="lineStart"/>/<paramref name="lineNumber"/> describe it.
    /// </summary>
    public static bool TryReadLine(Stream stream, ref long offset, ref long line, out byte[] bytes, out long lineStart, out long lineNumber)
    {
        stream.Seek(offset, SeekOrigin.Begin);
        var buf = new MemoryStream();
        Span<byte> chunk = stackalloc byte[4096];
        while (true)
        {
            buf.SetLength(0);
            lineStart = offset; lineNumber = 0;
            bool any = false, newline = false;
            while (!newline)
            {
                int n = stream.Read(chunk);
                if (n == 0) break;
                any = true;
                int nl = chunk[..n].IndexOf((byte)'\n');
                if (nl < 0) { buf.Write(chunk[..n]); offset += n; continue; }
                buf.Write(chunk[..nl]);
                offset += nl + 1;
                stream.Seek(offset, SeekOrigin.Begin);
                newline = true;
            }
            if (!any) { bytes = []; return false; }
            line++;
            lineNumber = line;
            var span = buf.GetBuffer().AsSpan(0, (int)buf.Length);
            if (span.Length > 0 && span[^1] == '\r') span = span[..^1];
            if (!IsBlank(span)) { bytes = span.ToArray(); return true; }
            if (!newline) { bytes = []; return false; }
        }
    }

    /// <summary>Offsets and 1-based line numbers of the non-blank lines (12 bytes per line of memory).</summary>
    public static (long[] Offsets, int[] LineNumbers) Index(string path)
    {
        var offsets = new List<long>();
        var lines = new List<int>();
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        var buf = new byte[1 << 16];
        long pos = 0, lineStart = 0; int lineNo = 1; bool blank = true;
        int n;
        while ((n = fs.Read(buf)) > 0)
        {
            for (int i = 0; i < n; i++)
            {
                byte b = buf[i];
                if (b == '\n')
                {
                    if (!blank) { offsets.Add(lineStart); lines.Add(lineNo); }
                    lineNo++; lineStart = pos + i + 1; blank = true;
                }
                else if (blank && !(b is (byte)' ' or (byte)'\t' or (byte)'\r')) blank = false;
            }
            pos += n;
        }
        if (!blank) { offsets.Add(lineStart); lines.Add(lineNo); }
        return (offsets.ToArray(), lines.ToArray());
    }

    /// <summary>Number of non-blank lines (constant memory).</summary>
    public static long CountLines(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        var buf = new byte[1 << 16];
        long count = 0; bool blank = true; int n;
        while ((n = fs.Read(buf)) > 0)
            for (int i = 0; i < n; i++)
            {
                byte b = buf[i];
                if (b == '\n') { if (!blank) count++; blank = true; }
                else if (blank && !(b is (byte)' ' or (byte)'\t' or (byte)'\r')) blank = false;
            }
        return blank ? count : count + 1;
    }

    private static bool IsBlank(ReadOnlySpan<byte> s)
    {
        foreach (byte b in s) if (!(b is (byte)' ' or (byte)'\t' or (byte)'\r')) return false;
        return true;
    }
}
