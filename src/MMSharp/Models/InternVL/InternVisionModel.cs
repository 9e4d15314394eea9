using MMSharp.Engine;
using MMSharp.NN;

namespace MMSharp.Models.InternVL;

// InternViT (OpenGVLab modeling_intern_vit.py): patch + CLS embeddings with a learned 2-D position grid, then
// pre-norm encoder layers with layer scale. No final norm. Shapes: B tiles, N = 1 + Hp·Wp tokens, C hidden,
// H heads, D = C / H.

/// <summary>
/// Called with every named intermediate activation (e.g. "vit.layers.3.attn_out") when set on a model, so runs
/// can be dumped and compared stage by stage. The tensor is owned by the model: read or copy it, do not keep it.
/// </summary>
public delegate void ActivationTap(string name, Tensor value);

/// <summary>
/// <c>embeddings</c>: <c>class_embedding</c> [1, 1, C], <c>patch_embedding</c> (Conv2d k = s = patch),
/// <c>position_embedding</c> [1, 1 + S², C] (row 0 = CLS, then an S×S grid, S = image_size / patch_size).
/// </summary>
public sealed class InternVisionEmbeddings : Module
{
    readonly InternVisionConfig _c;
    public readonly Parameter ClassEmbedding;
    public readonly Conv2dPatch PatchEmbedding;
    public readonly Parameter PositionEmbedding;

    public InternVisionEmbeddings(InternVisionConfig c, DType dtype)
    {
        _c = c;
        ClassEmbedding = RegisterParameter("class_embedding", [1, 1, c.HiddenSize], dtype);
        PatchEmbedding = RegisterModule("patch_embedding", new Conv2dPatch(c.NumChannels, c.HiddenSize, c.PatchSize, bias: true, dtype));
        PositionEmbedding = RegisterParameter("position_embedding", [1, c.NumPositions, c.HiddenSize], dtype);
    }

    /// <summary>pixel_values [B, 3, H, W] -> embeddings [B, 1 + Hp·Wp, C] (F32).</summary>
    public Tensor Forward(Tensor pixelValues)
    {
        if (pixelValues.Rank != 4 || pixelValues.Shape[1] != _c.NumChannels)
            throw new ArgumentException($"InternVisionEmbeddings: pixel_values must be [tiles, {_c.NumChannels}, H, W], got {pixelValues.Describe()}");
        int B = pixelValues.Shape[0], C = _c.HiddenSize;
        using var patchMap = PatchEmbedding.Forward(pixelValues);                 // [B, C, Hp, Wp]
        int Hp = patchMap.Shape[2], Wp = patchMap.Shape[3];
        using var patchFlat = Ops.Flatten(patchMap, 2);                           // [B, C, Hp·Wp]
        using var patchTokens = Ops.Transpose(patchFlat, 1, 2);                   // [B, Hp·Wp, C], token t = y·Wp + x
        using var cls32 = Ops.Contiguous(ClassEmbedding, DType.F32);
        using var cls = Ops.Expand(cls32, B, 1, C);                               // [B, 1, C]
        using var tokens = Ops.Concat([cls, patchTokens], 1);                     // [B, 1 + Hp·Wp, C]
        using var pos = PositionEmbeddingFor(Hp, Wp);                             // [1, 1 + Hp·Wp, C]
        return Ops.Add(tokens, pos);
    }

    /// <summary>
    /// The CLS row followed by the S×S grid resized to Hp×Wp with PyTorch bicubic (A = −0.75,
    /// align_corners False, fp32), as <c>_get_pos_embed</c>. At Hp = Wp = S the official code still runs the
    /// interpolation, which is then exactly the identity (cubic weights at t = 0 are [0, 1, 0, 0]), so it is skipped.
    /// </summary>
    public Tensor PositionEmbeddingFor(int Hp, int Wp)
    {
        int S = _c.GridSize, C = _c.HiddenSize;
        if (Hp == S && Wp == S) return Ops.Contiguous(PositionEmbedding, DType.F32);
        using var clsPos = Ops.Narrow(PositionEmbedding, 1, 0, 1);               // [1, 1, C]
        using var clsPos32 = Ops.Contiguous(clsPos, DType.F32);
        using var gridRows = Ops.Narrow(PositionEmbedding, 1, 1, S * S);          // [1, S·S, C]
        using var grid32 = Ops.Contiguous(gridRows, DType.F32);
        using var grid = Ops.Reshape(grid32, 1, S, S, C);                         // [1, S, S, C]
        using var gridCHW = Ops.Permute(grid, 0, 3, 1, 2);                        // [1, C, S, S]
        using var resized = Ops.Interpolate(gridCHW, Hp, Wp, InterpolateMode.Bicubic, alignCorners: false); // [1, C, Hp, Wp]
        using var flat = Ops.Reshape(resized, 1, C, Hp * Wp);                     // [1, C, Hp·Wp]
        using var rows = Ops.Permute(flat, 0, 2, 1);                              // [1, Hp·Wp, C]
        return Ops.Concat([clsPos32, rows], 1);
    }
}

