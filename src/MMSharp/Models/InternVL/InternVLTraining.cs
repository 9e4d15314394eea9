using MMSharp.Engine;
using MMSharp.NN;
using MMSharp.Training;

namespace MMSharp.Models.InternVL;

/// <summary>
/// One micro-batch of InternVL supervised fine-tuning: <c>input_ids</c> and <c>labels</c> [B, T] (I64, labels −100
/// outside assistant replies and on padding), the tiles of all images in row order <c>pixel_values</c> [N, 3, S, S] with
/// <c>image_flags</c> [N] (0 = padding tile), and for packed rows the sample boundaries of each row
/// (<c>cu_seqlens</c> = [0, len0, len0+len1, …]) with <c>position_ids</c> (restarting at 0 in every sample) and segment
/// ids (one per sample, −1 on padding) [B, T] I64, which keep attention inside each sample; without them each row is one sample.
/// </summary>
public sealed class InternVLBatch : IDisposable
{
    public required Tensor InputIds { get; init; }
    public required Tensor Labels { get; init; }
    public Tensor? PixelValues { get; init; }
    public Tensor? ImageFlags { get; init; }
    public int[][]? CuSeqlens { get; init; }
    public Tensor? PositionIds { get; init; }
    public Tensor? SegmentIds { get; init; }

    public int BatchSize => InputIds.Shape[0];
    public int Length => InputIds.Shape[1];

    /// <summary>Labels that are supervised (≠ −100).</summary>
    public long SupervisedTokens()
    {
        long n = 0;
        foreach (var l in Labels.ToLongArray()) if (l != LossWeighting.IgnoreIndex) n++;
        return n;
    }

    public void Dispose()
    {
        InputIds.Dispose();
        Labels.Dispose();
        PixelValues?.Dispose();
        ImageFlags?.Dispose();
        PositionIds?.Dispose();
        SegmentIds?.Dispose();
    }
}

/// <summary>
/// Training of <see cref="InternVLChatModel"/> as the official <c>internvl_chat_finetune.py</c>: shifted cross-entropy with
/// the token / sample / square loss weights (spec §6.6), freezing of the three parts, LoRA, per-layer recompute.
/// </summary>
public static class InternVLTraining
{
    /// <summary>
    /// The micro-batch loss: logits[:, :-1] against labels[:, 1:], ignore −100.
    /// <see cref="LossReduction.Token"/>: the plain mean over supervised tokens (<c>CrossEntropyLoss()</c>).
    /// Sample / square: Σ CE_t·w_t / Σ w_t with w_t = len2weight(n_eff of t's sample) taken from the unshifted labels
    /// and then shifted (<c>loss_weight[..., 1:]</c>), as the official packed collator.
    /// </summary>
    public static Tensor Loss(InternVLChatModel model, InternVLBatch batch, LossReduction reduction)
    {
        int B = batch.BatchSize, T = batch.Length;
        if (!batch.Labels.Shape.AsSpan().SequenceEqual(batch.InputIds.Shape))
            throw new ArgumentException($"InternVL loss: labels {batch.Labels.Describe()} must have the shape of input_ids {batch.InputIds.Describe()}");
        if (T < 2) throw new ArgumentException($"InternVL loss: sequences of {T} token cannot be shifted");
        var labels = batch.Labels.ToLongArray();
        var shifted = new long[B * (T - 1)];
        float[]? weights = reduction == LossReduction.Token && batch.CuSeqlens == null ? null : new float[B * (T - 1)];
        for (int b = 0; b < B; b++)
        {
            var row = labels.AsSpan(b * T, T);
            row[1..].CopyTo(shifted.AsSpan(b * (T - 1)));
            if (weights == null) continue;
            var w = batch.CuSeqlens != null
                ? LossWeighting.PackedTokenWeights(row, batch.CuSeqlens[b], reduction)
                : LossWeighting.SampleTokenWeights(row, reduction);
            w.AsSpan(1).CopyTo(weights.AsSpan(b * (T - 1)));
        }

        using var logits = model.Forward(batch.InputIds, batch.PixelValues, batch.ImageFlags, batch.PositionIds, batch.SegmentIds); // [B, T, V]
        using var pred = Ops.Narrow(logits, 1, 0, T - 1);                                          // [B, T-1, V]
        using var target = Tensor.FromArray(shifted, B, T - 1);
        using var wt = weights != null ? Tensor.FromArray(weights, B, T - 1) : null;
        return Ops.CrossEntropy(pred, target, (int)LossWeighting.IgnoreIndex, wt, Reduction.Mean);
    }

