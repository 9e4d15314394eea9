using MMSharp.Engine;
using static MMSharp.Tests.OpTable.InputSpec;

namespace MMSharp.Tests.OpTable;

/// <summary>LayerNorm and RMSNorm over the last dim, with and without affine parameters.</summary>
public static class NormCases
{
    static RefTensor LayerNormRef(RefTensor x, RefTensor? w, RefTensor? b, double eps) => RefMath.Rows(x, row =>
    {
        double m = row.Average();
        double var = row.Sum(v => (v - m) * (v - m)) / row.Length;
        double s = 1 / Math.Sqrt(var + eps);
        return row.Select((v, i) => (v - m) * s * (w?.Data[i] ?? 1) + (b?.Data[i] ?? 0)).ToArray();
    });

    static RefTensor RmsNormRef(RefTensor x, RefTensor? w, double eps) => RefMath.Rows(x, row =>
    {
        double s = 1 / Math.Sqrt(row.Sum(v => v * v) / row.Length + eps);
        return row.Select((v, i) => v * s * (w?.Data[i] ?? 1)).ToArray();
    });

    [OpCases]
    public static IEnumerable<OpCase> Norms()
    {
        foreach (var s in new[] { new[] { 3, 1 }, [3, 7], [2, 3, 17], [2, 33], [2, 6 * 16 + 7] })
        {
            int c = s[^1];
            if (c > 1)
            {
                // C = 1: x - mean is 0, so LayerNorm is constant (its gradient is ill-conditioned in fp32)
                yield return new OpCase("layer_norm", [F(s), F(c), F(c)], x => Ops.LayerNorm(x[0], x[1], x[2]), r => LayerNormRef(r[0], r[1], r[2], 1e-5));
                yield return new OpCase("layer_norm", [F(s)], x => Ops.LayerNorm(x[0], null, null), r => LayerNormRef(r[0], null, null, 1e-5)) { Variant = "no affine" };
                yield return new OpCase("layer_norm", [F(s), F(c)], x => Ops.LayerNorm(x[0], x[1], null), r => LayerNormRef(r[0], r[1], null, 1e-5)) { Variant = "weight only" };
            }
            yield return new OpCase("rms_norm", [F(s), F(c)], x => Ops.RmsNorm(x[0], x[1], 1e-6f), r => RmsNormRef(r[0], r[1], 1e-6));
            yield return new OpCase("rms_norm", [F(s)], x => Ops.RmsNorm(x[0], null, 1e-6f), r => RmsNormRef(r[0], null, 1e-6)) { Variant = "no weight" };
        }
        yield return new OpCase("layer_norm", [F(9, 4), F(9), F(9)], x => Ops.LayerNorm(x[0].Transpose(0, 1), x[1], x[2]), r => LayerNormRef(RefMath.T(r[0]), r[1], r[2], 1e-5)) { Variant = "transposed" };
        yield return new OpCase("rms_norm", [F(17, 3), F(17)], x => Ops.RmsNorm(x[0].Transpose(0, 1), x[1]), r => RmsNormRef(RefMath.T(r[0]), r[1], 1e-6)) { Variant = "transposed" };
        yield return new OpCase("rms_norm", [F(3, 33), BF16(33)], x => Ops.RmsNorm(x[0], x[1]), r => RmsNormRef(r[0], r[1], 1e-6)) { Variant = "bf16 weight" };
    }
}