/// <summary>
/// <c>attn</c>: fused <c>qkv</c> [3C, C] (rows q | k | v; bias only with qkv_bias), optional <c>q_norm</c> /
/// <c>k_norm</c> (RMSNorm over all C = H·D dims, 6B only), output <c>proj</c> [C, C] with bias.
/// Bidirectional attention, scale D^−½, CLS token included.
/// </summary>
public sealed class InternAttention : Module
{
    readonly InternVisionConfig _c;
    public readonly Linear Qkv;
    public readonly RMSNorm? QNorm, KNorm;
    public readonly Linear Proj;

    public InternAttention(InternVisionConfig c, DType dtype)
    {
        _c = c;
        Qkv = RegisterModule("qkv", new Linear(c.HiddenSize, 3 * c.HiddenSize, bias: c.QkvBias, dtype));
        if (c.QkNormalization)
        {
            QNorm = RegisterModule("q_norm", new RMSNorm(c.HiddenSize, (float)c.LayerNormEps, dtype));
            KNorm = RegisterModule("k_norm", new RMSNorm(c.HiddenSize, (float)c.LayerNormEps, dtype));
        }
        Proj = RegisterModule("proj", new Linear(c.HiddenSize, c.HiddenSize, bias: true, dtype));
    }

    /// <summary>x [B, N, C] -> [B, N, C].</summary>
    public Tensor Forward(Tensor x)
    {
        int B = x.Shape[0], N = x.Shape[1], C = _c.HiddenSize, H = _c.NumAttentionHeads, D = _c.HeadDim;
        using var qkv = Qkv.Forward(x);                                           // [B, N, 3C]
        using var qkv5 = Ops.Reshape(qkv, B, N, 3, H, D);                         // [B, N, 3, H, D]
        using var q = HeadsFirst(qkv5, 0, QNorm, B, N, C);                        // [B, H, N, D]
        using var k = HeadsFirst(qkv5, 1, KNorm, B, N, C);
        using var v = HeadsFirst(qkv5, 2, null, B, N, C);
        using var o = Ops.ScaledDotProductAttention(q, k, v, causal: false, scale: 1f / MathF.Sqrt(D)); // [B, H, N, D]
        using var oTokens = Ops.Transpose(o, 1, 2);                               // [B, N, H, D]
        using var merged = Ops.Reshape(oTokens, B, N, C);                         // [B, N, C]
        return Proj.Forward(merged);
    }

    /// <summary>Slice <paramref name="which"/> (0 q, 1 k, 2 v) of [B, N, 3, H, D] as [B, H, N, D], q/k-normed over C first when given.</summary>
    static Tensor HeadsFirst(Tensor qkv5, int which, RMSNorm? norm, int B, int N, int C)
    {
        using var part = Ops.Select(qkv5, 2, which);                              // [B, N, H, D]
        if (norm == null) return Ops.Transpose(part, 1, 2);
        using var flat = Ops.Reshape(part, B, N, C);                              // [B, N, H·D]
        using var normed = norm.Forward(flat);
        using var split = Ops.Reshape(normed, B, N, part.Shape[2], part.Shape[3]);
        return Ops.Transpose(split, 1, 2);
    }
}

/// <summary><c>mlp</c>: fc2(GELU_erf(fc1(x))), fc1 [I, C], fc2 [C, I], both with bias.</summary>
public sealed class InternMLP : Module
{
    public readonly Linear Fc1, Fc2;

    public InternMLP(InternVisionConfig c, DType dtype)
    {
        Fc1 = RegisterModule("fc1", new Linear(c.HiddenSize, c.IntermediateSize, bias: true, dtype));
        Fc2 = RegisterModule("fc2", new Linear(c.IntermediateSize, c.HiddenSize, bias: true, dtype));
    }

    public Tensor Forward(Tensor x)
    {
        using var h = Fc1.Forward(x);
        using var a = Ops.Gelu(h);
        return Fc2.Forward(a);
    }
}

/// <summary>
/// One encoder layer, pre-norm with layer scale:
/// h = h + drop_path(attn(norm1(h)) · ls1);  h = h + drop_path(mlp(norm2(h)) · ls2).
/// </summary>
public sealed class InternVisionEncoderLayer : Module
{
    readonly float _dropPath;
    public readonly InternAttention Attn;
    public readonly InternMLP Mlp;
    public readonly INormLayer Norm1, Norm2;
    public readonly Parameter Ls1, Ls2;

