using System.Text.Json;
using MMSharp.Engine;
using MMSharp.Engine.IO;

namespace MMSharp.Tests.IO;

public sealed class ShardedCheckpointTests : IDisposable
{
    readonly TempDir _dir = new();
    public void Dispose() => _dir.Dispose();

    static List<KeyValuePair<string, Tensor>> Tensors() =>
    [
        new("embed.weight", SafeTensorsRoundTripTests.Sample(DType.BF16, [10, 8], 1)),   // 160 bytes
        new("layers.0.weight", SafeTensorsRoundTripTests.Sample(DType.F32, [8, 8], 2)),  // 256 bytes
        new("layers.0.bias", SafeTensorsRoundTripTests.Sample(DType.F32, [8], 3)),       // 32 bytes
        new("layers.1.weight", SafeTensorsRoundTripTests.Sample(DType.F32, [8, 8], 4)),  // 256 bytes
        new("positions", SafeTensorsRoundTripTests.Sample(DType.I64, [5], 5)),           // 40 bytes
    ];

    [Fact]
    public void WriteSharded_SplitsByMaxSize_AndReadsBackThroughTheIndex()
    {
        var tensors = Tensors();
        var files = SafeTensorsWriter.WriteSharded(_dir.Path, tensors, maxShardBytes: 300);

        // Greedy in order: [embed], [layers.0.weight, layers.0.bias], [layers.1.weight, positions]
        string[] expected =
        [
            "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors",
            "model.safetensors.index.json",
        ];
        Assert.Equal(expected, files.Select(Path.GetFileName));

        using (var doc = JsonDocument.Parse(File.ReadAllBytes(_dir.File("model.safetensors.index.json"))))
        {
            Assert.Equal(160 + 256 + 32 + 256 + 40, doc.RootElement.GetProperty("metadata").GetProperty("total_size").GetInt64());
            Assert.Equal("model-00002-of-00003.safetensors", doc.RootElement.GetProperty("weight_map").GetProperty("layers.0.bias").GetString());
        }

        using var r = CheckpointReader.Open(_dir.Path);
        var sharded = Assert.IsType<ShardedCheckpointReader>(r);
        Assert.Equal(744, sharded.TotalSize);
        Assert.Equal(tensors.Select(t => t.Key).Order(), r.Names.Order());
        foreach (var (name, t) in tensors)
        {
            Assert.True(r.Has(name));
            Assert.Equal(t.Shape, r.Info(name).Shape);
            using var back = r.Get(name);
            SafeTensorsRoundTripTests.AssertSameValues(t, back);
        }
        foreach (var (_, t) in tensors) t.Dispose();
    }

    [Fact]
    public void WriteSharded_WritesOneFileWithoutIndex_WhenEverythingFits_AndRemovesStaleShards()
    {
        var tensors = Tensors();
        SafeTensorsWriter.WriteSharded(_dir.Path, tensors, maxShardBytes: 300);
        var files = SafeTensorsWriter.WriteSharded(_dir.Path, tensors, maxShardBytes: 1 << 20);
        Assert.Equal(["model.safetensors"], files.Select(Path.GetFileName));
        Assert.Equal(["model.safetensors"], Directory.GetFiles(_dir.Path).Select(Path.GetFileName));
        using var r = CheckpointReader.Open(_dir.Path);
        Assert.IsType<SafeTensorsReader>(r);
        Assert.Equal(5, r.Names.Count);
        foreach (var (_, t) in tensors) t.Dispose();
    }

    [Fact]
    public void Open_ThrowsNamingShardFileAndTensor_WhenShardIsMissing()
    {
        var tensors = Tensors();
        SafeTensorsWriter.WriteSharded(_dir.Path, tensors, maxShardBytes: 300);
        File.Delete(_dir.File("model-00002-of-00003.safetensors"));
        var ex = Assert.Throws<CheckpointFormatException>(() => CheckpointReader.Open(_dir.Path));
        Assert.Equal(_dir.File("model.safetensors.index.json"), ex.FilePath);
        Assert.Contains("model-00002-of-00003.safetensors", ex.Message);
        Assert.Equal("layers.0.bias", ex.TensorName); // the index lists names sorted
        Assert.Contains("and 1 more", ex.Message);
        foreach (var (_, t) in tensors) t.Dispose();
    }

    [Fact]
    public void Get_ThrowsNamingShardAndTensor_WhenIndexPointsToTheWrongShard()
    {
        var tensors = Tensors();
        SafeTensorsWriter.WriteSharded(_dir.Path, tensors, maxShardBytes: 300);
        string index = _dir.File("model.safetensors.index.json");
        File.WriteAllText(index, File.ReadAllText(index).Replace(
            "\"layers.0.bias\": \"model-00002-of-00003.safetensors\"", "\"layers.0.bias\": \"model-00001-of-00003.safetensors\""));
        using var r = CheckpointReader.Open(_dir.Path);
        var ex = Assert.Throws<CheckpointFormatException>(() => r.Info("layers.0.bias"));
        Assert.Equal("layers.0.bias", ex.TensorName);
        Assert.EndsWith("model-00001-of-00003.safetensors", ex.FilePath);
        var missing = Assert.Throws<KeyNotFoundException>(() => r.Get("layers.9.weight"));
        Assert.Contains("'layers.9.weight'", missing.Message);
        foreach (var (_, t) in tensors) t.Dispose();
    }

    [Fact]
    public void OpenIndex_ThrowsNamingIndex_WhenJsonIsBadOrShardNameEscapes()
    {
        string index = _dir.File("model.safetensors.index.json");
        File.WriteAllText(index, "{\"weight_map\": ");
        var ex = Assert.Throws<CheckpointFormatException>(() => CheckpointReader.Open(index));
        Assert.Equal(index, ex.FilePath);
        File.WriteAllText(index, "{\"weight_map\": {\"w\": \"../etc/x.safetensors\"}}");
        ex = Assert.Throws<CheckpointFormatException>(() => CheckpointReader.Open(index));
        Assert.Equal("w", ex.TensorName);
    }
}
