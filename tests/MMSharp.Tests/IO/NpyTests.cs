using System.Text;
using MMSharp.Engine;
using MMSharp.Engine.IO;

namespace MMSharp.Tests.IO;

public sealed class NpyTests : IDisposable
{
    readonly TempDir _dir = new();
    public void Dispose() => _dir.Dispose();

    /// <summary>
    /// The bytes numpy.save writes before the data (format 1.0, numpy ≥ 1.23): magic, version, u16 header length,
    /// the dict, 21 - digits(shape[0]) growth spaces, then spaces and '\n' up to a multiple of 64.
    /// </summary>
    static byte[] NumpyHeader(string dict, int growth, int totalLength)
    {
        int hlen = totalLength - 10;
        var text = dict + new string(' ', hlen - dict.Length - 1) + "\n";
        Assert.True(hlen - dict.Length - 1 >= growth);
        return [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0, (byte)(hlen & 0xFF), (byte)(hlen >> 8), .. Encoding.ASCII.GetBytes(text)];
    }

    [Fact]
    public void EncodeHeader_EqualsLiteralNumpyBytes_ForFloat32_3x4()
    {
        // The first 128 bytes of np.save('a.npy', np.zeros((3, 4), np.float32)): header length 0x76 = 118,
        // 59-byte dict, 20 growth spaces + 38 alignment spaces, newline.
        const string expected = "\u0093NUMPY\u0001\u0000\u0076\u0000{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }"
            + "                                                          \n";
        Assert.Equal(128, expected.Length);
        Assert.Equal(Encoding.Latin1.GetBytes(expected), Npy.EncodeHeader(DType.F32, [3, 4]));
    }

    [Fact]
    public void EncodeHeader_MatchesNumpyBytes_For2D1DAndScalar()
    {
        Assert.Equal(
            NumpyHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", growth: 20, totalLength: 128),
            Npy.EncodeHeader(DType.F32, [3, 4]));
        Assert.Equal(
            NumpyHeader("{'descr': '<i8', 'fortran_order': False, 'shape': (5,), }", growth: 20, totalLength: 128),
            Npy.EncodeHeader(DType.I64, [5]));
        Assert.Equal(
            NumpyHeader("{'descr': '|b1', 'fortran_order': False, 'shape': (), }", growth: 0, totalLength: 128),
            Npy.EncodeHeader(DType.Bool, []));
        Assert.Equal(
            NumpyHeader("{'descr': '<f2', 'fortran_order': False, 'shape': (1000, 7), }", growth: 17, totalLength: 128),
            Npy.EncodeHeader(DType.F16, [1000, 7]));
    }

    [Fact]
    public void EncodeHeader_PadsAFull64Bytes_WhenAlreadyAligned_AsNumpyDoes()
    {
        // 10 + len(dict) + 20 growth + 1 newline = 128 exactly; numpy then still adds ARRAY_ALIGN spaces.
        int[] shape = [2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 10, 10];
        var dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 10, 10), }";
        Assert.Equal(NumpyHeader(dict, growth: 20, totalLength: 192), Npy.EncodeHeader(DType.F32, shape));
    }

    [Fact]
    public void Write_StartsDataAt64ByteBoundary_WithLittleEndianCOrderValues()
    {
        using var x = Tensor.FromArray([1f, 2f, 3f, 4f, 5f, 6f], 2, 3);
        using var xt = Ops.Transpose(x, 0, 1); // [3, 2], written in its own row-major order
        string path = _dir.File("t.npy");
        Npy.Write(path, xt);
        var bytes = File.ReadAllBytes(path);
        Assert.Equal(128 + 6 * 4, bytes.Length);
        var data = new float[6];
        Buffer.BlockCopy(bytes, 128, data, 0, 24);
        Assert.Equal([1f, 4f, 2f, 5f, 3f, 6f], data);
    }

    public static IEnumerable<object[]> DTypes() =>
        new[] { DType.F32, DType.F16, DType.I64, DType.I32, DType.U8, DType.Bool }.Select(d => new object[] { d });

    [Theory]
    [MemberData(nameof(DTypes))]
    public void RoundTrip_KeepsValuesShapeAndDType(DType dtype)
    {
        foreach (int[] shape in new[] { new[] { 3, 4 }, new[] { 5 }, Array.Empty<int>(), new[] { 2, 0, 3 }, new[] { 2, 3, 5 } })
        {
            using var x = SafeTensorsRoundTripTests.Sample(dtype, shape, shape.Length);
            string path = _dir.File($"rt-{dtype}-{shape.Length}.npy");
            Npy.Write(path, x);
            using var back = Npy.Read(path);
            SafeTensorsRoundTripTests.AssertSameValues(x, back);
        }
    }

    [Fact]
    public void Write_WidensBF16ToFloat32()
    {
        using var x = SafeTensorsRoundTripTests.Sample(DType.BF16, [7], 1);
        string path = _dir.File("bf16.npy");
        Npy.Write(path, x);
        Assert.Equal(Npy.EncodeHeader(DType.F32, [7]), File.ReadAllBytes(path)[..128]);
        using var back = Npy.Read(path);
        Assert.Equal(DType.F32, back.DType);
        Assert.Equal(x.ToFloatArray(), back.ToFloatArray());
    }

    [Fact]
    public void Read_HandlesFortranOrderAndFloat64()
    {
        // numpy.save(np.asfortranarray(np.arange(6, dtype='<f8').reshape(2, 3)))
        var dict = "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }";
        var header = NumpyHeader(dict, growth: 20, totalLength: 128);
        double[] columnMajor = [0, 3, 1, 4, 2, 5];
        var bytes = header.Concat(columnMajor.SelectMany(BitConverter.GetBytes)).ToArray();
        using var back = Npy.Read(new MemoryStream(bytes));
        Assert.Equal(DType.F32, back.DType);
        Assert.Equal([2, 3], back.Shape);
        Assert.Equal([0f, 1f, 2f, 3f, 4f, 5f], back.ToFloatArray());
    }

    [Fact]
    public void Read_ThrowsNamingFile_WhenFileIsNotNpyOrTruncated()
    {
        string path = _dir.File("bad.npy");
        File.WriteAllBytes(path, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        var ex = Assert.Throws<CheckpointFormatException>(() => Npy.Read(path));
        Assert.Equal(path, ex.FilePath);
        Assert.Contains("magic", ex.Message);

        using var x = Tensor.Zeros(16);
        Npy.Write(path, x);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^4]);
        ex = Assert.Throws<CheckpointFormatException>(() => Npy.Read(path));
        Assert.Contains("truncated", ex.Message);
    }
}
