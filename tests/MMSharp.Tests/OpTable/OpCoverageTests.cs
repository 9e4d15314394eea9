namespace MMSharp.Tests.OpTable;

/// <summary>Every op the engine promises has rows in the op-test table (so both the forward reference check and the
/// gradient check run for it). Dropout and drop-path are random: they are covered by Indexing/DropoutTests instead.</summary>
public sealed class OpCoverageTests
{
    static readonly string[] Required =
    [
        "matmul", "linear",
        "add", "sub", "mul", "div", "neg", "add_scalar", "mul_scalar", "sub_scalar", "div_scalar",
        "exp", "log", "sqrt", "rsqrt", "tanh", "sigmoid", "pow",
        "sum", "mean", "max", "argmax",
        "softmax", "log_softmax", "cross_entropy", "cross_entropy_sum_count",
        "layer_norm", "rms_norm", "gelu", "gelu_tanh", "silu",
        "embedding", "rope", "attention", "conv2d_patch", "conv3d_patch",
        "concat", "split", "stack", "narrow", "index_select", "gather", "scatter_add", "masked_scatter",
        "interpolate(Bilinear", "interpolate(Bicubic",
        "reshape", "transpose", "permute", "expand", "contiguous",
    ];

    [Fact]
    public void EveryRequiredOp_HasTableRows()
    {
        var covered = OpTableTests.CoveredOps;
        var names = OpTableTests.CaseNames().Select(row => (string)row[0]).ToList();
        // a required entry is an op name, or "op(Variant" to require a particular variant
        var missing = Required.Where(op => op.Contains('(') ? !names.Any(n => n.StartsWith(op, StringComparison.Ordinal)) : !covered.Contains(op)).ToList();
        Assert.True(missing.Count == 0, $"ops without op-table rows: {string.Join(", ", missing)}; covered: {string.Join(", ", covered.OrderBy(s => s))}");
    }
}
