using System.Runtime.CompilerServices;
using MMSharp.Engine;

namespace MMSharp.Tests.Engine;

/// <summary>WeightArena: placement, copies, lifetime (its huge pages: <see cref="HugePagesTests"/>).</summary>
public sealed unsafe class WeightArenaTests
{
    [Fact]
    public void Empty_GivesDisjointContiguousTensors_SmallOnesSharingABlock_LargeOnesAlone()
    {
        var arena = new WeightArena();
        using var a = arena.Empty([3, 5], DType.BF16);
        using var b = arena.Empty([7], DType.F32);
        using var big = arena.Empty([5 << 20], DType.F32);                 // 20 MiB: more than a quarter of a block
        Assert.True(a.IsContiguous && b.IsContiguous && big.IsContiguous);
        Assert.Same(a.Storage.Owner, b.Storage.Owner);
        Assert.NotSame(a.Storage.Owner, big.Storage.Owner);
        Assert.Equal(0, (nint)a.DataPtr % BufferPool.Alignment);
        Assert.Equal(0, (nint)b.DataPtr % BufferPool.Alignment);
        Assert.True(b.DataPtr >= a.DataPtr + 30, "b overlaps a");
        Assert.Equal(30 + 28 + (20L << 20), arena.AllocatedBytes);

        // every element writable and kept apart
        for (int i = 0; i < 15; i++) ((ushort*)a.DataPtr)[i] = (ushort)(i + 1);
        for (int i = 0; i < 7; i++) b.F32Ptr[i] = -i;
        new Span<float>(big.F32Ptr, 5 << 20).Fill(2f);
        for (int i = 0; i < 15; i++) Assert.Equal((ushort)(i + 1), ((ushort*)a.DataPtr)[i]);
        Assert.Equal([0f, -1, -2, -3, -4, -5, -6], b.ToFloatArray());
    }

    [Fact]
    public void Copy_KeepsDTypeValuesAndName_AndMakesAStridedSourceContiguous()
    {
        var arena = new WeightArena();
        using var src = Tensor.FromArray(Enumerable.Range(0, 12).Select(i => i * 0.5f).ToArray(), 3, 4);
        using var bf = Ops.To(src, DType.BF16);
        bf.Name = "layer.weight";
        using var copy = arena.Copy(bf);
        Assert.Equal(DType.BF16, copy.DType);
        Assert.Equal("layer.weight", copy.Name);
        Assert.Equal(bf.ToFloatArray(), copy.ToFloatArray());
        Assert.NotEqual((nint)bf.DataPtr, (nint)copy.DataPtr);

        using var t = src.Transpose(0, 1);
        using var tc = arena.Copy(t);
        Assert.True(tc.IsContiguous);
        Assert.Equal(new[] { 4, 3 }, tc.Shape);
        using var expected = Ops.Contiguous(t);
        Assert.Equal(expected.ToFloatArray(), tc.ToFloatArray());
    }

    [Fact]
    public void Tensors_OutliveTheArenaObject_ThroughTheirStorage()
    {
        var (small, big) = FromDroppedArena();
        for (int i = 0; i < 3; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        Assert.All(small.ToFloatArray(), v => Assert.Equal(3f, v));
        Assert.All(big.ToFloatArray(), v => Assert.Equal(4f, v));
        small.Dispose();
        big.Dispose();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    static (Tensor Small, Tensor Big) FromDroppedArena()
    {
        var arena = new WeightArena();
        var small = arena.Empty([100], DType.F32);
        var big = arena.Empty([6 << 20], DType.F32);
        new Span<float>(small.F32Ptr, 100).Fill(3f);
        new Span<float>(big.F32Ptr, 6 << 20).Fill(4f);
        return (small, big);
    }
}
