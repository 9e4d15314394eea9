using System.Numerics.Tensors;
using MMSharp.Engine;
using MMSharp.Engine.Kernels;

namespace MMSharp.Generation;

/// <summary>
/// Picks the next token from one row of logits the way HF transformers' <c>generate()</c> does, with its logits
/// processors in its order:
/// <list type="number">
/// <item>repetition penalty (<c>RepetitionPenaltyLogitsProcessor</c>) — applied in greedy mode too;</item>
/// <item>greedy: <c>argmax</c> (first maximum on ties, like <c>torch.argmax</c>) when do_sample is false or
/// temperature is 0 (HF rejects temperature 0 with do_sample; we treat it as greedy);</item>
/// <item>temperature (<c>TemperatureLogitsWarper</c>, skipped at 1), top-k (<c>TopKLogitsWarper</c>, skipped at 0),
/// top-p (<c>TopPLogitsWarper</c>, skipped at 1), then <c>torch.multinomial(softmax(scores), 1)</c>.</item>
/// </list>
/// </summary>
/// <remarks>
/// Randomness comes from a seeded <see cref="Rng"/> (xoshiro256**), not torch's Mersenne-Twister/Philox stream, so
/// sampled text is reproducible run to run here but never equal to Python's; only greedy decoding is comparable.
/// All scratch memory is allocated once, sized to the vocabulary: <see cref="Next"/> allocates nothing.
/// Scores are float32 like HF's (logits are float32 after the LM head), and processor constants are rounded to
/// float32 before use, as torch does for a Python float times a float32 tensor.
/// </remarks>
public sealed class Sampler
{
    readonly float[] _scores, _select;
    readonly long[] _keys;
    readonly bool[] _seen;

    /// <summary>Length of a logits row.</summary>
    public int VocabSize { get; }
    /// <summary>The settings used by <see cref="Next"/>.</summary>
    public GenerationConfig Config { get; }
    /// <summary>The generator drawn from when sampling (its state can be saved and restored).</summary>
    public Rng Rng { get; }

    /// <summary>Creates a sampler for rows of <paramref name="vocabSize"/> logits; <paramref name="rng"/> defaults to seed 0.</summary>
    public Sampler(int vocabSize, GenerationConfig config, Rng? rng = null)
    {
        if (vocabSize <= 0) throw new ArgumentException($"Sampler: vocabSize must be positive, got {vocabSize}");
        VocabSize = vocabSize;
        Config = config.Validate();
        Rng = rng ?? new Rng(0);
        _scores = new float[vocabSize];
        _select = new float[vocabSize];
        _keys = new long[vocabSize];
        _seen = new bool[vocabSize];
    }

    /// <summary>
    /// The next token for <paramref name="logits"/> (not modified). <paramref name="previousTokens"/> are the tokens
    /// the repetition penalty looks at: in HF that is generate()'s <c>input_ids</c>; InternVL's chat() calls generate
    /// with <c>inputs_embeds</c> only, so there it is just the tokens generated so far (not the prompt).
    /// </summary>
    public int Next(ReadOnlySpan<float> logits, ReadOnlySpan<int> previousTokens)
    {
        if (logits.Length != VocabSize)
            throw new ArgumentException($"Sampler.Next: logits row has {logits.Length} entries, the sampler was made for {VocabSize}");
        var scores = _scores.AsSpan();
        logits.CopyTo(scores);
        if (Config.RepetitionPenalty != 1.0) ApplyRepetitionPenalty(scores, previousTokens, (float)Config.RepetitionPenalty, _seen);
        if (Config.IsGreedy) return ArgMax(scores);
        if (Config.Temperature != 1.0) ApplyTemperature(scores, (float)Config.Temperature);
        if (Config.TopK > 0) ApplyTopK(scores, Config.TopK, _select);
        if (Config.TopP < 1.0) ApplyTopP(scores, Config.TopP, 1, _keys, _select);
        return SampleFromScores(scores, Rng, _select);
    }

    /// <summary>
    /// <c>RepetitionPenaltyLogitsProcessor</c>: for each distinct token t in <paramref name="tokens"/>,
    /// <c>s[t] = s[t] &lt; 0 ? s[t]·penalty : s[t] / penalty</c> (once per token, however often it occurs: HF gathers
    /// then scatters). <paramref name="seen"/> is all-false scratch of the vocabulary's length, left all-false.
    /// </summary>
    public static void ApplyRepetitionPenalty(Span<float> scores, ReadOnlySpan<int> tokens, float penalty, Span<bool> seen)
    {
        foreach (int t in tokens)
            if ((uint)t >= (uint)scores.Length)
                throw new ArgumentOutOfRangeException(nameof(tokens), $"RepetitionPenalty: token {t} is outside the vocabulary [0, {scores.Length})");
        foreach (int t in tokens)
        {
            if (seen[t]) continue;
            seen[t] = true;
            float s = scores[t];
            scores[t] = s < 0 ? s * penalty : s / penalty;
        }
        foreach (int t in tokens) seen[t] = false;
    }

