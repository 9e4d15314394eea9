using MMSharp.Engine;
using MMSharp.Training;

namespace MMSharp.Data;

/// <summary>
/// A micro-batch of B rows of T tokens (row-major [B, T] arrays), ready for the model: ids, labels (-100 = no loss),
/// attention mask (1 = real token), position ids (restarting at 0 in every packed sample), segment ids (one id per packed
/// sample; padding gets -1 so it never attends to a sample), per-token loss weights, and the images' tiles concatenated
/// over the batch in sample order.
/// </summary>
public sealed record Batch(int B, int T, long[] InputIds, long[] Labels, long[] AttentionMask, long[] PositionIds, long[] SegmentIds,
    float[] LossWeights, float[] PixelValues, int TileCount, int ImageSize, int[] ImageFlags, int[] TilesPerImage,
    IReadOnlyList<TrainingSample> Samples)
{
    /// <summary>Non-padding tokens.</summary>
    public long TokenCount => AttentionMask.Sum();

    /// <summary>I64 [B, T] tensors (caller disposes).</summary>
    public Tensor InputIdsTensor() => Tensor.FromArray(InputIds, [B, T]);
    /// <inheritdoc cref="InputIdsTensor"/>
    public Tensor LabelsTensor() => Tensor.FromArray(Labels, [B, T]);
    /// <inheritdoc cref="InputIdsTensor"/>
    public Tensor PositionIdsTensor() => Tensor.FromArray(PositionIds, [B, T]);
    /// <inheritdoc cref="InputIdsTensor"/>
    public Tensor SegmentIdsTensor() => Tensor.FromArray(SegmentIds, [B, T]);
    /// <inheritdoc cref="InputIdsTensor"/>
    public Tensor AttentionMaskTensor() => Tensor.FromArray(AttentionMask, [B, T]);
    /// <summary>F32 [B, T] loss weights.</summary>
    public Tensor LossWeightsTensor() => Tensor.FromArray(LossWeights, [B, T]);
    /// <summary>I64 [tiles]: 1 for real tiles, 0 for the dummy tile of text-only samples (<c>image_flags</c>).</summary>
    public Tensor ImageFlagsTensor() => Tensor.FromArray(Array.ConvertAll(ImageFlags, f => (long)f), [TileCount]);
    /// <summary>F32 [tiles, 3, S, S].</summary>
    public Tensor PixelValuesTensor() => Tensor.FromArray(PixelValues, [TileCount, 3, ImageSize, ImageSize]);
}

/// <summary>Builds <see cref="Batch"/>es: padding to the longest sample, or packing several samples into one row.</summary>
public static class Collator
{
    /// <summary>
    /// One row per sample, right-padded to the longest (rounded up to <paramref name="padToMultipleOf"/>): ids with
    /// <paramref name="padId"/>, labels -100, attention mask 0, position ids 0, segment id -1, loss weight 0.
    /// </summary>
    /// <remarks>The official collator pads with id 0 and recomputes the mask as <c>ids != 0</c>; the mask here comes from the
    /// true lengths, so a real token with id 0 is never masked.</remarks>
    public static Batch Pad(IReadOnlyList<TrainingSample> samples, long padId, int padToMultipleOf = 1, LossReduction reduction = LossReduction.Token)
    {
        if (samples.Count == 0) throw new ArgumentException("Collator.Pad: no samples");
        int T = samples.Max(s => s.Length);
        if (padToMultipleOf > 1) T = (T + padToMultipleOf - 1) / padToMultipleOf * padToMultipleOf;
        return Rows(samples.Select(s => (IReadOnlyList<TrainingSample>)[s]).ToList(), T, padId, reduction);
    }

    /// <summary>
    /// Packs samples (in order) into rows of at most <paramref name="maxTokens"/> tokens: each sample goes to the first open row
    /// with room (first fit), a sample longer than <paramref name="maxTokens"/> gets a row of its own. Inside a row every
    /// sample has its own segment id (0, 1, 2, ...) so attention stays inside it, and positions restart at 0.
    /// Rows are padded to the longest row.
    /// </summary>
    public static Batch Pack(IReadOnlyList<TrainingSample> samples, int maxTokens, long padId, LossReduction reduction = LossReduction.Token)
    {
        if (samples.Count == 0) throw new ArgumentException("Collator.Pack: no samples");
        var rows = new List<List<TrainingSample>>();
        var used = new List<int>();
        foreach (var s in samples)
        {
            int r = used.FindIndex(u => u + s.Length <= maxTokens);
            if (r < 0) { rows.Add([]); used.Add(0); r = rows.Count - 1; }
            rows[r].Add(s); used[r] += s.Length;
        }
        return Rows(rows.Select(r => (IReadOnlyList<TrainingSample>)r).ToList(), used.Max(), padId, reduction);
    }

    private static Batch Rows(List<IReadOnlyList<TrainingSample>> rows, int T, long padId, LossReduction reduction)
    {
        int B = rows.Count;
        var ids = new long[B * T]; var labels = new long[B * T]; var mask = new long[B * T];
        var pos = new long[B * T]; var seg = new long[B * T]; var weights = new float[B * T];
        Array.Fill(ids, padId); Array.Fill(labels, TrainingSample.IgnoreIndex); Array.Fill(seg, -1L);
        var ordered = new List<TrainingSample>();
        for (int b = 0; b < B; b++)
        {
            int at = b * T;
            for (int k = 0; k < rows[b].Count; k++)
            {
                var s = rows[b][k];
                ordered.Add(s);
                float w = (float)LossWeighting.Len2Weight(s.SupervisedTokens, reduction);   // torch keeps the Python float in float32
                for (int t = 0; t < s.Length; t++, at++)
                {
                    ids[at] = s.InputIds[t]; labels[at] = s.Labels[t]; mask[at] = 1; pos[at] = t; seg[at] = k;
                    weights[at] = s.Labels[t] == TrainingSample.IgnoreIndex ? 0f : w;
                }
            }
        }
        int imageSize = ordered[0].ImageSize;
        if (ordered.Any(s => s.ImageSize != imageSize)) throw new ArgumentException("Collator: samples have different tile sizes");
        int tiles = ordered.Sum(s => s.TileCount);
        var pixels = new float[ordered.Sum(s => (long)s.PixelValues.Length)];
        long p = 0;
        foreach (var s in ordered) { s.PixelValues.CopyTo(pixels, p); p += s.PixelValues.Length; }
        return new Batch(B, T, ids, labels, mask, pos, seg, weights, pixels, tiles, imageSize,
            ordered.SelectMany(s => s.ImageFlags).ToArray(), ordered.SelectMany(s => s.TilesPerImage).ToArray(), ordered);
    }
}
