using MMSharp.Engine;
using static MMSharp.Tests.OpTable.InputSpec;

namespace MMSharp.Tests.OpTable;

/// <summary>Scaled dot-product attention: masks, GQA/MQA, decode shapes, several tiles, odd T and D.</summary>
public static class AttentionCases
{
    /// <summary>Naive float64 attention. bias(b, h, i, j) returns the additive mask (−∞ hides a key); rows with no
    /// visible key give zeros.</summary>
    public static RefTensor Reference(RefTensor q, RefTensor k, RefTensor v, bool causal, double? scale = null,
        Func<int, int, int, int, double>? bias = null)
    {
        int B = q.Shape[0], Hq = q.Shape[1], Tq = q.Shape[2], D = q.Shape[3], Hkv = k.Shape[1], Tk = k.Shape[2];
        double sc = scale ?? 1 / Math.Sqrt(D);
        var o = new RefTensor([B, Hq, Tq, D]);
        double[] qd = q.Data, kd = k.Data, vd = v.Data, od = o.Data;
        var s = new double[Tk];
        for (int b = 0; b < B; b++)
            for (int h = 0; h < Hq; h++)
            {
                int kh = h / (Hq / Hkv);
                long kBase = ((long)b * Hkv + kh) * Tk * D;
                for (int i = 0; i < Tq; i++)
                {
                    long qi = (((long)b * Hq + h) * Tq + i) * D;
                    double max = double.NegativeInfinity;
                    for (int j = 0; j < Tk; j++)
                    {
                        double dot = 0;
                        long kj = kBase + (long)j * D;
                        for (int d = 0; d < D; d++) dot += qd[qi + d] * kd[kj + d];
                        s[j] = dot * sc + (bias?.Invoke(b, h, i, j) ?? 0);
                        if (causal && j > i + Tk - Tq) s[j] = double.NegativeInfinity;
                        max = Math.Max(max, s[j]);
                    }
                    if (double.IsNegativeInfinity(max)) continue;
                    double sum = 0;
                    for (int j = 0; j < Tk; j++) { s[j] = Math.Exp(s[j] - max); sum += s[j]; }
                    for (int j = 0; j < Tk; j++)
                    {
                        double pj = s[j] / sum;
                        if (pj == 0) continue;
                        long vj = kBase + (long)j * D;
                        for (int d = 0; d < D; d++) od[qi + d] += pj * vd[vj + d];
                    }
                }
            }
        return o;
    }

    static OpCase Plain(int B, int Hq, int Hkv, int Tq, int Tk, int D, bool causal, string variant = "") =>
        new("attention", [F(B, Hq, Tq, D), F(B, Hkv, Tk, D), F(B, Hkv, Tk, D)],
            x => Ops.ScaledDotProductAttention(x[0], x[1], x[2], causal),
            r => Reference(r[0], r[1], r[2], causal)) { Variant = variant.Length > 0 ? variant : causal ? "causal" : "" };

