namespace MMSharp.Training;

/// <summary>How the official InternVL fine-tuning weights tokens in the loss (<c>--loss_reduction</c>).</summary>
public enum LossReduction
{
    /// <summary>Every supervised token counts once (the default): a mean over tokens.</summary>
    Token,
    /// <summary>Each sample counts once: its tokens get 1/n_eff.</summary>
    Sample,
    /// <summary>Between the two: 1/sqrt(n_eff) (InternVL2.5 stage-2 scripts).</summary>
    Square,
}

/// <summary>
/// The per-token loss weights of <c>internvl_chat_finetune.len2weight</c> and the packed collator
/// (spec internvl.md §6.6).
/// </summary>
public static class LossWeighting
{
    public const long IgnoreIndex = -100;

    /// <summary>
    /// <c>len2weight(n, reduction)</c>: 0 when n = 0, else token → 1, sample → 1/n, square → 1/sqrt(n) (n^0.5 in Python,
    /// computed in double).
    /// </summary>
    public static double Len2Weight(int n, LossReduction reduction)
    {
        if (n < 0) throw new ArgumentOutOfRangeException(nameof(n));
        if (n == 0) return 0;
        return reduction switch
        {
            LossReduction.Token => 1,
            LossReduction.Sample => 1.0 / n,
            LossReduction.Square => 1.0 / Math.Pow(n, 0.5),
            _ => throw new ArgumentOutOfRangeException(nameof(reduction)),
        };
    }

    /// <summary>
    /// Per-token weights of one packed row of (unshifted) <paramref name="labels"/> made of samples delimited by
    /// <paramref name="cuSeqlens"/> = [0, len0, len0+len1, …]: w_t = len2weight(n_eff) of the sample holding t, where
    /// n_eff counts the sample's labels ≠ -100; then w_t = 0 wherever the label is -100. Positions past the last
    /// boundary (padding) get 0. The loss is Σ CE_t·w_t / Σ w_t over shifted positions — use <see cref="Shift"/>.
    /// </summary>
    public static float[] PackedTokenWeights(ReadOnlySpan<long> labels, ReadOnlySpan<int> cuSeqlens, LossReduction reduction)
    {
        if (cuSeqlens.Length < 1 || cuSeqlens[0] != 0)
            throw new ArgumentException("loss weights: cu_seqlens must start with 0");
        var w = new float[labels.Length];
        for (int k = 0; k + 1 < cuSeqlens.Length; k++)
        {
            int s = cuSeqlens[k], e = cuSeqlens[k + 1];
            if (e < s || e > labels.Length)
                throw new ArgumentException($"loss weights: cu_seqlens [{string.Join(", ", cuSeqlens.ToArray())}] is not increasing within {labels.Length} labels");
            int nEff = 0;
            for (int t = s; t < e; t++) if (labels[t] != IgnoreIndex) nEff++;
            // torch stores the Python float weights in a float32 tensor
            float wk = (float)Len2Weight(nEff, reduction);
            for (int t = s; t < e; t++) w[t] = labels[t] == IgnoreIndex ? 0f : wk;
        }
        return w;
    }

    /// <summary>Weights of a whole (unpacked) sample: <see cref="PackedTokenWeights"/> with one segment.</summary>
    public static float[] SampleTokenWeights(ReadOnlySpan<long> labels, LossReduction reduction) =>
        PackedTokenWeights(labels, [0, labels.Length], reduction);

    /// <summary>
    /// Drops the first element: the weights (or labels) aligned with the shifted targets of a causal LM
    /// (<c>w[..., 1:]</c> with <c>labels[..., 1:]</c>).
    /// </summary>
    public static T[] Shift<T>(ReadOnlySpan<T> perToken) => perToken.Length == 0 ? [] : perToken[1..].ToArray();

    /// <summary>Σ CE_t·w_t / Σ w_t in double (a reference for tests and logging; the model computes it on tensors).</summary>
    public static double WeightedMean(ReadOnlySpan<double> ce, ReadOnlySpan<float> w)
    {
        if (ce.Length != w.Length) throw new ArgumentException("loss weights: lengths differ");
        double num = 0, den = 0;
        for (int i = 0; i < ce.Length; i++) { num += ce[i] * w[i]; den += w[i]; }
        return num / den;
    }
}

/// <summary>
/// Splits a global batch into micro-batches: <c>MicroSteps = global / (micro · dataParallel)</c> forward/backward
/// passes per optimizer update. As in HF Trainer (and Megatron's default loss), each micro-batch's loss is its own
/// (weighted) mean and is scaled by 1/MicroSteps before backward, so the update follows the mean of the micro-batch
/// losses; the logged loss is that same mean.
/// </summary>
public sealed record BatchPlan
{
    public int MicroBatchSize { get; }
    public int GlobalBatchSize { get; }
    public int DataParallel { get; }
    public int MicroSteps { get; }

    public BatchPlan(int microBatchSize, int globalBatchSize, int dataParallel = 1)
    {
        if (microBatchSize < 1) throw new ArgumentOutOfRangeException(nameof(microBatchSize), "micro-batch size must be at least 1");
        if (dataParallel < 1) throw new ArgumentOutOfRangeException(nameof(dataParallel));
        if (globalBatchSize < microBatchSize * dataParallel || globalBatchSize % (microBatchSize * dataParallel) != 0)
            throw new ArgumentException($"global batch size {globalBatchSize} must be a positive multiple of micro-batch size {microBatchSize} × data-parallel size {dataParallel}");
        MicroBatchSize = microBatchSize;
        GlobalBatchSize = globalBatchSize;
        DataParallel = dataParallel;
        MicroSteps = globalBatchSize / (microBatchSize * dataParallel);
    }

    /// <summary>
    /// Optimizer steps for <paramref name="epochs"/> passes over <paramref name="datasetSamples"/> samples, as HF Trainer
    /// counts them: ceil(epochs · floor(samples / global batch)) (incomplete last global batches are dropped).
    /// </summary>
    public int StepsForEpochs(long datasetSamples, double epochs)
    {
        long perEpoch = datasetSamples / GlobalBatchSize;
        if (perEpoch == 0) throw new ArgumentException($"{datasetSamples} samples do not fill one global batch of {GlobalBatchSize}");
        return checked((int)Math.Ceiling(epochs * perEpoch));
    }

    /// <summary>The factor applied to each micro-batch loss before backward.</summary>
    public float LossScale => 1f / MicroSteps;
}
