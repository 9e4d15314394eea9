using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using MMSharp.Engine.Autograd;

namespace MMSharp.Engine.IO;

/// <summary>
/// NumPy <c>.npy</c> files, for fixtures and tensor dumps compared against Python.
/// Writes format 1.0 exactly as <c>numpy.save</c> (numpy ≥ 1.23) does:
/// <c>"\x93NUMPY" 01 00 [u16 LE header length] {'descr': '&lt;f4', 'fortran_order': False, 'shape': (3, 4), }</c>
/// followed by the "growth" spaces numpy reserves (21 minus the digits of shape[0]), padding spaces,
/// and a newline so that the data starts at a multiple of 64 bytes; then the data, little-endian, C order.
/// </summary>
/// <remarks>
/// dtypes: F32 '&lt;f4', F16 '&lt;f2', I64 '&lt;i8', I32 '&lt;i4', U8 '|u1', Bool '|b1'. BF16 has no NumPy
/// dtype and is written widened to '&lt;f4' (exact). Reading also accepts '&lt;f8' (narrowed to F32),
/// format versions 2.0 and 3.0, and fortran_order True.
/// </remarks>
public static partial class Npy
{
    static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];
    const int ArrayAlign = 64;
    const int GrowthAxisMaxDigits = 21;

    public static void Write(string path, Tensor t) =>
        DurableFile.Write(path, fs => Write(fs, t));

    public static unsafe void Write(Stream stream, Tensor t)
    {
        var fileType = t.DType == DType.BF16 ? DType.F32 : t.DType;
        stream.Write(EncodeHeader(fileType, t.Shape));
        if (t.NumEl == 0) return;
        Tensor c;
        using (GradMode.NoGrad())
        using (TensorScope.Suspend())
            c = Ops.Contiguous(t, fileType);
        try
        {
            byte* p = c.DataPtr;
            long left = c.NumEl * fileType.SizeOf();
            while (left > 0)
            {
                int chunk = (int)Math.Min(left, 1 << 26);
                stream.Write(new ReadOnlySpan<byte>(p, chunk));
                p += chunk;
                left -= chunk;
            }
        }
        finally
        {
            c.Dispose();
        }
    }

    /// <summary>The header bytes numpy writes for a C-order array of <paramref name="dtype"/> and <paramref name="shape"/>.</summary>
    public static byte[] EncodeHeader(DType dtype, ReadOnlySpan<int> shape)
    {
        var dict = new StringBuilder();
        dict.Append("{'descr': '").Append(Descr(dtype)).Append("', 'fortran_order': False, 'shape': ").Append(PythonTuple(shape)).Append(", }");
        if (shape.Length > 0) dict.Append(' ', GrowthAxisMaxDigits - shape[0].ToString(CultureInfo.InvariantCulture).Length);
        int hlen = dict.Length + 1; // + the final newline
        // numpy pads with a full 64 bytes when already aligned (ARRAY_ALIGN - 0); keep that quirk for byte equality.
        int pad = ArrayAlign - (Magic.Length + 2 + 2 + hlen) % ArrayAlign;
        dict.Append(' ', pad).Append('\n');
        var text = Encoding.Latin1.GetBytes(dict.ToString());
        var result = new byte[Magic.Length + 2 + 2 + text.Length];
        Magic.CopyTo(result, 0);
        result[6] = 1;
        result[7] = 0;
        BinaryPrimitives.WriteUInt16LittleEndian(result.AsSpan(8), checked((ushort)text.Length));
        text.CopyTo(result, 10);
        return result;
    }

    static string Descr(DType t) => t switch
    {
        DType.F32 => "<f4",
        DType.F16 => "<f2",
        DType.I64 => "<i8",
        DType.I32 => "<i4",
        DType.U8 => "|u1",
        DType.Bool => "|b1",
        _ => throw new ArgumentException($"npy: no NumPy dtype for {t}"),
    };

    /// <summary>Python's repr of a tuple of ints: <c>()</c>, <c>(5,)</c>, <c>(3, 4)</c>.</summary>
    static string PythonTuple(ReadOnlySpan<int> shape)
    {
        if (shape.Length == 1) return $"({shape[0]},)";
        var sb = new StringBuilder("(");
        for (int i = 0; i < shape.Length; i++) { if (i > 0) sb.Append(", "); sb.Append(shape[i].ToString(CultureInfo.InvariantCulture)); }
        return sb.Append(')').ToString();
    }

    public static Tensor Read(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        return Read(fs, path);
    }

    /// <summary>Reads an .npy stream into a new contiguous tensor (<paramref name="name"/> is used in error messages).</summary>
    public static unsafe Tensor Read(Stream stream, string name = "<stream>")
    {
        CheckpointFormatException Bad(string problem) => new(name, null, "npy: " + problem);
        Span<byte> pre = stackalloc byte[8];
        if (stream.ReadAtLeast(pre, 8, throwOnEndOfStream: false) < 8 || !pre[..6].SequenceEqual(Magic))
            throw Bad("missing the \\x93NUMPY magic (not an .npy file)");
        int major = pre[6];
        int headerLen;
        if (major == 1)
        {
            Span<byte> l = stackalloc byte[2];
            if (stream.ReadAtLeast(l, 2, false) < 2) throw Bad("truncated header length");
            headerLen = BinaryPrimitives.ReadUInt16LittleEndian(l);
        }
        else if (major is 2 or 3)
        {
            Span<byte> l = stackalloc byte[4];
            if (stream.ReadAtLeast(l, 4, false) < 4) throw Bad("truncated header length");
            uint n = BinaryPrimitives.ReadUInt32LittleEndian(l);
            if (n > 1 << 24) throw Bad($"header length {n} is implausibly large");
            headerLen = (int)n;
        }
        else throw Bad($"unsupported format version {major}.{pre[7]}");
        var hb = new byte[headerLen];
        if (stream.ReadAtLeast(hb, headerLen, false) < headerLen) throw Bad("truncated header");
        string header = (major == 3 ? Encoding.UTF8 : Encoding.Latin1).GetString(hb);

        var descr = DescrRegex().Match(header);
        var fortran = FortranRegex().Match(header);
        var shapeM = ShapeRegex().Match(header);
        if (!descr.Success || !fortran.Success || !shapeM.Success) throw Bad($"cannot parse header {header.Trim()}");
        var dims = shapeM.Groups[1].Value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Select(s => int.TryParse(s.TrimEnd('L'), NumberStyles.None, CultureInfo.InvariantCulture, out int d) ? d : throw Bad($"bad shape entry '{s}'"))
            .ToArray();
        bool isFortran = fortran.Groups[1].Value == "True";
        bool isF64 = descr.Groups[1].Value == "<f8"; // narrowed to F32 while reading
        DType tensorType = descr.Groups[1].Value switch
        {
            "<f4" or "<f8" => DType.F32,
            "<f2" => DType.F16,
            "<i8" => DType.I64,
            "<i4" => DType.I32,
            "|u1" or "<u1" => DType.U8,
            "|b1" => DType.Bool,
            var d => throw Bad($"unsupported dtype '{d}' (supported: <f4 <f8 <f2 <i8 <i4 |u1 |b1)"),
        };
        // Fortran order stores the transpose in C order: read [dN..d1] and permute back.
        var fileShape = isFortran ? dims.Reverse().ToArray() : dims;
        long numel = Tensor.Product(fileShape);
        int elem = tensorType.SizeOf();
        var raw = Tensor.Empty(fileShape, tensorType);
        try
        {
            if (isF64)
            {
                var buf = new byte[checked(numel * 8)];
                if (stream.ReadAtLeast(buf, buf.Length, false) < buf.Length) throw Bad($"data truncated (needs {buf.Length} bytes)");
                float* dst = raw.F32Ptr;
                for (long i = 0; i < numel; i++) dst[i] = (float)BinaryPrimitives.ReadDoubleLittleEndian(buf.AsSpan((int)(i * 8)));
            }
            else
            {
                long left = numel * elem;
                byte* p = raw.DataPtr;
                while (left > 0)
                {
                    int chunk = (int)Math.Min(left, 1 << 26);
                    if (stream.ReadAtLeast(new Span<byte>(p, chunk), chunk, false) < chunk) throw Bad($"data truncated (needs {numel * elem} bytes)");
                    p += chunk;
                    left -= chunk;
                }
            }
        }
        catch
        {
            raw.Dispose();
            throw;
        }
        if (!isFortran || dims.Length < 2) return raw;
        using (GradMode.NoGrad())
        {
            using var view = Ops.Permute(raw, Enumerable.Range(0, dims.Length).Reverse().ToArray());
            raw.Dispose();
            return Ops.Contiguous(view);
        }
    }

    [GeneratedRegex(@"'descr'\s*:\s*'([^']*)'")]
    private static partial Regex DescrRegex();
    [GeneratedRegex(@"'fortran_order'\s*:\s*(True|False)")]
    private static partial Regex FortranRegex();
    [GeneratedRegex(@"'shape'\s*:\s*\(([^)]*)\)")]
    private static partial Regex ShapeRegex();
}
