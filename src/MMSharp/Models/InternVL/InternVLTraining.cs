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
    /// The micro-batch loss of the official <c>InternVLChatModel.forward</c>: <see cref="ForwardForTraining"/>, then
    /// <see cref="LossFromLogits"/>; when truncation left fewer <c>&lt;IMG_CONTEXT&gt;</c> tokens than image feature rows the
    /// loss is multiplied by 0 (the official <c>ignore_flag</c>: the step still runs, with zero gradients from this micro-batch).
    /// </summary>
    public static Tensor Loss(InternVLChatModel model, InternVLBatch batch, LossReduction reduction) =>
        Loss(model, batch, reduction, out _);

    /// <inheritdoc cref="Loss(InternVLChatModel, InternVLBatch, LossReduction)"/>
    /// <param name="model">The model.</param>
    /// <param name="batch">The micro-batch.</param>
    /// <param name="reduction">The loss reduction.</param>
    /// <param name="imageTokensTruncated">Whether the image-token mismatch rule zeroed this loss.</param>
    public static Tensor Loss(InternVLChatModel model, InternVLBatch batch, LossReduction reduction, out bool imageTokensTruncated)
    {
        CheckLabels(batch.Labels, batch.InputIds);
        using var logits = ForwardForTraining(model, batch, out imageTokensTruncated);   // [B, T, V]
        var loss = LossFromLogits(logits, batch.Labels, batch.CuSeqlens, reduction);
        if (!imageTokensTruncated) return loss;
        using (loss) return Ops.Mul(loss, 0f);
    }

    /// <summary>
    /// The training forward of the official <c>InternVLChatModel.forward</c>: ViT features of the flagged tiles
    /// (<c>vit_embeds[image_flags == 1]</c>) written over the <c>&lt;IMG_CONTEXT&gt;</c> embeddings in order, then the LLM ->
    /// logits [B, T, V]. When <c>max_seq_length</c> truncation cut image-context tokens (fewer tokens than feature rows), the
    /// official code catches the shape error and uses the FIRST n_selected feature rows of the micro-batch; so does this, and
    /// reports it in <paramref name="imageTokensTruncated"/> (the loss must then be multiplied by 0). More tokens than rows
    /// is an error, as in the official code.
    /// </summary>
    public static Tensor ForwardForTraining(InternVLChatModel model, InternVLBatch batch, out bool imageTokensTruncated) =>
        model.Forward(batch.InputIds, batch.PixelValues, batch.ImageFlags, batch.PositionIds, batch.SegmentIds,
            allowTruncatedImages: true, out imageTokensTruncated);

    /// <summary>
    /// The loss on given logits [B, T, V]: logits[:, :-1] against labels[:, 1:], ignore −100.
    /// <see cref="LossReduction.Token"/> without <paramref name="cuSeqlens"/>: the plain mean over supervised tokens
    /// (<c>CrossEntropyLoss()</c>, the official non-packed path). Otherwise Σ CE_t·w_t / Σ w_t with w_t = len2weight(n_eff of
    /// t's sample) taken from the unshifted labels and then shifted (<c>loss_weight[..., 1:]</c>), as the official packed
    /// collator; without <paramref name="cuSeqlens"/> each row is one sample (a pack of one).
    /// </summary>
    /// <remarks>
    /// The official non-packed path has no <c>loss_weight</c> and so ignores <c>--loss_reduction</c> (always the token mean);
    /// here sample / square also apply to unpacked rows, with exactly the weights the official packed collator gives a
    /// micro-batch of one-sample packs (tests/fixtures/preprocess, "padded" losses).
    /// </remarks>
    public static Tensor LossFromLogits(Tensor logits, Tensor labels, int[][]? cuSeqlens, LossReduction reduction)
    {
        if (logits.Rank != 3 || labels.Rank != 2 || logits.Shape[0] != labels.Shape[0] || logits.Shape[1] != labels.Shape[1])
            throw new ArgumentException($"InternVL loss: logits {logits.Describe()} must be [B, T, V] for labels {labels.Describe()} [B, T]");
        int B = labels.Shape[0], T = labels.Shape[1];
        if (T < 2) throw new ArgumentException($"InternVL loss: sequences of {T} token cannot be shifted");
        if (cuSeqlens != null && cuSeqlens.Length != B)
            throw new ArgumentException($"InternVL loss: {cuSeqlens.Length} cu_seqlens lists for {B} rows");
        var lab = labels.ToLongArray();
        var shifted = new long[B * (T - 1)];
        float[]? weights = reduction == LossReduction.Token && cuSeqlens == null ? null : new float[B * (T - 1)];
        for (int b = 0; b < B; b++)
        {
            var row = lab.AsSpan(b * T, T);
            row[1..].CopyTo(shifted.AsSpan(b * (T - 1)));
            if (weights == null) continue;
            var w = cuSeqlens != null
                ? LossWeighting.PackedTokenWeights(row, cuSeqlens[b], reduction)
                : LossWeighting.SampleTokenWeights(row, reduction);
            w.AsSpan(1).CopyTo(weights.AsSpan(b * (T - 1)));
        }

        using var pred = Ops.Narrow(logits, 1, 0, T - 1);                                          // [B, T-1, V]
        using var target = Tensor.FromArray(shifted, B, T - 1);
        using var wt = weights != null ? Tensor.FromArray(weights, B, T - 1) : null;
        return Ops.CrossEntropy(pred, target, (int)LossWeighting.IgnoreIndex, wt, Reduction.Mean);
    }

    static void CheckLabels(Tensor labels, Tensor inputIds)
    {
        if (!labels.Shape.AsSpan().SequenceEqual(inputIds.Shape))
            throw new ArgumentException($"InternVL loss: labels {labels.Describe()} must have the shape of input_ids {inputIds.Describe()}");
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

    /// <summary>
    /// <c>--lora-llm R</c> / <c>--lora-vision R</c> on the official target modules (0 = none). A model loaded from an unmerged
    /// LoRA directory (<c>use_llm_lora</c> / <c>use_backbone_lora</c> in its config.json) already carries adapters: they
    /// keep training when the requested rank and alpha equal theirs (or the rank is 0); any other rank or alpha is an
    /// error, since stacking a second adapter on a layer is not supported.
    /// </summary>
    public static void ApplyLora(InternVLChatModel model, int llmRank, int visionRank, float? alpha, float dropout, ulong seed)
    {
        if (llmRank > 0 && !KeepLoaded(model, "language_model", "--lora-llm", llmRank, alpha ?? 2f * llmRank, dropout))
            LoraLinear.Apply(model, "language_model", LoraLinear.LlmTargets, llmRank, alpha ?? 2f * llmRank, dropout, seed);
        if (visionRank > 0 && !KeepLoaded(model, "vision_model", "--lora-vision", visionRank, alpha ?? 2f * visionRank, dropout))
            LoraLinear.Apply(model, "vision_model", LoraLinear.VisionTargets, visionRank, alpha ?? 2f * visionRank, dropout, seed + 1);
    }

    /// <summary>True when the tower already carries adapters of this rank and alpha (their dropout is set); throws for others.</summary>
    static bool KeepLoaded(InternVLChatModel model, string tower, string option, int rank, float alpha, float dropout)
    {
        var loaded = model.NamedModules()
            .Where(x => x.Name.StartsWith(tower + ".", StringComparison.Ordinal) && x.Module is Linear { Lora: not null })
            .Select(x => ((Linear)x.Module).Lora!).ToList();
        if (loaded.Count == 0) return false;
        if (loaded.Any(l => l.Rank != rank || l.Alpha != alpha))
            throw new ArgumentException($"{option} {rank} (lora_alpha {alpha}): the model's {tower} already carries LoRA adapters of rank {loaded[0].Rank}, " +
                $"alpha {loaded[0].Alpha} (from use_*_lora in its config.json); pass {option} {loaded[0].Rank} with alpha {loaded[0].Alpha} (or {option} 0) " +
                "to continue training them, or export the model with --merge-lora first to start new adapters");
        foreach (var l in loaded) l.DropoutP = dropout;
        return true;
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

    /// <summary>Micro-batches whose loss the image-token mismatch rule multiplied by 0 (see <see cref="InternVLTraining.Loss(InternVLChatModel, InternVLBatch, LossReduction, out bool)"/>).</summary>
    public long ImageTokenMismatchBatches { get; private set; }

    /// <summary>Where a warning goes when a micro-batch's loss is zeroed (the official code prints one too); null = none.</summary>
    public TextWriter? Log { get; init; }

    public Tensor Loss(InternVLBatch batch)
    {
        var loss = InternVLTraining.Loss(model, batch, reduction, out bool truncated);
        if (truncated)
        {
            ImageTokenMismatchBatches++;
            Log?.WriteLine($"warning: max_seq_length truncation cut <IMG_CONTEXT> tokens in a micro-batch; its loss is multiplied by 0 " +
                           $"as in the official InternVL code ({ImageTokenMismatchBatches} such micro-batch(es) so far)");
        }
        return loss;
    }

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