    /// <summary><c>TemperatureLogitsWarper</c>: <c>s = s / temperature</c>.</summary>
    public static void ApplyTemperature(Span<float> scores, float temperature)
    {
        for (int i = 0; i < scores.Length; i++) scores[i] /= temperature;
    }

    /// <summary>
    /// <c>TopKLogitsWarper</c>: with v = the k-th largest score (k clamped to the vocabulary), every score <c>&lt; v</c>
    /// becomes −∞; scores tied with v are all kept, so more than k tokens can survive.
    /// <paramref name="scratch"/> has at least the scores' length.
    /// </summary>
    public static void ApplyTopK(Span<float> scores, int k, Span<float> scratch)
    {
        if (k <= 0) throw new ArgumentException($"TopK: k must be positive, got {k}");
        if (k >= scores.Length) return;
        // Small k (the usual 20-50): one pass with a k-element min-heap, ~n comparisons. Large k: quickselect.
        float kth = k <= 4096 ? KthLargestByHeap(scores, k, scratch[..k]) : KthLargest(CopyTo(scores, scratch), k);
        for (int i = 0; i < scores.Length; i++)
            if (scores[i] < kth) scores[i] = float.NegativeInfinity;
    }

    static Span<float> CopyTo(ReadOnlySpan<float> src, Span<float> dst)
    {
        src.CopyTo(dst);
        return dst[..src.Length];
    }

    /// <summary>
    /// <c>TopPLogitsWarper</c>: sort ascending, <c>c = cumsum(softmax(sorted))</c>, remove the tokens with
    /// <c>c ≤ 1 − top_p</c> (threshold rounded to float32 as torch compares with a float32 tensor), but always keep
    /// the <paramref name="minTokensToKeep"/> highest. Ties are ordered by token id (torch.sort is not stable, so which
    /// of several tied tokens straddling the boundary survives is unspecified in HF).
    /// <paramref name="keys"/> and <paramref name="scratch"/> have at least the scores' length.
    /// </summary>
    /// <remarks>
    /// Only tokens with probability ≥ (1 − top_p) / V are sorted: all the others together hold less than 1 − top_p,
    /// so each one's cumulative probability is below the threshold and HF removes them; their mass starts the cumsum.
    /// That turns a 150k-entry sort into one of a few hundred or thousand entries. Softmax and cumsum are float32 like
    /// torch's; the summation order differs from torch's, so a token whose cumsum lies within float rounding of the
    /// threshold can be decided differently.
    /// </remarks>
    public static void ApplyTopP(Span<float> scores, double topP, int minTokensToKeep, Span<long> keys, Span<float> scratch)
    {
        int n = scores.Length;
        float threshold = (float)(1 - topP);
        // threshold <= 0 removes only tokens of probability exactly 0, which sampling never draws anyway.
        if (n == 0 || threshold <= 0) return;
        float max = TensorPrimitives.Max(scores);
        if (float.IsNegativeInfinity(max) || float.IsNaN(max)) return;
        var e = scratch[..n];
        TensorPrimitives.Subtract(scores, max, e);
        TensorPrimitives.Exp(e, e);                  // e_i = exp(s_i - max); p_i = e_i / sum
        float sum = TensorPrimitives.Sum(e);
        minTokensToKeep = Math.Max(minTokensToKeep, 1);

        float cutoff = threshold / n * sum;         // in units of e
        int m = 0;
        double massBelow = 0;
        for (int i = 0; i < n; i++)
        {
            if (e[i] >= cutoff) keys[m++] = OrderKey(scores[i], i);
            else massBelow += e[i];
        }
        if (m < minTokensToKeep)
        {
            // Too few candidates to honour min_tokens_to_keep: sort every token instead.
            cutoff = 0; massBelow = 0; m = 0;
            for (int i = 0; i < n; i++) keys[m++] = OrderKey(scores[i], i);
        }
        else if (massBelow > 0)
            for (int i = 0; i < n; i++)
                if (e[i] < cutoff) scores[i] = float.NegativeInfinity;

        var sorted = keys[..m];
        sorted.Sort();
        float cum = (float)(massBelow / sum);
        int keepFrom = Math.Max(0, m - minTokensToKeep);
        for (int j = 0; j < keepFrom; j++)
        {
            int t = (int)sorted[j];
            cum += e[t] / sum;
            if (cum > threshold) break;             // cumsum only grows: the rest is kept
            scores[t] = float.NegativeInfinity;
        }
    }

