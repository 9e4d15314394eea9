using MMSharp.Engine;
using static MMSharp.Tests.OpTable.InputSpec;
using static MMSharp.Tests.OpTable.RefMath;

namespace MMSharp.Tests.OpTable;

/// <summary>Reductions (sum, mean, max, argmax over a dim or all elements) and softmax / log_softmax.</summary>
public static class ReduceCases
{
    static readonly (int[] shape, int dim)[] DimCases =
    [
        ([7], 0), ([3, 17], 1), ([3, 17], 0), ([2, 33], -1), ([6 * 16 + 7, 2], 0), ([2, 5, 3], 1), ([4, 1, 7], 1), ([2, 3, 5], 0),
    ];

    static double Max(double[] v) => v.Max();
    static double ArgMax(double[] v) => Array.IndexOf(v, v.Max());

    [OpCases]
    public static IEnumerable<OpCase> Reductions()
    {
        foreach (var (s, d) in DimCases)
        {
            int dd = d < 0 ? d + s.Length : d;
            foreach (var keep in new[] { false, true })
            {
                string v = $"dim={d}{(keep ? " keepdim" : "")}";
                yield return new OpCase("sum", [F(s)], x => Ops.Sum(x[0], d, keep), r => ReduceDim(r[0], dd, keep, a => a.Sum())) { Variant = v };
                yield return new OpCase("mean", [F(s)], x => Ops.Mean(x[0], d, keep), r => ReduceDim(r[0], dd, keep, a => a.Average())) { Variant = v };
                // max has a kink where the maximum changes hands: no fp32 finite differences
                yield return new OpCase("max", [F(s)], x => Ops.Max(x[0], d, keep), r => ReduceDim(r[0], dd, keep, Max)) { Variant = v, CheckFp32FiniteDifference = false };
                yield return new OpCase("argmax", [F(s)], x => Ops.ArgMax(x[0], d, keep), r => ReduceDim(r[0], dd, keep, ArgMax)) { Variant = v, CheckGrad = false };
            }
        }
        // non-contiguous inputs
        yield return new OpCase("sum", [F(5, 9)], x => Ops.Sum(x[0].Transpose(0, 1), 1), r => ReduceDim(T(r[0]), 1, false, a => a.Sum())) { Variant = "transposed" };
        yield return new OpCase("max", [F(5, 9)], x => Ops.Max(x[0].Transpose(0, 1), 1), r => ReduceDim(T(r[0]), 1, false, Max)) { Variant = "transposed", CheckFp32FiniteDifference = false };
        yield return new OpCase("argmax", [F(5, 9)], x => Ops.ArgMax(x[0].Transpose(0, 1), 0), r => ReduceDim(T(r[0]), 0, false, ArgMax)) { Variant = "transposed", CheckGrad = false };
        // all elements
        foreach (var s in new[] { new[] { 1 }, [7], [3, 17], [2, 3, 33], [6 * 16 + 7] })
        {
            yield return new OpCase("sum_all", [F(s)], x => Ops.Sum(x[0]), r => new RefTensor([], [r[0].Data.Sum()]));
            yield return new OpCase("mean_all", [F(s)], x => Ops.Mean(x[0]), r => new RefTensor([], [r[0].Data.Average()]));
            yield return new OpCase("max_all", [F(s)], x => Ops.Max(x[0]), r => new RefTensor([], [r[0].Data.Max()])) { CheckFp32FiniteDifference = false };
            yield return new OpCase("argmax_all", [F(s)], x => Ops.ArgMax(x[0]), r => new RefTensor([], [ArgMax(r[0].Data)])) { CheckGrad = false };
        }
        yield return new OpCase("sum_all", [Mask(0.3, 5, 33)], x => Ops.Sum(x[0]), r => new RefTensor([], [r[0].Data.Sum()])) { Variant = "bool", CheckGrad = false };
        yield return new OpCase("sum", [Mask(0.3, 5, 33)], x => Ops.Sum(x[0], 1), r => ReduceDim(r[0], 1, false, a => a.Sum())) { Variant = "bool", CheckGrad = false };
        yield return new OpCase("mean_all", [F(4, 6)], x => Ops.Mean(x[0].Transpose(0, 1).Narrow(0, 1, 3)),
            r => new RefTensor([], [T(r[0]).Gather([3, 4], [4, 1], 4).Data.Average()])) { Variant = "non-contiguous" };
        // ties: the first index wins (and gets the whole gradient)
        yield return new OpCase("max", [F(3, 4)], x => Ops.Max(Ops.Clamp(x[0], -2f, 0f), 1), r => ReduceDim(RefTensor.Map(r[0], v => Math.Clamp(v, -2, 0)), 1, false, Max))
            { Variant = "ties", CheckGrad = false };
        yield return new OpCase("argmax", [F(3, 5)], x => Ops.ArgMax(Ops.Clamp(x[0], -2f, 0f), 1), r => ReduceDim(RefTensor.Map(r[0], v => Math.Clamp(v, -2, 0)), 1, false, ArgMax))
            { Variant = "ties", CheckGrad = false };
    }

