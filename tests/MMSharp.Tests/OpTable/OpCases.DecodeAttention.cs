using MMSharp.Engine;
using static MMSharp.Tests.OpTable.InputSpec;

namespace MMSharp.Tests.OpTable;

/// <summary>
/// Attention with few queries against many keys, the decode fast path (taken without autograd, so the table's
/// forward check runs it and the gradient checks run the tiled path): Tq = 1 and 2, GQA groups, odd D (vector tails),
/// and keys/values read as a strided view of a longer cache buffer, as <c>KvCache.Append</c> returns them.
/// </summary>
public static class DecodeAttentionCases
{
    static OpCase Dense(int Hq, int Hkv, int Tq, int Tk, int D, bool causal, string variant) =>
        new("attention", [F(1, Hq, Tq, D), F(1, Hkv, Tk, D), F(1, Hkv, Tk, D)],
            x => Ops.ScaledDotProductAttention(x[0], x[1], x[2], causal),
            r => AttentionCases.Reference(r[0], r[1], r[2], causal)) { Variant = "decode " + variant };

    /// <summary>k, v [B, Hkv, Tk, D] placed at the front of a [B, Hkv, Tk + spare, D] buffer and narrowed back:
    /// a view whose head stride is (Tk + spare)·D.</summary>
    static OpCase CacheView(int B, int Hq, int Hkv, int Tq, int Tk, int D, int spare, string variant) =>
        new("attention", [F(B, Hq, Tq, D), F(B, Hkv, Tk, D), F(B, Hkv, Tk, D)],
            x =>
            {
                using var pad = Tensor.Full([B, Hkv, spare, D], 1e4f); // garbage beyond the cached length must not be read
                using var kBuf = Ops.Cat([x[1], pad], 2);
                using var vBuf = Ops.Cat([x[2], pad], 2);
                using var k = Ops.Narrow(kBuf, 2, 0, Tk);
                using var v = Ops.Narrow(vBuf, 2, 0, Tk);
                return Ops.ScaledDotProductAttention(x[0], k, v, causal: true);
            },
            r => AttentionCases.Reference(r[0], r[1], r[2], true)) { Variant = "decode cache view " + variant };

    [OpCases]
    public static IEnumerable<OpCase> Cases()
    {
        yield return Dense(1, 1, 1, 70, 16, true, "Tq=1 Tk=70");
        yield return Dense(7, 1, 1, 33, 16, true, "Tq=1 GQA 7:1");
        yield return Dense(4, 2, 2, 41, 16, true, "Tq=2 GQA 2:1 causal");
        yield return Dense(4, 2, 2, 23, 17, false, "Tq=2 D=17 non-causal");
        yield return Dense(2, 2, 1, 1, 7, false, "Tq=1 Tk=1 D=7");
        yield return CacheView(1, 4, 2, 1, 37, 16, 5, "Tq=1 GQA");
        yield return CacheView(2, 6, 2, 2, 19, 8, 3, "Tq=2 B=2");
    }
}
