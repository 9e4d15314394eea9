using MMSharp.Engine;

namespace MMSharp.Tests.OpTable;

public enum InputKind
{
    /// <summary>Float input, gradient checked.</summary>
    Float,
    /// <summary>Float input in [Lo, Hi] (e.g. positive for log), gradient checked.</summary>
    FloatRange,
    /// <summary>Float input that is not differentiated (e.g. a fixed mask or weights).</summary>
    FloatConst,
    /// <summary>BF16 input (e.g. a frozen weight), values rounded to bf16, not differentiated.</summary>
    BF16Const,
    /// <summary>I64 indices in [Lo, Hi).</summary>
    Index,
    /// <summary>Bool mask with probability Lo of true.</summary>
    Bool,
}

/// <summary>One input of an op case.</summary>
public sealed record InputSpec(int[] Shape, InputKind Kind = InputKind.Float, double Lo = -1, double Hi = 1)
{
    public bool Differentiable => Kind is InputKind.Float or InputKind.FloatRange;

    public static InputSpec F(params int[] shape) => new(shape);
    public static InputSpec Pos(params int[] shape) => new(shape, InputKind.FloatRange, 0.5, 2.0);
    public static InputSpec Const(params int[] shape) => new(shape, InputKind.FloatConst);
    public static InputSpec BF16(params int[] shape) => new(shape, InputKind.BF16Const);
    public static InputSpec Idx(int hi, params int[] shape) => new(shape, InputKind.Index, 0, hi);
    public static InputSpec Mask(double pTrue, params int[] shape) => new(shape, InputKind.Bool, pTrue);
}

/// <summary>
/// One row of the op-test table: an op applied to inputs of given shapes, and its naive float64
/// reference. Every case is run (a) forward against the reference and (b) through a gradient check
/// (autograd vs. central differences of the float64 reference for every element, plus central
/// differences of our own fp32 forward at a few sampled elements).
/// </summary>
public sealed record OpCase(
    string Op,
    InputSpec[] Inputs,
    Func<Tensor[], Tensor> Run,
    Func<RefTensor[], RefTensor> Reference)
{
    /// <summary>Forward tolerance: |ours - ref| <= Atol + Rtol * |ref|.</summary>
    public double Atol { get; init; } = 1e-5;
    public double Rtol { get; init; } = 1e-4;
    /// <summary>Tolerance of the gradient check against the float64 reference.</summary>
    public double GradAtol { get; init; } = 1e-4;
    public double GradRtol { get; init; } = 1e-3;
    /// <summary>Whether to check gradients at all (false for non-differentiable ops such as argmax).</summary>
    public bool CheckGrad { get; init; } = true;
    /// <summary>Whether to also finite-difference our fp32 forward (off for ops with kinks near the sampled points).</summary>
    public bool CheckFp32FiniteDifference { get; init; } = true;
    /// <summary>Seed for inputs.</summary>
    public ulong Seed { get; init; } = 1;
    /// <summary>Extra note shown in the test name (e.g. "causal").</summary>
    public string Variant { get; init; } = "";

    public override string ToString()
    {
        var shapes = string.Join(" ", Inputs.Select(i => Tensor.ShapeString(i.Shape)));
        return $"{Op}{(Variant.Length > 0 ? "(" + Variant + ")" : "")} {shapes}";
    }
}

/// <summary>Marks a static method returning IEnumerable&lt;OpCase&gt; that contributes rows to the table.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class OpCasesAttribute : Attribute;
