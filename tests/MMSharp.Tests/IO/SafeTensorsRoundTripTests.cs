using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using MMSharp.Engine;
using MMSharp.Engine.IO;

namespace MMSharp.Tests.IO;

public sealed class SafeTensorsRoundTripTests : IDisposable
{
    readonly TempDir _dir = new();
    public void Dispose() => _dir.Dispose();

    /// <summary>A tensor of <paramref name="dtype"/> with distinct, exactly representable values.</summary>
    internal static Tensor Sample(DType dtype, int[] shape, int seed)
    {
        var t = Tensor.Empty(shape, dtype);
        var rng = new Rng((ulong)seed + 1);
        for (long i = 0; i < t.NumEl; i++)
        {
            double v = dtype switch
            {
                DType.Bool => rng.NextFloat() < 0.5 ? 0 : 1,
                DType.U8 => (int)(rng.NextFloat() * 255),
                DType.I64 => (long)((rng.NextFloat() - 0.5) * 1e12),
                DType.I32 => (int)((rng.NextFloat() - 0.5) * 2e9),
                _ => rng.NextNormal(),
            };
            t.SetFlat(i, v);
        }
        return t;
    }

    internal static void AssertSameValues(Tensor expected, Tensor actual)
    {
        Assert.Equal(expected.DType, actual.DType);
        Assert.Equal(expected.Shape, actual.Shape);
        if (expected.DType.IsFloat()) Assert.Equal(expected.ToFloatArray(), actual.ToFloatArray());
        else Assert.Equal(expected.ToLongArray(), actual.ToLongArray());
    }

    public static IEnumerable<object[]> AllDTypes() =>
        new[] { DType.F32, DType.BF16, DType.F16, DType.I64, DType.I32, DType.U8, DType.Bool }.Select(d => new object[] { d });

    [Theory]
    [MemberData(nameof(AllDTypes))]
    public void RoundTrip_KeepsValuesShapeAndDType_ForContiguousAndStridedSources(DType dtype)
    {
        using var plain = Sample(dtype, [3, 5], 1);
        using var baseT = Sample(dtype, [4, 7, 3], 2);
        using var transposed = Ops.Transpose(baseT, 0, 2);          // [3, 7, 4], non-contiguous
        using var narrowed = Ops.Narrow(baseT, 1, 2, 3);             // [4, 3, 3], offset + gaps
        using var scalar = Sample(dtype, [], 3);
        using var empty = Tensor.Empty([0, 4], dtype);
        Assert.False(transposed.IsContiguous);
        Assert.False(narrowed.IsContiguous);
        var tensors = new Dictionary<string, Tensor>
        {
            ["plain"] = plain, ["transposed"] = transposed, ["narrowed"] = narrowed, ["scalar"] = scalar, ["empty"] = empty,
        };
        string path = _dir.File($"rt-{dtype}.safetensors");
        SafeTensorsWriter.Write(path, tensors, new Dictionary<string, string> { ["format"] = "pt", ["note"] = "ünïcode + \"quotes\"" });

        using var r = new SafeTensorsReader(path);
        Assert.Equal(tensors.Keys.Order(), r.Names.Order());
        Assert.Equal("pt", r.Metadata["format"]);
        Assert.Equal("ünïcode + \"quotes\"", r.Metadata["note"]);
        foreach (var (name, t) in tensors)
        {
            var info = r.Info(name);
            Assert.Equal(dtype, info.DType);
            Assert.Equal(t.Shape, info.Shape);
            using var back = r.Get(name);
            Assert.True(back.IsContiguous);
            Assert.Equal(name, back.Name);
            AssertSameValues(t, back);
        }
    }

