using MMSharp.Engine;

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
        if (Config.TopP < 1.0) ApplyTopP(scores, Config.TopP, 1, _keys);
        return SampleFromScores(scores, Rng);
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
        var a = scratch[..scores.Length];
        scores.CopyTo(a);
        float kth = KthLargest(a, k);
        for (int i = 0; i < scores.Length; i++)
            if (scores[i] < kth) scores[i] = float.NegativeInfinity;
    }

    /// <summary>
    /// <c>TopPLogitsWarper</c>: sort ascending, <c>c = cumsum(softmax(sorted))</c>, remove the tokens with
    /// <c>c ≤ 1 − top_p</c> (threshold rounded to float32 as torch compares with a float32 tensor), but always keep
    /// the <paramref name="minTokensToKeep"/> highest. Ties are ordered by token id (torch.sort is not stable, so which
    /// of several tied tokens straddling the boundary survives is unspecified in HF). Softmax and cumsum are float32,
    /// sequential. <paramref name="keys"/> is scratch of at least the scores' length.
    /// </summary>
    public static void ApplyTopP(Span<float> scores, double topP, int minTokensToKeep, Span<long> keys)
    {
        // Tokens already at −∞ have probability 0 and sit at the front of the ascending order: cumsum 0 ≤ threshold,
        // so HF removes them again; leaving them out of the sort changes nothing.
        int m = 0;
        for (int i = 0; i < scores.Length; i++)
            if (scores[i] != float.NegativeInfinity) keys[m++] = OrderKey(scores[i], i);
        var sorted = keys[..m];
        sorted.Sort();
        if (m == 0) return;
        float max = scores[(int)sorted[m - 1]];
        float sum = 0;
        for (int j = 0; j < m; j++) sum += MathF.Exp(scores[(int)sorted[j]] - max);
        float threshold = (float)(1 - topP);
        float cum = 0;
        int keepFrom = Math.Max(0, m - Math.Max(minTokensToKeep, 1));
        for (int j = 0; j < keepFrom; j++)
        {
            int t = (int)sorted[j];
            cum += MathF.Exp(scores[t] - max) / sum;
            if (cum > threshold) break;             // cumsum only grows: the rest is kept
            scores[t] = float.NegativeInfinity;
        }
    }

    /// <summary>First index of the largest score (<c>torch.argmax</c>); NaN scores are skipped.</summary>
    public static int ArgMax(ReadOnlySpan<float> scores)
    {
        int best = 0;
        float bestValue = float.NegativeInfinity;
        bool found = false;
        for (int i = 0; i < scores.Length; i++)
            if (!found ? !float.IsNaN(scores[i]) : scores[i] > bestValue) { best = i; bestValue = scores[i]; found = true; }
        return best;
    }

    /// <summary>
    /// <c>torch.multinomial(softmax(scores), 1)</c>: draws token i with probability <c>exp(s_i − max) / Σ exp(s_j − max)</c>
    /// (in double) by inverse CDF with one <see cref="Rng.NextDouble"/>. −∞ scores are never drawn.
    /// </summary>
    public static int SampleFromScores(ReadOnlySpan<float> scores, Rng rng)
    {
        float max = float.NegativeInfinity;
        foreach (float s in scores) if (s > max) max = s;
        if (float.IsNegativeInfinity(max) || float.IsNaN(max))
            throw new ArgumentException("Sampler: every score is -inf or NaN, nothing to sample");
        double total = 0;
        foreach (float s in scores) total += Math.Exp((double)s - max);
        double u = rng.NextDouble() * total, acc = 0;
        int last = -1;
        for (int i = 0; i < scores.Length; i++)
        {
            if (scores[i] == float.NegativeInfinity) continue;
            acc += Math.Exp((double)scores[i] - max);
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