    static double[] SoftmaxRow(double[] x)
    {
        double m = x.Max();
        var e = x.Select(v => Math.Exp(v - m)).ToArray();
        double s = e.Sum();
        return e.Select(v => v / s).ToArray();
    }

    static double[] LogSoftmaxRow(double[] x)
    {
        double m = x.Max();
        double lse = m + Math.Log(x.Sum(v => Math.Exp(v - m)));
        return x.Select(v => v - lse).ToArray();
    }

    static RefTensor AlongDim(RefTensor x, int dim, Func<double[], double[]> f) => MoveBack(Rows(MoveLast(x, dim), f), dim);

    [OpCases]
    public static IEnumerable<OpCase> Softmaxes()
    {
        // logits in [-8, 8]: softmax rows far from uniform
        static InputSpec L(params int[] s) => new(s, InputKind.Float, -8, 8);
        foreach (var (s, d) in new (int[], int)[] { ([1, 1], -1), ([3, 7], -1), ([2, 17], -1), ([2, 33], 1), ([2, 6 * 16 + 7], -1), ([5, 3], 0), ([2, 5, 3], 1), ([3, 2, 4], 0), ([20, 70], 0) })
        {
            int dd = d < 0 ? d + s.Length : d;
            yield return new OpCase("softmax", [L(s)], x => Ops.Softmax(x[0], d), r => AlongDim(r[0], dd, SoftmaxRow)) { Variant = $"dim={d}" };
            yield return new OpCase("log_softmax", [L(s)], x => Ops.LogSoftmax(x[0], d), r => AlongDim(r[0], dd, LogSoftmaxRow)) { Variant = $"dim={d}" };
        }
        yield return new OpCase("softmax", [L(17, 3)], x => Ops.Softmax(x[0].Transpose(0, 1), -1), r => Rows(T(r[0]), SoftmaxRow)) { Variant = "transposed" };
        yield return new OpCase("log_softmax", [L(17, 3)], x => Ops.LogSoftmax(x[0].Transpose(0, 1), -1), r => Rows(T(r[0]), LogSoftmaxRow)) { Variant = "transposed" };
        // large logits: the max shift must keep exp from overflowing
        yield return new OpCase("softmax", [F(2, 9)], x => Ops.Softmax(x[0] * 200f + 500f, -1), r => Rows(RefTensor.Map(r[0], v => v * 200 + 500), SoftmaxRow)) { Variant = "large", CheckGrad = false };
        yield return new OpCase("log_softmax", [F(2, 9)], x => Ops.LogSoftmax(x[0] * 200f + 500f, -1), r => Rows(RefTensor.Map(r[0], v => v * 200 + 500), LogSoftmaxRow))
            { Variant = "large", CheckGrad = false, Atol = 1e-4 };
    }
}