    /// <summary>
    /// <c>--freeze-vision</c> (<c>vision_model</c>, the official <c>freeze_backbone</c>), <c>--freeze-mlp</c> (<c>mlp1</c>),
    /// <c>--freeze-llm</c> (<c>language_model</c>). LoRA adapters (<c>lora_A</c> / <c>lora_B</c>) stay trainable, before or after.
    /// </summary>
    public static void Freeze(InternVLChatModel model, bool vision, bool mlp, bool llm)
    {
        if (vision) model.Freeze(BaseOf("vision_model"));
        if (mlp) model.Freeze(BaseOf("mlp1"));
        if (llm) model.Freeze(BaseOf("language_model"));
    }

    static System.Text.RegularExpressions.Regex BaseOf(string prefix) =>
        new($@"^{prefix}\.(?!.*\.lora_[AB]\.)", System.Text.RegularExpressions.RegexOptions.CultureInvariant);

    /// <summary><c>--lora-llm R</c> / <c>--lora-vision R</c> on the official target modules (0 = none).</summary>
    public static void ApplyLora(InternVLChatModel model, int llmRank, int visionRank, float? alpha, float dropout, ulong seed)
    {
        if (llmRank > 0)
            LoraLinear.Apply(model, "language_model", LoraLinear.LlmTargets, llmRank, alpha ?? 2f * llmRank, dropout, seed);
        if (visionRank > 0)
            LoraLinear.Apply(model, "vision_model", LoraLinear.VisionTargets, visionRank, alpha ?? 2f * visionRank, dropout, seed + 1);
    }

    /// <summary>Gradient checkpointing of every ViT and LLM layer (training mode only).</summary>
    public static void SetRecompute(InternVLChatModel model, bool on)
    {
        model.VisionModel.Recompute = on;
        model.LanguageModel.Model.Recompute = on;
    }
}

/// <summary>The <see cref="Trainer{TBatch}"/> view of an InternVL model.</summary>
public sealed class InternVLTrainable(InternVLChatModel model, LossReduction reduction) : ITrainableModel<InternVLBatch>
{
    public InternVLChatModel Model => model;
    public Module Module => model;

    public Tensor Loss(InternVLBatch batch) => InternVLTraining.Loss(model, batch, reduction);

    public long CountTokens(InternVLBatch batch) => batch.BatchSize * (long)batch.Length;

    public int CountSamples(InternVLBatch batch) => batch.CuSeqlens?.Sum(c => c.Length - 1) ?? batch.BatchSize;

    /// <summary>input_ids.npy and labels.npy (I64 [T]) of the first row (of its first sample when the row is packed).</summary>
    public void DumpBatch(InternVLBatch batch, string directory)
    {
        int n = batch.CuSeqlens?[0][1] ?? batch.Length;
        using var ids = Ops.Select(batch.InputIds, 0, 0);
        using var idsN = Ops.Narrow(ids, 0, 0, n);
        using var idsC = Ops.Contiguous(idsN, DType.I64);
        Engine.IO.Npy.Write(Path.Combine(directory, "input_ids.npy"), idsC);
        using var lab = Ops.Select(batch.Labels, 0, 0);
        using var labN = Ops.Narrow(lab, 0, 0, n);
        using var labC = Ops.Contiguous(labN, DType.I64);
        Engine.IO.Npy.Write(Path.Combine(directory, "labels.npy"), labC);
    }
}