    public InternVisionEncoderLayer(InternVisionConfig c, DType dtype, float dropPath)
    {
        _dropPath = dropPath;
        Attn = RegisterModule("attn", new InternAttention(c, dtype));
        Mlp = RegisterModule("mlp", new InternMLP(c, dtype));
        Norm1 = NewNorm("norm1", c, dtype);
        Norm2 = NewNorm("norm2", c, dtype);
        Ls1 = RegisterParameter("ls1", [c.HiddenSize], dtype);
        Ls2 = RegisterParameter("ls2", [c.HiddenSize], dtype);
    }

    INormLayer NewNorm(string name, InternVisionConfig c, DType dtype) => c.UsesRmsNorm
        ? RegisterModule(name, new RMSNorm(c.HiddenSize, (float)c.LayerNormEps, dtype))
        : RegisterModule(name, new LayerNorm(c.HiddenSize, (float)c.LayerNormEps, dtype: dtype));

    public Tensor Forward(Tensor h, ActivationTap? tap = null, string name = "")
    {
        Tensor afterAttn;
        using (var n1 = Norm1.Forward(h))
        using (var attnOut = Attn.Forward(n1))
        using (var scaled = Ops.Mul(attnOut, Ls1))
        using (var dropped = Ops.DropPath(scaled, _dropPath, Training))
        {
            tap?.Invoke(name + ".attn_out", attnOut);
            afterAttn = Ops.Add(h, dropped);
        }
        using (afterAttn)
        using (var n2 = Norm2.Forward(afterAttn))
        using (var mlpOut = Mlp.Forward(n2))
        using (var scaled = Ops.Mul(mlpOut, Ls2))
        using (var dropped = Ops.DropPath(scaled, _dropPath, Training))
        {
            tap?.Invoke(name + ".mlp_out", mlpOut);
            var y = Ops.Add(afterAttn, dropped);
            tap?.Invoke(name, y);
            return y;
        }
    }
}

/// <summary><c>encoder</c>: <c>layers.{i}</c>, stochastic depth rising linearly to drop_path_rate (training only).</summary>
public sealed class InternVisionEncoder : Module
{
    public readonly ModuleList<InternVisionEncoderLayer> Layers;

    public InternVisionEncoder(InternVisionConfig c, DType dtype)
    {
        Layers = RegisterModule("layers", new ModuleList<InternVisionEncoderLayer>());
        int L = c.NumHiddenLayers;
        for (int i = 0; i < L; i++)
        {
            // torch.linspace(0, drop_path_rate, L)
            float dp = L == 1 ? 0f : (float)(c.DropPathRate * i / (L - 1));
            Layers.Add(new InternVisionEncoderLayer(c, dtype, dp));
        }
    }
}

/// <summary>
/// InternViT-300M / 6B: <c>embeddings</c> then <c>encoder</c>. Parameter names are those of a standalone InternViT
/// checkpoint; inside a chat checkpoint they sit under <c>vision_model.</c>.
/// </summary>
public sealed class InternVisionModel : Module
{
    public InternVisionConfig Config { get; }
    public readonly InternVisionEmbeddings Embeddings;
    public readonly InternVisionEncoder Encoder;

    /// <summary>
    /// Gradient checkpointing in training mode: each encoder layer keeps only its input and is recomputed (with the
    /// same drop-path draws) in backward. Taps of layer internals are not reported then.
    /// </summary>
    public bool Recompute { get; set; }

    /// <summary>Receives "vit.embeddings" and "vit.layers.{i}[.attn_out|.mlp_out]" when set.</summary>
    public ActivationTap? Tap { get; set; }

    public InternVisionModel(InternVisionConfig config, DType dtype = DType.BF16)
    {
        Config = config;
        Embeddings = RegisterModule("embeddings", new InternVisionEmbeddings(config, dtype));
        Encoder = RegisterModule("encoder", new InternVisionEncoder(config, dtype));
    }

    /// <summary>
    /// pixel_values [B, 3, H, W] -> hidden states [B, 1 + Hp·Wp, C] after the first <paramref name="numLayers"/>
    /// layers (all by default = <c>last_hidden_state</c>; k gives <c>hidden_states[k]</c>).
    /// </summary>
    public Tensor Forward(Tensor pixelValues, int? numLayers = null)
    {
        int n = numLayers ?? Config.NumHiddenLayers;
        if (n < 0 || n > Config.NumHiddenLayers)
            throw new ArgumentOutOfRangeException(nameof(numLayers), $"InternVisionModel: {n} layers requested, model has {Config.NumHiddenLayers}");
        var h = Embeddings.Forward(pixelValues);
        Tap?.Invoke("vit.embeddings", h);
        for (int i = 0; i < n; i++)
        {
            var layer = Encoder.Layers[i];
            var next = Recompute && Training
                ? MMSharp.Engine.Autograd.Checkpoint.Run(t => layer.Forward(t[0]), h)
                : layer.Forward(h, Tap, $"vit.layers.{i}");
            h.Dispose();
            h = next;
        }
        return h;
    }
}
