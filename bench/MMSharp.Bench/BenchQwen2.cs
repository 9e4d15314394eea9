using MMSharp.Engine;
using MMSharp.Models.InternVL;

namespace MMSharp.Bench;

/// <summary>The language model of InternVL3-1B (Qwen2-0.5B geometry, untied head) with random weights, for decode benches.</summary>
static class BenchQwen2
{
    /// <summary>
    /// <paramref name="layers"/> decoder layers of Qwen2-0.5B geometry, BF16 weights N(0, 0.02²) (norm weights 1), frozen,
    /// in a <see cref="WeightArena"/>.
    /// <paramref name="layerAndHeadBytes"/>: the bytes a decode step reads of every weight but the embedding table.
    /// </summary>
    public static Qwen2ForCausalLM Random(int layers, out Qwen2Config config, out long layerAndHeadBytes)
    {
        config = new Qwen2Config("Qwen2ForCausalLM", 151674, 896, 4864, layers, 14, 2, 64, 32768, 1e-6, 1000000.0, null,
            false, "silu", null, 151645);
        var lm = new Qwen2ForCausalLM(config, DType.BF16);
        var arena = new WeightArena();                 // where chat --no-mmap puts a checkpoint's weights
        ulong seed = 1;
        layerAndHeadBytes = 0;
        foreach (var (name, p) in lm.NamedParameters())
        {
            using var f = name.EndsWith("norm.weight") ? Tensor.Ones(p.Shape) : Tensor.RandN(p.Shape, seed++, 0.02f);
            using var bf = Ops.To(f, DType.BF16);
            using var w = arena.Copy(bf);
            p.Set(w);
            p.RequiresGrad = false;
            if (!name.Contains("embed_tokens")) layerAndHeadBytes += p.NumEl * 2;
        }
        return lm;
    }
}
