using MMSharp.Engine;
using static MMSharp.Tests.OpTable.InputSpec;

namespace MMSharp.Tests.OpTable;

/// <summary>Cross-entropy: reductions, ignored targets, per-token weights, non-contiguous logits.</summary>
public static class LossCases
{
    const int Ignore = -100;

    /// <summary>Targets with every third position (from 1) replaced by the ignore index — built deterministically,
    /// because the table's index inputs are never negative.</summary>
    static long[] WithIgnored(long[] t) => t.Select((v, i) => i % 3 == 1 ? Ignore : v).ToArray();

    static Tensor Targets(Tensor t, bool ignore) => ignore ? Tensor.FromArray(WithIgnored(t.ToLongArray()), t.Shape) : t;

    /// <summary>float64 reference: per-row loss (weighted, 0 when ignored), reduced.</summary>
    static RefTensor Reference(RefTensor logits, RefTensor targets, RefTensor? weights, bool ignore, Reduction red)
    {
        int n = targets.Data.Length, v = logits.Shape[^1];
        var t = targets.Data.Select(d => (long)d).ToArray();
        if (ignore) t = WithIgnored(t);
        var per = new double[n];
        double sum = 0, wsum = 0;
        for (int i = 0; i < n; i++)
        {
            if (t[i] == Ignore) continue;
            var row = logits.Data.AsSpan(i * v, v).ToArray();
            double m = row.Max();
            double lse = m + Math.Log(row.Sum(x => Math.Exp(x - m)));
            double w = weights?.Data[i] ?? 1;
            per[i] = w * (lse - row[t[i]]);
            sum += per[i];
            wsum += w;
        }
        return red switch
        {
            Reduction.None => new RefTensor((int[])targets.Shape.Clone(), per),
            Reduction.Sum => new RefTensor([], [sum]),
            _ => new RefTensor([], [sum / wsum]),
        };
    }

    static InputSpec Weights(int n) => new([n], InputKind.FloatConst, 0.25, 2.0);

    [OpCases]
    public static IEnumerable<OpCase> CrossEntropy()
    {
        foreach (var (n, v) in new[] { (1, 7), (4, 17), (3, 33), (5, 6 * 16 + 7), (6, 1) })
            foreach (var red in new[] { Reduction.Mean, Reduction.Sum, Reduction.None })
                foreach (var ignore in new[] { false, true })
                {
                    if (ignore && n == 1) continue; // all ignored: covered by a unit test
                    string variant = $"{red}{(ignore ? " ignore" : "")}";
                    yield return new OpCase("cross_entropy", [F(n, v), Idx(v, n)],
                        x => Ops.CrossEntropy(x[0], Targets(x[1], ignore), reduction: red),
                        r => Reference(r[0], r[1], null, ignore, red)) { Variant = variant };
                    yield return new OpCase("cross_entropy", [F(n, v), Idx(v, n), Weights(n)],
                        x => Ops.CrossEntropy(x[0], Targets(x[1], ignore), weights: x[2], reduction: red),
                        r => Reference(r[0], r[1], r[2], ignore, red)) { Variant = variant + " weighted" };
                }
        // [B, T, V] logits with [B, T] targets
        yield return new OpCase("cross_entropy", [F(2, 3, 17), Idx(17, 2, 3)],
            x => Ops.CrossEntropy(x[0], Targets(x[1], true), reduction: Reduction.None),
            r => Reference(r[0], r[1], null, true, Reduction.None)) { Variant = "3d None ignore" };
        // non-contiguous logits ([V, N] transposed)
        yield return new OpCase("cross_entropy", [F(33, 4), Idx(33, 4)],
            x => Ops.CrossEntropy(x[0].Transpose(0, 1), Targets(x[1], true)),
            r => Reference(RefMath.T(r[0]), r[1], null, true, Reduction.Mean)) { Variant = "transposed ignore" };
        // large logits: log-sum-exp must not overflow
        yield return new OpCase("cross_entropy", [F(3, 9), Idx(9, 3)],
            x => Ops.CrossEntropy(x[0] * 100f + 300f, x[1]),
            r => Reference(RefTensor.Map(r[0], a => a * 100 + 300), r[1], null, false, Reduction.Mean)) { Variant = "large", Atol = 1e-4, GradAtol = 1e-3 };
        // the (sum, count) variant's sum
        yield return new OpCase("cross_entropy_sum_count", [F(5, 17), Idx(17, 5), Weights(5)],
            x => Ops.CrossEntropySumCount(x[0], Targets(x[1], true), weights: x[2]).Sum,
            r => Reference(r[0], r[1], r[2], true, Reduction.Sum));
        yield return new OpCase("cross_entropy_sum_count", [F(4, 33), Idx(33, 4)],
            x => Ops.CrossEntropySumCount(x[0], x[1]).Sum,
            r => Reference(r[0], r[1], null, false, Reduction.Sum));
    }
}
