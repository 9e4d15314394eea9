using MMSharp.Engine;
using MMSharp.NN;

namespace MMSharp.Tests.NN;

// Small modules with the InternVL / Qwen2 naming, holding only declared parameters (no forward needed here).

sealed class TinyLinear : Module
{
    public readonly Parameter Weight;
    public readonly Parameter? Bias;

    public TinyLinear(int inFeatures, int outFeatures, bool bias = true, DType dtype = DType.F32)
    {
        Weight = RegisterParameter("weight", [outFeatures, inFeatures], dtype);
        if (bias) Bias = RegisterParameter("bias", [outFeatures], dtype);
    }
}

sealed class TinyRmsNorm : Module
{
    public readonly Parameter Weight;
    public TinyRmsNorm(int dim) => Weight = RegisterParameter("weight", [dim]);
}

/// <summary>No parameters; occupies an index in a Sequential-style list.</summary>
sealed class TinyGelu : Module;

sealed class TinyAttention : Module
{
    public readonly TinyLinear QProj, KProj, VProj, OProj;
    public readonly ModuleBuffer InvFreq;

    public TinyAttention(int hidden, int kv)
    {
        QProj = RegisterModule("q_proj", new TinyLinear(hidden, hidden, dtype: DType.BF16));
        KProj = RegisterModule("k_proj", new TinyLinear(hidden, kv, dtype: DType.BF16));
        VProj = RegisterModule("v_proj", new TinyLinear(hidden, kv, dtype: DType.BF16));
        OProj = RegisterModule("o_proj", new TinyLinear(hidden, hidden, bias: false, dtype: DType.BF16));
        InvFreq = RegisterBuffer("inv_freq", Tensor.Ones(hidden / 2), persistent: false); // recomputed, never saved
    }
}

sealed class TinyDecoderLayer : Module
{
    public readonly TinyAttention SelfAttn;
    public readonly TinyRmsNorm InputLayernorm;

    public TinyDecoderLayer(int hidden, int kv)
    {
        SelfAttn = RegisterModule("self_attn", new TinyAttention(hidden, kv));
        InputLayernorm = RegisterModule("input_layernorm", new TinyRmsNorm(hidden));
    }
}

sealed class TinyQwen2Model : Module
{
    public readonly Parameter EmbedTokens;
    public readonly ModuleList<TinyDecoderLayer> Layers;
    public readonly TinyRmsNorm Norm;

    public TinyQwen2Model(int vocab, int hidden, int kv, int layers)
    {
        var embed = RegisterModule("embed_tokens", new EmbeddingLike(vocab, hidden));
        EmbedTokens = embed.Weight;
        Layers = RegisterModule("layers", new ModuleList<TinyDecoderLayer>(Enumerable.Range(0, layers).Select(_ => new TinyDecoderLayer(hidden, kv))));
        Norm = RegisterModule("norm", new TinyRmsNorm(hidden));
    }

    public sealed class EmbeddingLike : Module
    {
        public readonly Parameter Weight;
        public EmbeddingLike(int vocab, int hidden) => Weight = RegisterParameter("weight", [vocab, hidden], DType.BF16);
    }
}

sealed class TinyCausalLM : Module
{
    public readonly TinyQwen2Model Model;
    public readonly TinyLinear LmHead;

    public TinyCausalLM(int vocab, int hidden, int kv, int layers)
    {
        Model = RegisterModule("model", new TinyQwen2Model(vocab, hidden, kv, layers));
        LmHead = RegisterModule("lm_head", new TinyLinear(hidden, vocab, bias: false, dtype: DType.BF16));
    }
}

sealed class TinyVision : Module
{
    public readonly Parameter ClassEmbedding;
    public readonly ModuleBuffer Steps;

    public TinyVision(int dim)
    {
        var embeddings = RegisterModule("embeddings", new Embeddings(dim));
        ClassEmbedding = embeddings.ClassEmbedding;
        Steps = RegisterBuffer("steps", [1], DType.I64); // persistent integer buffer
    }

    public sealed class Embeddings : Module
    {
        public readonly Parameter ClassEmbedding;
        public Embeddings(int dim) => ClassEmbedding = RegisterParameter("class_embedding", [1, 1, dim]);
    }
}

/// <summary>vision_model + mlp1 (indices 0, 1, 3 hold parameters) + language_model, as in InternVLChatModel.</summary>
sealed class TinyChat : Module
{
    public readonly TinyVision VisionModel;
    public readonly ModuleList<Module> Mlp1;
    public readonly TinyCausalLM LanguageModel;

    public TinyChat(int layers = 2)
    {
        VisionModel = RegisterModule("vision_model", new TinyVision(6));
        Mlp1 = RegisterModule("mlp1", new ModuleList<Module>([new TinyRmsNorm(6), new TinyLinear(6, 4), new TinyGelu(), new TinyLinear(4, 4)]));
        LanguageModel = RegisterModule("language_model", new TinyCausalLM(vocab: 10, hidden: 4, kv: 2, layers));
    }

    /// <summary>Seeded values for every declared slot.</summary>
    public TinyChat Initialise(ulong seed)
    {
        foreach (var (name, slot) in StateSlots().Concat(NamedBuffers().Select(b => (b.Name, (TensorSlot)b.Buffer))))
        {
            if (slot.IsMaterialized) continue;
            using var f = Tensor.RandN(slot.Shape, seed++);
            using var t = f.To(slot.DType);
            slot.Set(t);
        }
        return this;
    }
}
