using MMSharp.Engine;
using static MMSharp.Tests.OpTable.InputSpec;
using static MMSharp.Tests.OpTable.RefMath;

namespace MMSharp.Tests.OpTable;

/// <summary>Pointwise ops: arithmetic with broadcasting and scalars, unary math, activations.</summary>
public static class ElementwiseCases
{
    /// <summary>Same-shape cases along the vector tails (1, 7, 17, 33, 6·16+7) plus a 3-d one.</summary>
    static readonly int[][] TailShapes = [[1], [7], [2, 17], [33], [6 * 16 + 7], [2, 3, 5]];

    static IEnumerable<OpCase> Binary(string op, Func<Tensor, Tensor, Tensor> run, Func<double, double, double> f, bool positiveB = false)
    {
        InputSpec B(params int[] s) => positiveB ? Pos(s) : F(s);
        foreach (var s in TailShapes)
            yield return new OpCase(op, [F(s), B(s)], x => run(x[0], x[1]), r => RefTensor.Zip(r[0], r[1], f));
        // broadcasting: row vector, column x row, leading dims, scalar-like
        yield return new OpCase(op, [F(3, 17), B(17)], x => run(x[0], x[1]), r => RefTensor.Zip(r[0], r[1], f)) { Variant = "row-broadcast" };
        yield return new OpCase(op, [F(4, 1), B(1, 7)], x => run(x[0], x[1]), r => RefTensor.Zip(r[0], r[1], f)) { Variant = "outer" };
        yield return new OpCase(op, [F(2, 1, 33), B(3, 1)], x => run(x[0], x[1]), r => RefTensor.Zip(r[0], r[1], f)) { Variant = "both" };
        yield return new OpCase(op, [F(1), B(2, 7)], x => run(x[0], x[1]), r => RefTensor.Zip(r[0], r[1], f)) { Variant = "scalar-left" };
        yield return new OpCase(op, [F(5, 3), B(1)], x => run(x[0], x[1]), r => RefTensor.Zip(r[0], r[1], f)) { Variant = "scalar-right" };
        // non-contiguous operands
        yield return new OpCase(op, [F(7, 3), B(3, 7)], x => run(x[0].Transpose(0, 1), x[1]), r => RefTensor.Zip(T(r[0]), r[1], f)) { Variant = "transposed" };
        // large enough for the 64 x 64 tiled walk of transposed operands (with partial tiles)
        yield return new OpCase(op, [F(20, 70), B(70, 20)], x => run(x[0].Transpose(0, 1), x[1]), r => RefTensor.Zip(T(r[0]), r[1], f)) { Variant = "transposed-tiled" };
        yield return new OpCase(op, [F(3, 9), B(9, 3)], x => run(x[0].Narrow(1, 2, 5), x[1].Transpose(0, 1).Narrow(1, 1, 5)),
            r => RefTensor.Zip(r[0].Gather([3, 5], [9, 1], 2), T(r[1]).Gather([3, 5], [9, 1], 1), f)) { Variant = "narrowed" };
    }

    static IEnumerable<OpCase> Unary(string op, Func<Tensor, Tensor> run, Func<double, double> f, bool positive = false, bool kink = false)
    {
        InputSpec X(params int[] s) => positive ? Pos(s) : F(s);
        foreach (var s in TailShapes)
            yield return new OpCase(op, [X(s)], x => run(x[0]), r => RefTensor.Map(r[0], f)) { CheckFp32FiniteDifference = !kink };
        yield return new OpCase(op, [X(7, 5)], x => run(x[0].Transpose(0, 1)), r => RefTensor.Map(T(r[0]), f)) { Variant = "transposed", CheckFp32FiniteDifference = !kink };
        yield return new OpCase(op, [X(4, 40)], x => run(x[0].Narrow(1, 3, 33)), r => RefTensor.Map(r[0].Gather([4, 33], [40, 1], 3), f)) { Variant = "narrowed", CheckFp32FiniteDifference = !kink };
    }

