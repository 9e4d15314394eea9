using MMSharp.Engine;
using static MMSharp.Tests.OpTable.InputSpec;

namespace MMSharp.Tests.OpTable;

/// <summary>View ops: reshape, transpose, permute, narrow, select, squeeze/unsqueeze, flatten, expand, contiguous, clone.</summary>
public static class ViewCases
{
    static RefTensor Permuted(RefTensor x, int[] dims)
    {
        var st = x.Strides;
        return x.Gather(dims.Select(d => x.Shape[d]).ToArray(), dims.Select(d => st[d]).ToArray(), 0);
    }

    static RefTensor Narrowed(RefTensor x, int dim, int start, int len)
    {
        var shape = (int[])x.Shape.Clone();
        shape[dim] = len;
        var st = x.Strides;
        return x.Gather(shape, st, start * st[dim]);
    }

    [OpCases]
    public static IEnumerable<OpCase> Cases()
    {
        yield return new OpCase("reshape", [F(3, 4, 5)], x => x[0].Reshape(5, -1), r => new RefTensor([5, 12], r[0].Data));
        yield return new OpCase("reshape", [F(2, 7, 3)], x => x[0].Transpose(0, 2).Reshape(-1), r => new RefTensor([42], Permuted(r[0], [2, 1, 0]).Data)) { Variant = "non-contiguous" };
        yield return new OpCase("reshape", [F(4, 6)], x => x[0].Narrow(1, 1, 4).Reshape(2, 2, 4), r => new RefTensor([2, 2, 4], Narrowed(r[0], 1, 1, 4).Data)) { Variant = "narrowed" };
        yield return new OpCase("transpose", [F(3, 5)], x => x[0].Transpose(0, 1), r => Permuted(r[0], [1, 0]));
        yield return new OpCase("transpose", [F(2, 3, 17)], x => x[0].Transpose(-1, 0), r => Permuted(r[0], [2, 1, 0]));
        yield return new OpCase("permute", [F(2, 3, 4, 5)], x => x[0].Permute(0, 2, 3, 1), r => Permuted(r[0], [0, 2, 3, 1]));
        yield return new OpCase("permute", [F(3, 1, 7)], x => x[0].Permute(2, 0, 1), r => Permuted(r[0], [2, 0, 1]));
        yield return new OpCase("narrow", [F(5, 9)], x => x[0].Narrow(1, 2, 5), r => Narrowed(r[0], 1, 2, 5));
        yield return new OpCase("narrow", [F(6, 3, 4)], x => x[0].Narrow(0, 1, 4), r => Narrowed(r[0], 0, 1, 4));
        yield return new OpCase("select", [F(4, 5, 3)], x => x[0].Select(1, 3), r => new RefTensor([4, 3], Narrowed(r[0], 1, 3, 1).Data));
        yield return new OpCase("squeeze", [F(3, 1, 4)], x => x[0].Squeeze(1), r => new RefTensor([3, 4], r[0].Data));
        yield return new OpCase("unsqueeze", [F(3, 4)], x => x[0].Unsqueeze(-1), r => new RefTensor([3, 4, 1], r[0].Data));
        yield return new OpCase("flatten", [F(2, 3, 4, 5)], x => x[0].Flatten(1, 2), r => new RefTensor([2, 12, 5], r[0].Data));
        yield return new OpCase("expand", [F(3, 1)], x => x[0].Expand(2, 3, 4), r => r[0].Gather([2, 3, 4], [0, 1, 0], 0));
        yield return new OpCase("expand", [F(1, 5)], x => x[0].Expand(7, -1), r => r[0].Gather([7, 5], [0, 1], 0));
        yield return new OpCase("contiguous", [F(4, 7)], x => x[0].Transpose(0, 1).Contiguous(), r => Permuted(r[0], [1, 0]));
        yield return new OpCase("clone", [F(33)], x => x[0].Clone(), r => r[0].Clone());
        yield return new OpCase("to_bf16", [F(5, 3)], x => x[0].To(DType.BF16),
            r => RefTensor.Map(r[0], v => Half16.BF16ToFloat(Half16.FloatToBF16((float)v)))) { CheckGrad = false };
    }
}
