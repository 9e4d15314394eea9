using MMSharp.Engine;
using MMSharp.Models.InternVL;

namespace MMSharp.Tests.Models;

/// <summary>Logits of a prefill and six decode steps (fixed token ids), for comparing two decode paths bit for bit.</summary>
internal static class DecodeLogits
{
    public static float[] PrefillAndSixSteps(InternVLChatModel model, Tensor ids, Tensor pixels)
    {
        using var cache = model.NewCache(1, ids.Shape[1] + 8);
        var logits = new List<float>();
        using (var l = model.Prefill(ids, pixels, cache)) logits.AddRange(l.ToFloatArray());
        using var tok = Tensor.Empty([1], DType.I64);
        for (int i = 0; i < 6; i++)
        {
            tok.SetFlat(0, 17 + 31 * i);
            using var l = model.DecodeStep(tok, cache);
            logits.AddRange(l.ToFloatArray());
        }
        return [.. logits];
    }
}