    [OpCases]
    public static IEnumerable<OpCase> Arithmetic()
    {
        foreach (var c in Binary("add", Ops.Add, (a, b) => a + b)) yield return c;
        foreach (var c in Binary("sub", Ops.Sub, (a, b) => a - b)) yield return c;
        foreach (var c in Binary("mul", Ops.Mul, (a, b) => a * b)) yield return c;
        foreach (var c in Binary("div", Ops.Div, (a, b) => a / b, positiveB: true)) yield return c;

        // operators, scalars on either side
        yield return new OpCase("op+", [F(3, 17), F(17)], x => x[0] + x[1], r => RefTensor.Zip(r[0], r[1], (a, b) => a + b));
        yield return new OpCase("op-", [F(2, 33), F(2, 1)], x => x[0] - x[1], r => RefTensor.Zip(r[0], r[1], (a, b) => a - b));
        yield return new OpCase("op*", [F(7), F(7)], x => x[0] * x[1], r => RefTensor.Zip(r[0], r[1], (a, b) => a * b));
        yield return new OpCase("op/", [F(5, 7), Pos(7)], x => x[0] / x[1], r => RefTensor.Zip(r[0], r[1], (a, b) => a / b));
        foreach (var s in new[] { new[] { 1 }, [17], [3, 33], [103] })
        {
            yield return new OpCase("add_scalar", [F(s)], x => x[0] + 0.75f, r => RefTensor.Map(r[0], v => v + 0.75));
            yield return new OpCase("sub_scalar", [F(s)], x => x[0] - 0.25f, r => RefTensor.Map(r[0], v => v - 0.25));
            yield return new OpCase("rsub_scalar", [F(s)], x => 1f - x[0], r => RefTensor.Map(r[0], v => 1 - v));
            yield return new OpCase("mul_scalar", [F(s)], x => x[0] * 0.5f, r => RefTensor.Map(r[0], v => v * 0.5));
            yield return new OpCase("mul_scalar", [F(s)], x => 3f * x[0], r => RefTensor.Map(r[0], v => 3 * v)) { Variant = "left" };
            yield return new OpCase("div_scalar", [F(s)], x => x[0] / 3f, r => RefTensor.Map(r[0], v => v / 3));
            yield return new OpCase("rdiv_scalar", [Pos(s)], x => 2f / x[0], r => RefTensor.Map(r[0], v => 2 / v));
            yield return new OpCase("neg", [F(s)], x => -x[0], r => RefTensor.Map(r[0], v => -v));
        }
        yield return new OpCase("neg", [F(6, 4)], x => -x[0].Transpose(0, 1), r => RefTensor.Map(T(r[0]), v => -v)) { Variant = "transposed" };
        yield return new OpCase("mul", [F(3, 17), Mask(0.5, 3, 17)], x => x[0] * x[1], r => RefTensor.Zip(r[0], r[1], (a, b) => a * b)) { Variant = "bool-mask" };
        yield return new OpCase("mul", [F(2, 7), Idx(5, 7)], x => x[0] * x[1], r => RefTensor.Zip(r[0], r[1], (a, b) => a * b)) { Variant = "i64" };
        yield return new OpCase("add_scalar", [BF16(3, 17)], x => x[0] + 1f, r => RefTensor.Map(r[0], v => v + 1)) { Variant = "bf16-input", CheckGrad = false };
    }