    [OpCases]
    public static IEnumerable<OpCase> Cases()
    {
        yield return Plain(1, 2, 2, 7, 7, 8, false);
        yield return Plain(2, 2, 2, 17, 17, 24, true);
        yield return Plain(1, 1, 1, 1, 1, 64, false, "T=1");
        yield return Plain(1, 2, 2, 37, 37, 24, true, "T=37 D=24");
        yield return Plain(1, 1, 1, 70, 70, 8, true, "two key tiles");
        yield return Plain(1, 1, 1, 130, 130, 8, false, "three query tiles") with { Atol = 2e-5 };
        yield return Plain(1, 8, 2, 5, 5, 8, true, "GQA 4:1");
        yield return Plain(1, 3, 1, 6, 6, 16, false, "MQA");
        yield return Plain(1, 2, 2, 1, 9, 8, true, "decode Tq=1");
        yield return Plain(1, 4, 2, 3, 10, 8, true, "decode Tq=3 GQA");
        yield return Plain(1, 2, 1, 70, 75, 24, true, "causal Tq<Tk two tiles");

        yield return new OpCase("attention", [F(1, 2, 7, 8), F(1, 2, 9, 8), F(1, 2, 9, 8), Const(7, 9)],
            x => Ops.ScaledDotProductAttention(x[0], x[1], x[2], mask: x[3]),
            r => Reference(r[0], r[1], r[2], false, null, (b, h, i, j) => r[3][i, j])) { Variant = "additive mask" };
        yield return new OpCase("attention", [F(2, 2, 5, 8), F(2, 2, 6, 8), F(2, 2, 6, 8), Const(2, 1, 5, 6)],
            x => Ops.ScaledDotProductAttention(x[0], x[1], x[2], causal: true, mask: x[3]),
            r => Reference(r[0], r[1], r[2], true, null, (b, h, i, j) => r[3][b, 0, i, j])) { Variant = "causal + additive mask" };
        yield return new OpCase("attention", [F(1, 2, 7, 8), F(1, 2, 9, 8), F(1, 2, 9, 8), Mask(0.7, 1, 1, 7, 9)],
            x => Ops.ScaledDotProductAttention(x[0], x[1], x[2], mask: x[3]),
            r => Reference(r[0], r[1], r[2], false, null, (b, h, i, j) => r[3][0, 0, i, j] != 0 ? 0 : double.NegativeInfinity)) { Variant = "bool mask" };
        yield return new OpCase("attention", [F(2, 2, 6, 8), F(2, 2, 9, 8), F(2, 2, 9, 8), Mask(0.7, 2, 9)],
            x => Ops.ScaledDotProductAttention(x[0], x[1], x[2], keyValid: x[3]),
            r => Reference(r[0], r[1], r[2], false, null, (b, h, i, j) => r[3][b, j] != 0 ? 0 : double.NegativeInfinity)) { Variant = "key valid mask" };
        long[] lens = [5, 9, 0];
        yield return new OpCase("attention", [F(3, 2, 6, 8), F(3, 2, 9, 8), F(3, 2, 9, 8)],
            x => Ops.ScaledDotProductAttention(x[0], x[1], x[2], keyLengths: Tensor.FromArray(lens, 3)),
            r => Reference(r[0], r[1], r[2], false, null, (b, h, i, j) => j < lens[b] ? 0 : double.NegativeInfinity)) { Variant = "key lengths, one empty" };
        long[] lens2 = [70, 33];
        yield return new OpCase("attention", [F(2, 1, 9, 8), F(2, 1, 75, 8), F(2, 1, 75, 8)],
            x => Ops.ScaledDotProductAttention(x[0], x[1], x[2], causal: true, keyLengths: Tensor.FromArray(lens2, 2)),
            r => Reference(r[0], r[1], r[2], true, null, (b, h, i, j) => j < lens2[b] ? 0 : double.NegativeInfinity)) { Variant = "key lengths + causal decode" };
        long[] seg = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2];
        yield return new OpCase("attention", [F(1, 2, 13, 8), F(1, 2, 13, 8), F(1, 2, 13, 8)],
            x => Ops.ScaledDotProductAttention(x[0], x[1], x[2], causal: true, segmentIds: Tensor.FromArray(seg, 1, 13)),
            r => Reference(r[0], r[1], r[2], true, null, (b, h, i, j) => seg[i] == seg[j] ? 0 : double.NegativeInfinity)) { Variant = "packed segments causal" };
        yield return new OpCase("attention", [F(1, 7, 2, 8), F(1, 7, 2, 8), F(1, 7, 2, 8)],
            x => Ops.ScaledDotProductAttention(x[0].Transpose(1, 2), x[1].Transpose(1, 2), x[2].Transpose(1, 2), scale: 0.3f),
            r => Reference(Permute0213(r[0]), Permute0213(r[1]), Permute0213(r[2]), false, 0.3)) { Variant = "transposed inputs, scale 0.3" };
    }

    static RefTensor Permute0213(RefTensor x)
    {
        var s = x.Shape;
        var st = x.Strides;
        return x.Gather([s[0], s[2], s[1], s[3]], [st[0], st[2], st[1], st[3]], 0);
    }
}