    /// <summary>First index of the largest score (<c>torch.argmax</c>); NaN scores are skipped.</summary>
    public static unsafe int ArgMax(ReadOnlySpan<float> scores)
    {
        if (scores.IsEmpty) return 0;
        fixed (float* p = scores)
        {
            // vector passes (one decode step's whole vocabulary row): the maximum, then its first index
            float max = RowReduce.Max(p, scores.Length);
            if (!float.IsNaN(max)) return (int)RowReduce.IndexOfFirst(p, scores.Length, 1, max);
        }
        int best = 0;
        float bestValue = float.NegativeInfinity;
        bool found = false;
        for (int i = 0; i < scores.Length; i++)
            if (!found ? !float.IsNaN(scores[i]) : scores[i] > bestValue) { best = i; bestValue = scores[i]; found = true; }
        return best;
    }

    /// <summary>
    /// <c>torch.multinomial(softmax(scores), 1)</c>: draws token i with probability <c>exp(s_i − max) / Σ exp(s_j − max)</c>
    /// by inverse CDF with one <see cref="Rng.NextDouble"/>. −∞ scores are never drawn.
    /// <paramref name="scratch"/> has at least the scores' length.
    /// </summary>
    public static int SampleFromScores(ReadOnlySpan<float> scores, Rng rng, Span<float> scratch)
    {
        float max = TensorPrimitives.Max(scores);
        if (float.IsNegativeInfinity(max) || float.IsNaN(max))
            throw new ArgumentException("Sampler: every score is -inf or some score is NaN, nothing to sample");
        var e = scratch[..scores.Length];
        TensorPrimitives.Subtract(scores, max, e);
        TensorPrimitives.Exp(e, e);
        double total = TensorPrimitives.Sum(e);
        double u = rng.NextDouble() * total, acc = 0;
        int last = -1;
        for (int i = 0; i < e.Length; i++)
        {
            if (e[i] == 0) continue;
            acc += e[i];
            last = i;
            if (u < acc) return i;
        }
        return last;                               // u within rounding of total
    }

    /// <summary>A long whose signed order is (score, index) order: monotone float bits in the high word, index low.</summary>
    static long OrderKey(float score, int index)
    {
        int bits = BitConverter.SingleToInt32Bits(score);
        bits ^= (bits >> 31) & 0x7FFFFFFF;          // negative floats: flip magnitude bits so larger magnitude sorts lower
        return ((long)bits << 32) | (uint)index;
    }

    /// <summary>The k-th largest of <paramref name="a"/> with a k-element min-heap in <paramref name="heap"/> (NaNs never enter).</summary>
    static float KthLargestByHeap(ReadOnlySpan<float> a, int k, Span<float> heap)
    {
        for (int i = 0; i < k; i++) heap[i] = float.NegativeInfinity;
        for (int i = 0; i < a.Length; i++)
        {
            float v = a[i];
            if (!(v > heap[0])) continue;
            // Replace the root (smallest kept) and sift down.
            int j = 0;
            while (true)
            {
                int c = 2 * j + 1;
                if (c >= k) break;
                if (c + 1 < k && heap[c + 1] < heap[c]) c++;
                if (!(heap[c] < v)) break;
                heap[j] = heap[c];
                j = c;
            }
            heap[j] = v;
        }
        return heap[0];
    }

    /// <summary>The k-th largest element (k ≥ 1) by three-way quickselect; reorders <paramref name="a"/>.</summary>
    static float KthLargest(Span<float> a, int k)
    {
        int target = a.Length - k, lo = 0, hi = a.Length - 1;
        while (lo < hi)
        {
            int mid = lo + (hi - lo) / 2;
            float x = a[lo], y = a[mid], z = a[hi];
            float pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));   // median of three
            // Three-way partition: [lo, lt) < pivot, [lt, gt] == pivot, (gt, hi] > pivot — equal runs (e.g. many −∞) stay linear.
            int lt = lo, i = lo, gt = hi;
            while (i <= gt)
            {
                float v = a[i];
                if (v < pivot) { a[i] = a[lt]; a[lt] = v; lt++; i++; }
                else if (v > pivot) { a[i] = a[gt]; a[gt] = v; gt--; }
                else i++;
            }
            if (target < lt) hi = lt - 1;
            else if (target > gt) lo = gt + 1;
            else return pivot;
        }
        return a[lo];
    }
}
