using MMSharp.Engine;
using static MMSharp.Tests.OpTable.InputSpec;

namespace MMSharp.Tests.OpTable;

/// <summary>matmul (2-D, batched, broadcast batch, transposed views, vectors, bf16 right operand) and linear (F32/BF16 weight, with/without bias).</summary>
public static class MatMulCases
{
    /// <summary>torch.matmul on float64: vectors promoted to a row / column and the added dim removed; batch dims broadcast.</summary>
    public static RefTensor MatMul(RefTensor a, RefTensor b)
    {
        var a2 = a.Rank == 1 ? new RefTensor([1, a.Shape[0]], a.Data) : a;
        var b2 = b.Rank == 1 ? new RefTensor([b.Shape[0], 1], b.Data) : b;
        int m = a2.Size(-2), k = a2.Size(-1), n = b2.Size(-1);
        var batch = Ops.BroadcastShape(a2.Shape[..^2], b2.Shape[..^2]);
        var r = new RefTensor([.. batch, m, n]);
        for (long t = 0; t < Tensor.Product(batch); t++)
        {
            var bi = RefTensor.Unflatten(t, batch);
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    double s = 0;
                    for (int p = 0; p < k; p++) s += a2.GetBroadcast([.. bi, i, p]) * b2.GetBroadcast([.. bi, p, j]);
                    r.Data[(t * m + i) * n + j] = s;
                }
        }
        var shape = r.Shape.ToList();
        if (b.Rank == 1) shape.RemoveAt(shape.Count - 1);
        if (a.Rank == 1) shape.RemoveAt(shape.Count - (b.Rank == 1 ? 1 : 2));
        return new RefTensor(shape.ToArray(), r.Data);
    }

    static RefTensor T(RefTensor x)
    {
        // swap the last two dims
        int r = x.Rank;
        var shape = (int[])x.Shape.Clone();
        (shape[r - 2], shape[r - 1]) = (shape[r - 1], shape[r - 2]);
        var st = x.Strides;
        (st[r - 2], st[r - 1]) = (st[r - 1], st[r - 2]);
        return x.Gather(shape, st, 0);
    }

    /// <summary>y = x W^T + b in float64.</summary>
    public static RefTensor Linear(RefTensor x, RefTensor w, RefTensor? b)
    {
        int outF = w.Shape[0], inF = w.Shape[1];
        long rows = x.Data.Length / inF;
        var y = new RefTensor([.. x.Shape[..^1], outF]);
        for (long r = 0; r < rows; r++)
            for (int o = 0; o < outF; o++)
            {
                double s = b?.Data[o] ?? 0;
                for (int i = 0; i < inF; i++) s += x.Data[r * inF + i] * w.Data[o * inF + i];
                y.Data[r * outF + o] = s;
            }
        return y;
    }

    [OpCases]
    public static IEnumerable<OpCase> Cases()
    {
        // 2-D, including sizes that leave edge tiles and vector tails
        yield return new OpCase("matmul", [F(3, 5), F(5, 4)], x => x[0].MatMul(x[1]), r => MatMul(r[0], r[1]));
        yield return new OpCase("matmul", [F(7, 17), F(17, 33)], x => x[0].MatMul(x[1]), r => MatMul(r[0], r[1]));
        yield return new OpCase("matmul", [F(1, 7), F(7, 1)], x => x[0].MatMul(x[1]), r => MatMul(r[0], r[1]));
        yield return new OpCase("matmul", [F(17, 20), F(20, 15)], x => x[0].MatMul(x[1]), r => MatMul(r[0], r[1]));
        // batched and broadcast batch dims
        yield return new OpCase("matmul", [F(2, 3, 5), F(2, 5, 4)], x => x[0].MatMul(x[1]), r => MatMul(r[0], r[1])) { Variant = "batched" };
        yield return new OpCase("matmul", [F(2, 1, 3, 5), F(3, 5, 6)], x => x[0].MatMul(x[1]), r => MatMul(r[0], r[1])) { Variant = "broadcast" };
        yield return new OpCase("matmul", [F(4, 6), F(2, 6, 3)], x => x[0].MatMul(x[1]), r => MatMul(r[0], r[1])) { Variant = "broadcast" };
        // transposed views go to the GEMM as strides
        yield return new OpCase("matmul", [F(5, 3), F(5, 4)], x => x[0].MT.MatMul(x[1]), r => MatMul(T(r[0]), r[1])) { Variant = "aT" };
        yield return new OpCase("matmul", [F(3, 33), F(17, 33)], x => x[0].MatMul(x[1].MT), r => MatMul(r[0], T(r[1]))) { Variant = "bT" };
        yield return new OpCase("matmul", [F(2, 7, 4), F(2, 9, 7)], x => x[0].MT.MatMul(x[1].MT), r => MatMul(T(r[0]), T(r[1]))) { Variant = "aT bT" };
        yield return new OpCase("matmul", [F(20, 16), F(18, 16)], x => x[0].MatMul(x[1].MT), r => MatMul(r[0], T(r[1]))) { Variant = "bT packed" };
        // vectors
        yield return new OpCase("matmul", [F(7), F(7)], x => x[0].MatMul(x[1]), r => MatMul(r[0], r[1])) { Variant = "dot" };
        yield return new OpCase("matmul", [F(5), F(5, 3)], x => x[0].MatMul(x[1]), r => MatMul(r[0], r[1])) { Variant = "vector-matrix" };
        yield return new OpCase("matmul", [F(2, 4, 5), F(5)], x => x[0].MatMul(x[1]), r => MatMul(r[0], r[1])) { Variant = "matrix-vector" };
        yield return new OpCase("matmul", [F(4), F(2, 4, 3)], x => x[0].MatMul(x[1]), r => MatMul(r[0], r[1])) { Variant = "vector-batched" };
        // bf16 right operand (frozen)
        yield return new OpCase("matmul", [F(3, 16), BF16(16, 7)], x => x[0].MatMul(x[1]), r => MatMul(r[0], r[1])) { Variant = "bf16" };
        yield return new OpCase("matmul", [F(2, 33), BF16(9, 33)], x => x[0].MatMul(x[1].MT), r => MatMul(r[0], T(r[1]))) { Variant = "bf16 bT" };

        // linear: F32 and BF16 weights, with and without bias, odd sizes
        yield return new OpCase("linear", [F(3, 7), F(5, 7), F(5)], x => Ops.Linear(x[0], x[1], x[2]), r => Linear(r[0], r[1], r[2]));
        yield return new OpCase("linear", [F(2, 3, 17), F(33, 17)], x => Ops.Linear(x[0], x[1]), r => Linear(r[0], r[1], null));
        yield return new OpCase("linear", [F(1, 6 * 16 + 7), F(4, 6 * 16 + 7), F(4)], x => Ops.Linear(x[0], x[1], x[2]), r => Linear(r[0], r[1], r[2])) { Atol = 1e-4 };
        yield return new OpCase("linear", [F(20, 48), F(40, 48), F(40)], x => Ops.Linear(x[0], x[1], x[2]), r => Linear(r[0], r[1], r[2])) { Variant = "packed" };
        yield return new OpCase("linear", [F(7), F(3, 7)], x => Ops.Linear(x[0], x[1]), r => Linear(r[0], r[1], null)) { Variant = "1-D input" };
        yield return new OpCase("linear", [F(3, 33), BF16(17, 33), F(17)], x => Ops.Linear(x[0], x[1], x[2]), r => Linear(r[0], r[1], r[2])) { Variant = "bf16" };
        yield return new OpCase("linear", [F(2, 5, 40), BF16(7, 40)], x => Ops.Linear(x[0], x[1]), r => Linear(r[0], r[1], null)) { Variant = "bf16" };
        yield return new OpCase("linear", [F(1, 6 * 16 + 7), BF16(9, 6 * 16 + 7)], x => Ops.Linear(x[0], x[1]), r => Linear(r[0], r[1], null)) { Variant = "bf16", Atol = 1e-4 };
        yield return new OpCase("linear", [F(18, 20), BF16(33, 20), F(33)], x => Ops.Linear(x[0], x[1], x[2]), r => Linear(r[0], r[1], r[2])) { Variant = "bf16 packed" };
    }
}