    [OpCases]
    public static IEnumerable<OpCase> Math()
    {
        foreach (var c in Unary("exp", Ops.Exp, System.Math.Exp)) yield return c;
        foreach (var c in Unary("log", Ops.Log, System.Math.Log, positive: true)) yield return c;
        foreach (var c in Unary("sqrt", Ops.Sqrt, System.Math.Sqrt, positive: true)) yield return c;
        foreach (var c in Unary("rsqrt", Ops.Rsqrt, v => 1 / System.Math.Sqrt(v), positive: true)) yield return c;
        foreach (var c in Unary("tanh", Ops.Tanh, System.Math.Tanh)) yield return c;
        foreach (var c in Unary("sigmoid", Ops.Sigmoid, Sigmoid)) yield return c;
        foreach (var c in Unary("square", Ops.Square, v => v * v)) yield return c;
        foreach (var c in Unary("abs", Ops.Abs, System.Math.Abs, kink: true)) yield return c;
        foreach (var c in Unary("clamp", x => Ops.Clamp(x, -0.5f, 0.25f), v => System.Math.Clamp(v, -0.5, 0.25), kink: true)) yield return c;
        foreach (var p in new[] { 3f, -1f, 0.5f, -0.5f })
            foreach (var c in Unary("pow", x => Ops.Pow(x, p), v => System.Math.Pow(v, p), positive: p != 3f))
                yield return c with { Variant = (c.Variant + " p=" + p).Trim() };
        yield return new OpCase("pow", [F(2, 17)], x => Ops.Pow(x[0], 4f), r => RefTensor.Map(r[0], v => System.Math.Pow(v, 4))) { Variant = "p=4 negative base" };
        yield return new OpCase("pow", [Pos(33)], x => Ops.Pow(x[0], 2.5f), r => RefTensor.Map(r[0], v => System.Math.Pow(v, 2.5))) { Variant = "p=2.5" };
        yield return new OpCase("pow", [F(3, 7)], x => Ops.Pow(x[0], 5f), r => RefTensor.Map(r[0], v => System.Math.Pow(v, 5))) { Variant = "p=5 odd", Rtol = 1e-3 };
        yield return new OpCase("pow_tensor", [Pos(3, 7), F(3, 7)], x => Ops.Pow(x[0], x[1]), r => RefTensor.Zip(r[0], r[1], System.Math.Pow));
        yield return new OpCase("pow_tensor", [Pos(2, 17), F(17)], x => Ops.Pow(x[0], x[1]), r => RefTensor.Zip(r[0], r[1], System.Math.Pow)) { Variant = "broadcast" };
    }

    [OpCases]
    public static IEnumerable<OpCase> Activations()
    {
        // inputs spread over [-4, 4] to reach both erf branches and the saturating tails
        static InputSpec Wide(params int[] s) => new(s, InputKind.Float, -4, 4);
        foreach (var s in TailShapes)
        {
            yield return new OpCase("gelu", [Wide(s)], x => Ops.Gelu(x[0]), r => RefTensor.Map(r[0], Gelu));
            yield return new OpCase("gelu_tanh", [Wide(s)], x => Ops.GeluTanh(x[0]), r => RefTensor.Map(r[0], GeluTanh));
            yield return new OpCase("silu", [Wide(s)], x => Ops.Silu(x[0]), r => RefTensor.Map(r[0], v => v * Sigmoid(v)));
            yield return new OpCase("relu", [F(s)], x => Ops.Relu(x[0]), r => RefTensor.Map(r[0], v => System.Math.Max(v, 0))) { CheckFp32FiniteDifference = false };
            yield return new OpCase("silu_mul", [Wide(s), F(s)], x => Ops.SiluMul(x[0], x[1]), r => RefTensor.Zip(r[0], r[1], (g, u) => g * Sigmoid(g) * u));
        }
        yield return new OpCase("gelu", [Wide(9, 4)], x => Ops.Gelu(x[0].Transpose(0, 1)), r => RefTensor.Map(T(r[0]), Gelu)) { Variant = "transposed" };
        yield return new OpCase("silu", [Wide(9, 4)], x => Ops.Silu(x[0].Transpose(0, 1)), r => RefTensor.Map(T(r[0]), v => v * Sigmoid(v))) { Variant = "transposed" };
        yield return new OpCase("silu_mul", [Wide(3, 17), F(17)], x => Ops.SiluMul(x[0], x[1]), r => RefTensor.Zip(r[0], r[1], (g, u) => g * Sigmoid(g) * u)) { Variant = "broadcast" };
        yield return new OpCase("silu_mul", [Wide(5, 3), F(3, 5)], x => Ops.SiluMul(x[0].Transpose(0, 1), x[1]), r => RefTensor.Zip(T(r[0]), r[1], (g, u) => g * Sigmoid(g) * u)) { Variant = "transposed" };
    }
}
