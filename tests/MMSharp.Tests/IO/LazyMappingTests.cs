using MMSharp.Engine;
using MMSharp.Engine.IO;

namespace MMSharp.Tests.IO;

public sealed class LazyMappingTests : IDisposable
{
    readonly TempDir _dir = new();
    public void Dispose() => _dir.Dispose();

    [Fact]
    public unsafe void Get_MapsA100MBTensorWithoutCopying()
    {
        const int n = 27_000_000; // 108 MB of F32
        string path = _dir.File("big.safetensors");
        using (var big = Tensor.Zeros(n))
        {
            big.SetFlat(0, 1.5);
            big.SetFlat(n / 2, -2.5);
            big.SetFlat(n - 1, 3.5);
            using var small = Tensor.FromArray([9f], 1);
            SafeTensorsWriter.Write(path, [new("big", big), new("small", small)]);
        }
        Assert.True(new FileInfo(path).Length > 100_000_000);

        using var r = new SafeTensorsReader(path);
        // this thread's managed allocations only: tests running in parallel allocate too
        long before = GC.GetAllocatedBytesForCurrentThread();
        using var t = r.Get("big");
        float first = t.GetFlat(0), mid = t.GetFlat(n / 2), last = t.GetFlat(n - 1);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal((1.5f, -2.5f, 3.5f), (first, mid, last));
        Assert.True(allocated < 1_000_000, $"Get allocated {allocated} bytes: the data was copied");
        Assert.True(r.Owns(t.Storage));
        Assert.True(t.Storage.ReadOnly);
        Assert.Equal((long)n * 4, t.Storage.ByteLength);
        Assert.Equal(1, r.LiveTensors);
    }

    [Fact]
    public void Tensor_OutlivesItsReader_AndTheMappingIsReleasedOnlyWhenTensorsAreGone()
    {
        string path = _dir.File("life.safetensors");
        using (var w = Tensor.FromArray([1f, 2f, 3f, 4f], 2, 2))
            SafeTensorsWriter.Write(path, [new("w", w)]);

        var r = new SafeTensorsReader(path);
        var t = r.Get("w");
        var view = Ops.Transpose(t, 0, 1);
        r.Dispose();
        Assert.False(r.IsUnmapped);                  // tensors still use the mapping
        t.Dispose();
        Assert.Equal([1f, 3f, 2f, 4f], view.ToFloatArray()); // the view holds its own reference
        Assert.Throws<ObjectDisposedException>(() => r.Get("w"));
        view.Dispose();

        var r2 = new SafeTensorsReader(path);
        var t2 = r2.Get("w");
        t2.Dispose();
        r2.Dispose();
        Assert.True(r2.IsUnmapped);                  // nothing in use: unmapped at once
    }

    [Fact]
    public void Info_ReadsHeaderOnly_WithoutMappingTheFile()
    {
        string path = _dir.File("info.safetensors");
        using (var w = Tensor.Zeros([3, 5], DType.BF16))
            SafeTensorsWriter.Write(path, [new("w", w)]);
        using var r = new SafeTensorsReader(path);
        var info = r.Info("w");
        Assert.Equal(DType.BF16, info.DType);
        Assert.Equal([3, 5], info.Shape);
        Assert.Equal(30, info.ByteLength);
        Assert.Equal(0, r.LiveTensors);
        Assert.False(r.Owns(Tensor.Zeros(1).Storage));
    }
}
