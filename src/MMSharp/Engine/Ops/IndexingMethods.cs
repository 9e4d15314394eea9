namespace MMSharp.Engine;

/// <summary>Method-call sugar for the indexing, joining and in-place ops (see the Ops files for the contracts).</summary>
public sealed partial class Tensor
{
    public Tensor IndexSelect(int dim, Tensor index) => Ops.IndexSelect(this, dim, index);
    public Tensor Gather(int dim, Tensor index) => Ops.Gather(this, dim, index);
    public Tensor ScatterAdd(int dim, Tensor index, Tensor src) => Ops.ScatterAdd(this, dim, index, src);
    public Tensor MaskedFill(Tensor mask, float value) => Ops.MaskedFill(this, mask, value);
    public Tensor MaskedScatter(Tensor mask, Tensor source) => Ops.MaskedScatter(this, mask, source);
    public Tensor[] Split(int[] sizes, int dim) => Ops.Split(this, sizes, dim);
    public Tensor[] Split(int splitSize, int dim) => Ops.Split(this, splitSize, dim);
    public Tensor[] Chunk(int chunks, int dim) => Ops.Chunk(this, chunks, dim);
    public Tensor RepeatInterleave(int repeats, int dim) => Ops.RepeatInterleave(this, repeats, dim);
    public Tensor Repeat(params int[] repeats) => Ops.Repeat(this, repeats);
    public Tensor Pad(int[] pad, double value = 0) => Ops.Pad(this, pad, value);
    public Tensor Tril(int diagonal = 0) => Ops.Tril(this, diagonal);
    public Tensor Triu(int diagonal = 0) => Ops.Triu(this, diagonal);

    /// <summary>this += alpha * src (no autograd; see <see cref="Ops.AddInPlace"/>).</summary>
    public void AddInPlace(Tensor src, float alpha = 1f) => Ops.AddInPlace(this, src, alpha);
    public void FillInPlace(double value) => Ops.FillInPlace(this, value);
    public void ZeroInPlace() => Ops.ZeroInPlace(this);
}