    [Fact]
    public void Write_PadsHeaderTo8Bytes_AndAlignsEveryTensorToItsElementSize()
    {
        using var a = Sample(DType.U8, [3], 1);
        using var b = Sample(DType.BF16, [5], 2);
        using var c = Sample(DType.I64, [2], 3);
        using var d = Sample(DType.F32, [7], 4);
        using var e = Sample(DType.Bool, [1], 5);
        string path = _dir.File("align.safetensors");
        SafeTensorsWriter.Write(path, new Dictionary<string, Tensor> { ["a"] = a, ["b"] = b, ["c"] = c, ["d"] = d, ["e"] = e });

        var bytes = File.ReadAllBytes(path);
        long n = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0, (8 + n) % 8);
        var header = Encoding.UTF8.GetString(bytes, 8, (int)n);
        Assert.EndsWith("}", header.TrimEnd(' ')); // padding is trailing spaces only
        using var doc = JsonDocument.Parse(header);
        long end = 0;
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            long begin = p.Value.GetProperty("data_offsets")[0].GetInt64();
            int size = p.Value.GetProperty("dtype").GetString() switch { "I64" => 8, "F32" => 4, "BF16" => 2, _ => 1 };
            Assert.Equal(0, (8 + n + begin) % size);
            end = Math.Max(end, p.Value.GetProperty("data_offsets")[1].GetInt64());
        }
        Assert.Equal(bytes.Length, 8 + n + end); // no gaps, no trailing bytes
    }

    [Fact]
    public void Write_MatchesTheReferenceImplementationBytes()
    {
        // safetensors' own Python test: save({"test": np.zeros((2, 2), dtype=np.int32)}) — a 60-byte header
        // padded with 4 spaces to 64 ('@'), then 16 zero bytes.
        byte[] expected =
        [
            (byte)'@', 0, 0, 0, 0, 0, 0, 0,
            .. Encoding.ASCII.GetBytes("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}    "),
            .. new byte[16],
        ];
        using var t = Tensor.FromArray(new int[4], 2, 2);
        string path = _dir.File("reference.safetensors");
        SafeTensorsWriter.Write(path, [new("test", t)]);
        Assert.Equal(expected, File.ReadAllBytes(path));
    }

    [Fact]
    public void Read_AcceptsMetadataAfterTensors_AsOtherWritersPlaceIt()
    {
        // A test vector of another implementation: header length 0x59, metadata last, 16 zero bytes.
        byte[] bytes =
        [
            0x59, 0, 0, 0, 0, 0, 0, 0,
            .. Encoding.ASCII.GetBytes("{\"test\":{\"dtype\":\"I32\",\"shape\":[2,2],\"data_offsets\":[0,16]},\"__metadata__\":{\"foo\":\"bar\"}}"),
            .. new byte[16],
        ];
        string path = _dir.File("vector.safetensors");
        File.WriteAllBytes(path, bytes);
        using var r = new SafeTensorsReader(path);
        Assert.Equal(["test"], r.Names);
        Assert.Equal("bar", r.Metadata["foo"]);
        using var t = r.Get("test");
        Assert.Equal(DType.I32, t.DType);
        Assert.Equal([0L, 0L, 0L, 0L], t.ToLongArray());
    }

    [Fact]
    public void Get_ReturnsReadOnlyTensor_ThatRejectsWrites()
    {
        using var x = Sample(DType.F32, [4], 1);
        string path = _dir.File("ro.safetensors");
        SafeTensorsWriter.Write(path, [new("x", x)]);
        using var r = new SafeTensorsReader(path);
        using var t = r.Get("x");
        Assert.True(t.Storage.ReadOnly);
        using var src = Tensor.Zeros(4);
        var ex = Assert.Throws<InvalidOperationException>(() => Ops.CopyInto(src, t));
        Assert.Contains("read-only", ex.Message);
    }

    [Fact]
    public void Write_ReplacesExistingFileAtomically_WhileItsTensorsAreStillMapped()
    {
        string path = _dir.File("overwrite.safetensors");
        using var one = Tensor.FromArray([1f, 2f, 3f], 3);
        using var two = Tensor.FromArray([4f, 5f], 2);
        SafeTensorsWriter.Write(path, [new("w", one)]);
        using var r = new SafeTensorsReader(path);
        using var old = r.Get("w");
        SafeTensorsWriter.Write(path, [new("w", two)]);
        Assert.Equal([1f, 2f, 3f], old.ToFloatArray()); // the old inode stays mapped
        using var r2 = new SafeTensorsReader(path);
        using var fresh = r2.Get("w");
        Assert.Equal([4f, 5f], fresh.ToFloatArray());
        Assert.Empty(Directory.GetFiles(_dir.Path, "*.tmp"));
        Assert.Empty(Directory.GetFiles(_dir.Path, ".*"));
    }

    [Fact]
    public void Write_ThrowsNamingTensor_WhenNameIsGivenTwiceOrReserved()
    {
        using var x = Tensor.Zeros(2);
        string path = _dir.File("dup.safetensors");
        var ex = Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path, [new("w", x), new("w", x)]));
        Assert.Contains("'w'", ex.Message);
        Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(path, [new("__metadata__", x)]));
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void Get_ThrowsNamingFileAndTensor_WhenNameIsUnknown()
    {
        using var x = Tensor.Zeros(2);
        string path = _dir.File("unknown.safetensors");
        SafeTensorsWriter.Write(path, [new("w", x)]);
        using var r = new SafeTensorsReader(path);
        Assert.False(r.Has("nope"));
        var ex = Assert.Throws<KeyNotFoundException>(() => r.Get("nope"));
        Assert.Contains(path, ex.Message);
        Assert.Contains("'nope'", ex.Message);
    }

    [Fact]
    public void Open_ReadsAnyCheckpointLayout_FromFileOrDirectory()
    {
        using var x = Tensor.FromArray([1f, 2f], 2);
        var single = Path.Combine(_dir.Path, "single");
        SafeTensorsWriter.Write(Path.Combine(single, "model.safetensors"), [new("x", x)]);
        using (var r = CheckpointReader.Open(single)) Assert.Equal(["x"], r.Names);
        using (var r = CheckpointReader.Open(Path.Combine(single, "model.safetensors"))) Assert.Equal(["x"], r.Names);

        // Two files without an index are read as one set.
        var pair = Path.Combine(_dir.Path, "pair");
        SafeTensorsWriter.Write(Path.Combine(pair, "a.safetensors"), [new("x", x)]);
        SafeTensorsWriter.Write(Path.Combine(pair, "b.safetensors"), [new("y", x)]);
        using (var r = CheckpointReader.Open(pair))
        {
            Assert.Equal(["x", "y"], r.Names);
            using var y = r.Get("y");
            Assert.Equal([1f, 2f], y.ToFloatArray());
        }
        SafeTensorsWriter.Write(Path.Combine(pair, "c.safetensors"), [new("x", x)]);
        var ex = Assert.Throws<CheckpointFormatException>(() => CheckpointReader.Open(pair));
        Assert.Equal("x", ex.TensorName);
        Assert.Contains("also stored in", ex.Message);
    }
}
