using System.Buffers.Binary;
using System.Text;
using MMSharp.Engine;
using MMSharp.Engine.IO;

namespace MMSharp.Tests.IO;

/// <summary>Every malformed file gives a <see cref="CheckpointFormatException"/> naming the file (and the tensor) — never a crash or garbage.</summary>
public sealed class SafeTensorsCorruptionTests : IDisposable
{
    readonly TempDir _dir = new();
    public void Dispose() => _dir.Dispose();

    /// <summary>Writes [u64 header length][header][data] by hand.</summary>
    string Raw(string name, string header, int dataBytes, ulong? lengthOverride = null)
    {
        var h = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + h.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, lengthOverride ?? (ulong)h.Length);
        h.CopyTo(bytes, 8);
        string path = _dir.File(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    static CheckpointFormatException OpenFails(string path, string? tensor, params string[] fragments)
    {
        var ex = Assert.Throws<CheckpointFormatException>(() => new SafeTensorsReader(path).Dispose());
        Assert.Equal(path, ex.FilePath);
        Assert.StartsWith(path, ex.Message);
        Assert.Equal(tensor, ex.TensorName);
        if (tensor != null) Assert.Contains($"'{tensor}'", ex.Message);
        foreach (var f in fragments) Assert.Contains(f, ex.Message);
        return ex;
    }

    [Fact]
    public void Open_ThrowsNamingFileAndTensor_WhenDataIsTruncated()
    {
        using var a = Tensor.Zeros(4);
        using var b = Tensor.Zeros(6);
        string path = _dir.File("trunc.safetensors");
        SafeTensorsWriter.Write(path, [new("a", a), new("b", b)]);
        using (var fs = new FileStream(path, FileMode.Open)) fs.SetLength(fs.Length - 3);
        OpenFails(path, "b", "past the end of the data section", "truncated");
    }

    [Fact]
    public void Open_Throws_ForEveryTruncationOfAValidFile()
    {
        using var a = Tensor.FromArray([1f, 2f, 3f], 3);
        using var b = Tensor.FromArray([7L, 8L], 2);
        string good = _dir.File("good.safetensors");
        SafeTensorsWriter.Write(good, [new("a", a), new("b", b)], new Dictionary<string, string> { ["k"] = "v" });
        var bytes = File.ReadAllBytes(good);
        for (int len = 0; len < bytes.Length; len++)
        {
            string path = _dir.File($"cut{len}.safetensors");
            File.WriteAllBytes(path, bytes[..len]);
            var ex = Assert.Throws<CheckpointFormatException>(() => new SafeTensorsReader(path).Dispose());
            Assert.Equal(path, ex.FilePath);
        }
    }

    [Fact]
    public void Open_NeverFailsOtherwise_WhenHeaderBytesAreFlipped()
    {
        using var a = Tensor.FromArray([1f, 2f, 3f], 3);
        using var b = Tensor.FromArray([7L, 8L], 2);
        string good = _dir.File("good.safetensors");
        SafeTensorsWriter.Write(good, [new("a", a), new("b", b)]);
        var bytes = File.ReadAllBytes(good);
        int headerEnd = 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        var rng = new Rng(12345);
        string path = _dir.File("flip.safetensors");
        for (int trial = 0; trial < 400; trial++)
        {
            var copy = (byte[])bytes.Clone();
            int pos = (int)(rng.NextFloat() * headerEnd);
            copy[pos] = (byte)(rng.NextFloat() * 256);
            File.WriteAllBytes(path, copy);
            try
            {
                using var r = new SafeTensorsReader(path);
                foreach (var n in r.Names)
                {
                    try { using var t = r.Get(n); _ = t.ToFloatArray(); }
                    catch (CheckpointFormatException) { } // e.g. a dtype flipped to one MMSharp cannot hold
                }
            }
            catch (CheckpointFormatException e)
            {
                Assert.Equal(path, e.FilePath);
            }
        }
    }

    [Fact]
    public void Open_ThrowsNamingFile_WhenHeaderLengthRunsPastEndOfFile()
    {
        string path = Raw("past.safetensors", "{}", 0, lengthOverride: 5000);
        OpenFails(path, null, "header length 5000", "past the end of the file");
    }

    [Fact]
    public void Open_ThrowsNamingFile_WhenHeaderLengthExceedsCap()
    {
        string path = Raw("cap.safetensors", "{}", 0, lengthOverride: 200_000_000);
        OpenFails(path, null, "exceeds the cap");
    }

    [Fact]
    public void Open_ThrowsNamingFile_WhenFileIsShorterThanLengthPrefix()
    {
        string path = _dir.File("tiny.safetensors");
        File.WriteAllBytes(path, [1, 2, 3]);
        OpenFails(path, null, "too short");
    }

    [Fact]
    public void Open_ThrowsNamingFile_WhenHeaderIsNotJson()
    {
        string path = Raw("json.safetensors", "{\"a\": {\"dtype\": \"F32\", ", 0);
        OpenFails(path, null, "not valid JSON");
        path = Raw("array.safetensors", "[1, 2]", 0);
        OpenFails(path, null, "must be a JSON object");
    }

    [Fact]
    public void Open_ThrowsNamingTensor_WhenOffsetsOverlap()
    {
        string path = Raw("overlap.safetensors",
            """{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}""", 16);
        OpenFails(path, "b", "overlap tensor 'a'");
    }

    [Fact]
    public void Open_ThrowsNamingTensor_WhenByteLengthDoesNotMatchShape()
    {
        string path = Raw("len.safetensors", """{"w":{"dtype":"BF16","shape":[3,2],"data_offsets":[0,16]}}""", 16);
        OpenFails(path, "w", "needs 12 bytes", "give 16");
    }

    [Fact]
    public void Open_ThrowsNamingTensor_WhenOffsetsAreOutOfRange()
    {
        string path = Raw("range.safetensors", """{"w":{"dtype":"F32","shape":[4],"data_offsets":[16,32]}}""", 20);
        OpenFails(path, "w", "[16, 32]", "data section (20 bytes)");
        path = Raw("reversed.safetensors", """{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}""", 20);
        OpenFails(path, "w", "begin after end");
        path = Raw("negative.safetensors", """{"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}""", 20);
        OpenFails(path, "w", "non-negative");
    }

    [Fact]
    public void Open_ThrowsNamingTensor_WhenDTypeIsUnknown()
    {
        string path = Raw("dtype.safetensors", """{"w":{"dtype":"Q4_K","shape":[4],"data_offsets":[0,16]}}""", 16);
        OpenFails(path, "w", "unknown dtype 'Q4_K'");
    }

    [Fact]
    public void Get_ThrowsNamingFileAndTensor_WhenDTypeIsKnownButUnsupported_WhileOtherTensorsLoad()
    {
        string path = Raw("f64.safetensors",
            """{"d":{"dtype":"F64","shape":[2],"data_offsets":[0,16]},"f":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}}""", 24);
        using var r = new SafeTensorsReader(path);
        var info = r.Info("d");
        Assert.Equal("F64", info.DTypeName);
        Assert.False(info.IsSupported);
        var ex = Assert.Throws<CheckpointFormatException>(() => r.Get("d"));
        Assert.Equal(path, ex.FilePath);
        Assert.Equal("d", ex.TensorName);
        Assert.Contains("unsupported dtype F64", ex.Message);
        Assert.Throws<CheckpointFormatException>(() => info.DType);
        using var f = r.Get("f");
        Assert.Equal([0f, 0f], f.ToFloatArray());
    }

    [Fact]
    public void Open_ThrowsNamingTensor_WhenEntryIsMalformed()
    {
        OpenFails(Raw("noshape.safetensors", """{"w":{"dtype":"F32","data_offsets":[0,4]}}""", 4), "w", "'shape'");
        OpenFails(Raw("nooffsets.safetensors", """{"w":{"dtype":"F32","shape":[1]}}""", 4), "w", "data_offsets");
        OpenFails(Raw("nodtype.safetensors", """{"w":{"shape":[1],"data_offsets":[0,4]}}""", 4), "w", "'dtype'");
        OpenFails(Raw("baddim.safetensors", """{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}""", 4), "w", "shape entry 0");
        OpenFails(Raw("huge.safetensors", """{"w":{"dtype":"F32","shape":[2147483647,2147483647,2147483647],"data_offsets":[0,4]}}""", 4), "w", "too large");
        OpenFails(Raw("twice.safetensors", """{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8), "w", "twice");
        OpenFails(Raw("meta.safetensors", """{"__metadata__":{"k":3}}""", 0), null, "__metadata__", "'k'");
    }
}
