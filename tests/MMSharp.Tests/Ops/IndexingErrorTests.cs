using MMSharp.Engine;
using MMSharp.Engine.Autograd;

// not "MMSharp.Tests.Ops": a namespace of that name would hide the Ops class from every test file
namespace MMSharp.Tests.Indexing;

/// <summary>Indexing, joining and embedding ops fail loudly, naming the tensors and values involved.</summary>
public sealed class IndexingErrorTests
{
    [Fact]
    public void Embedding_ThrowsNamingIdAndVocabSize_WhenIdOutOfRange()
    {
        using var w = Tensor.Zeros(10, 4);
        w.Name = "embed_tokens.weight";
        using var ids = Tensor.FromArray(new long[] { 3, 9, 12, 0 }, 2, 2);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Ops.Embedding(ids, w));
        Assert.Contains("id 12", e.Message);
        Assert.Contains("vocabulary size 10", e.Message);
        Assert.Contains("[1, 0]", e.Message);
        Assert.Contains("embed_tokens.weight", e.Message);
    }

    [Fact]
    public void Embedding_ThrowsNamingId_WhenIdNegative()
    {
        using var w = Tensor.Zeros([7, 3], DType.BF16);
        using var ids = Tensor.FromArray(new int[] { 1, -1 }, 2);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Ops.Embedding(ids, w));
        Assert.Contains("id -1", e.Message);
        Assert.Contains("vocabulary size 7", e.Message);
    }

    [Fact]
    public void Embedding_Throws_WhenIdsAreFloat()
    {
        using var w = Tensor.Zeros(7, 3);
        using var ids = Tensor.FromArray(new float[] { 1, 2 }, 2);
        var e = Assert.Throws<ArgumentException>(() => Ops.Embedding(ids, w));
        Assert.Contains("integer", e.Message);
    }

    [Fact]
    public void MaskedScatter_ThrowsNamingCounts_WhenSourceHasTooFewElements()
    {
        using var x = Tensor.Zeros(2, 3, 4);
        using var mask = Tensor.FromArray(new[] { true, false, true, true, false, false }, 2, 3, 1);
        using var source = Tensor.Zeros(2, 4); // 8 elements, the mask selects 3 rows of 4 = 12
        source.Name = "vit_embeds";
        var e = Assert.Throws<ArgumentException>(() => Ops.MaskedScatter(x, mask, source));
        Assert.Contains("12 positions", e.Message);
        Assert.Contains("only 8 elements", e.Message);
        Assert.Contains("vit_embeds", e.Message);
    }

    [Fact]
    public void MaskedScatter_Throws_WhenMaskDoesNotBroadcast()
    {
        using var x = Tensor.Zeros(2, 3, 4);
        using var mask = Tensor.FromArray(new[] { true, false }, 2, 1, 1, 1);
        using var source = Tensor.Zeros(24);
        var e = Assert.Throws<ArgumentException>(() => Ops.MaskedScatter(x, mask, source));
        Assert.Contains("does not broadcast", e.Message);
    }

    [Fact]
    public void MaskedFill_Throws_WhenMaskIsNotBool()
    {
        using var x = Tensor.Zeros(2, 3);
        using var mask = Tensor.Zeros(2, 3);
        var e = Assert.Throws<ArgumentException>(() => Ops.MaskedFill(x, mask, 1f));
        Assert.Contains("MaskedFill", e.Message);
        Assert.Contains("Bool", e.Message);
    }

    [Fact]
    public void Concat_ThrowsNamingTensors_WhenShapesDiffer()
    {
        using var a = Tensor.Zeros(2, 3);
        using var b = Tensor.Zeros(2, 3);
        using var c = Tensor.Zeros(4, 5);
        a.Name = "text"; c.Name = "image";
        var e = Assert.Throws<ArgumentException>(() => Ops.Concat([a, b, c], 1));
        Assert.Contains("tensor 2", e.Message);
        Assert.Contains("'image' F32[4, 5]", e.Message);
        Assert.Contains("'text' F32[2, 3]", e.Message);
        Assert.Contains("outside dim 1", e.Message);
    }

    [Fact]
    public void Concat_ThrowsNamingTensors_WhenRanksDiffer()
    {
        using var a = Tensor.Zeros(2, 3);
        using var b = Tensor.Zeros(2, 3, 1);
        var e = Assert.Throws<ArgumentException>(() => Ops.Concat([a, b], 0));
        Assert.Contains("tensor 1", e.Message);
        Assert.Contains("F32[2, 3, 1]", e.Message);
    }

    [Fact]
    public void Concat_Throws_WhenDTypesDiffer()
    {
        using var a = Tensor.Zeros(2, 3);
        using var b = Tensor.Zeros([2, 3], DType.BF16);
        var e = Assert.Throws<ArgumentException>(() => Ops.Concat([a, b], 0));
        Assert.Contains("BF16", e.Message);
        Assert.Contains("tensor 1", e.Message);
    }

    [Fact]
    public void Stack_ThrowsNamingTensors_WhenShapesDiffer()
    {
        using var a = Tensor.Zeros(2, 3);
        using var b = Tensor.Zeros(3, 2);
        var e = Assert.Throws<ArgumentException>(() => Ops.Stack([a, b], 0));
        Assert.Contains("tensor 1", e.Message);
        Assert.Contains("F32[3, 2]", e.Message);
    }

    [Fact]
    public void Split_Throws_WhenSizesDoNotAddUp()
    {
        using var x = Tensor.Zeros(2, 7);
        var e = Assert.Throws<ArgumentException>(() => Ops.Split(x, [3, 3], 1));
        Assert.Contains("add up to 6", e.Message);
    }

    [Fact]
    public void IndexSelect_ThrowsNamingIndex_WhenOutOfRange()
    {
        using var x = Tensor.Zeros(4, 5);
        using var idx = Tensor.FromArray(new long[] { 0, 5 }, 2);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Ops.IndexSelect(x, 1, idx));
        Assert.Contains("index 5", e.Message);
        Assert.Contains("size 5", e.Message);
    }

    [Fact]
    public void Gather_Throws_WhenIndexLargerOutsideDim()
    {
        using var x = Tensor.Zeros(4, 5);
        using var idx = Tensor.FromArray(new long[10], 5, 2);
        var e = Assert.Throws<ArgumentException>(() => Ops.Gather(x, 1, idx));
        Assert.Contains("larger", e.Message);
    }

    [Fact]
    public void ScatterAdd_ThrowsNamingIndex_WhenOutOfRange()
    {
        using var x = Tensor.Zeros(3, 2);
        using var src = Tensor.Ones(2, 2);
        using var idx = Tensor.FromArray(new long[] { 0, 1, 3, 0 }, 2, 2);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Ops.ScatterAdd(x, 0, idx, src));
        Assert.Contains("index 3", e.Message);
    }

    [Fact]
    public void Pad_Throws_WhenCroppingBelowZero()
    {
        using var x = Tensor.Zeros(2, 3);
        var e = Assert.Throws<ArgumentException>(() => Ops.Pad(x, [-2, -2]));
        Assert.Contains("below zero", e.Message);
    }

    [Fact]
    public void AddInPlace_Throws_WhenDestinationRequiresGradAndGradModeIsOn()
    {
        using var w = Tensor.Zeros(3);
        w.RequiresGrad = true;
        using var d = Tensor.Ones(3);
        var e = Assert.Throws<InvalidOperationException>(() => Ops.AddInPlace(w, d, -0.1f));
        Assert.Contains("requires grad", e.Message);
        using (GradMode.NoGrad()) Ops.AddInPlace(w, d, -0.1f); // optimizer steps run without grad
        Assert.Equal(-0.1f, w.GetFlat(2), 6);
    }

    [Fact]
    public void FillInPlace_Throws_WhenTensorRequiresGradAndGradModeIsOn()
    {
        using var w = Tensor.Zeros(3);
        w.RequiresGrad = true;
        Assert.Throws<InvalidOperationException>(() => Ops.FillInPlace(w, 1));
        Assert.Throws<InvalidOperationException>(() => Ops.ZeroInPlace(w));
    }

    [Fact]
    public void AddInPlace_OnSavedTensor_MakesBackwardThrow()
    {
        using var x = Tensor.FromArray(new float[] { 1, 2, 3 }, 3);
        x.RequiresGrad = true;
        using var mask = Tensor.FromArray(new[] { true, false, true }, 3);
        using var y = Ops.Where(mask, x, 0f);
        Ops.FillInPlace(mask, 0); // mask was saved for backward
        var e = Assert.Throws<InvalidOperationException>(() => y.Backward(Tensor.Ones(3)));
        Assert.Contains("modified in place", e.Message);
    }

    [Fact]
    public void Where_ThrowsNamingOperands_WhenShapesDoNotBroadcast()
    {
        using var c = Tensor.FromArray(new[] { true, false, true }, 3);
        using var a = Tensor.Zeros(3);
        using var b = Tensor.Zeros(2);
        var e = Assert.Throws<ArgumentException>(() => Ops.Where(c, a, b));
        Assert.Contains("Where", e.Message);
        Assert.Contains("F32[2]", e.Message);
    }

    [Fact]
    public void AddInPlace_Throws_WhenSourceDoesNotBroadcastToDestination()
    {
        using var d = Tensor.Zeros(3);
        using var s = Tensor.Zeros(2, 3);
        var e = Assert.Throws<ArgumentException>(() => Ops.AddInPlace(d, s));
        Assert.Contains("F32[2, 3]", e.Message);
    }
}
