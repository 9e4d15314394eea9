using MMSharp.Engine;
using MMSharp.Generation;

namespace MMSharp.Tests.Generation;

public sealed class SamplerTests
{
    static readonly float NegInf = float.NegativeInfinity;

    [Fact]
    public void RepetitionPenalty_DividesPositiveMultipliesNegative_OncePerDistinctToken()
    {
        float[] s = [1f, -2f, 3f, 0.5f];
        Sampler.ApplyRepetitionPenalty(s, [0, 1, 1, 1], 2f, new bool[4]);
        Assert.Equal(new[] { 0.5f, -4f, 3f, 0.5f }, s);
    }

    [Fact]
    public void RepetitionPenalty_LeavesScratchClear_AndRejectsOutOfVocabToken()
    {
        var seen = new bool[3];
        float[] s = [1f, 1f, 1f];
        Sampler.ApplyRepetitionPenalty(s, [2, 2], 1.5f, seen);
        Assert.All(seen, b => Assert.False(b));
        Assert.Equal(1f / 1.5f, s[2]);
        Assert.Throws<ArgumentOutOfRangeException>(() => Sampler.ApplyRepetitionPenalty(new float[3], [3], 2f, new bool[3]));
    }

    [Fact]
    public void Temperature_DividesEveryScore()
    {
        float[] s = [1f, 2f, -3f];
        Sampler.ApplyTemperature(s, 0.5f);
        Assert.Equal(new[] { 2f, 4f, -6f }, s);
    }

    [Theory]
    [InlineData(2, new[] { 1f, 3f, 2f, 3f, 0f }, new[] { 0f, 3f, 0f, 3f, 0f }, new[] { false, true, false, true, false })]
    [InlineData(1, new[] { 1f, 3f, 2f, 3f, 0f }, new[] { 0f, 3f, 0f, 3f, 0f }, new[] { false, true, false, true, false })]   // ties with the k-th are kept
    [InlineData(3, new[] { 1f, 3f, 2f, 3f, 0f }, new[] { 0f, 3f, 2f, 3f, 0f }, new[] { false, true, true, true, false })]
    [InlineData(9, new[] { 1f, 3f, 2f }, new[] { 1f, 3f, 2f }, new[] { true, true, true })]                                // k >= vocab: no-op
    public void TopK_KeepsScoresAtLeastTheKthLargest(int k, float[] input, float[] keptValues, bool[] kept)
    {
        var s = (float[])input.Clone();
        Sampler.ApplyTopK(s, k, new float[s.Length]);
        for (int i = 0; i < s.Length; i++)
            Assert.Equal(kept[i] ? keptValues[i] : NegInf, s[i]);
    }

    [Fact]
    public void TopK_MatchesSortReference_OnLargeRandomRowWithManyTies()
    {
        var rng = new Rng(7);
        foreach (int n in new[] { 6 * 512 + 7, 10_007 })
        {
            var s = new float[n];
            for (int i = 0; i < n; i++) s[i] = i % 5 == 0 ? NegInf : MathF.Round(rng.NextNormal() * 4) / 2;   // many exact ties
            var sorted = s.OrderByDescending(v => v).ToArray();
            // k <= 4096 takes the heap path, larger k the quickselect path.
            foreach (int k in new[] { 1, 2, 17, 50, 1000, 2400, 5000, n - 1 })
            {
                if (k >= n) continue;
                float kth = sorted[k - 1];
                var got = (float[])s.Clone();
                Sampler.ApplyTopK(got, k, new float[n]);
                for (int i = 0; i < n; i++) Assert.Equal(s[i] < kth ? NegInf : s[i], got[i]);
            }
        }
    }

    [Theory]
    // Equal scores: probabilities exactly 1/4, cumsum exactly 0.25, 0.5, 0.75, 1; ties are ordered by token id.
    [InlineData(0.5, new[] { false, false, true, true })]      // threshold 0.5: cumsum <= 0.5 removed (boundary included)
    [InlineData(0.75, new[] { false, true, true, true })]      // threshold 0.25
    [InlineData(0.5000001, new[] { false, true, true, true })] // threshold just below 0.5
    [InlineData(0.0, new[] { false, false, false, true })]     // everything below 1 removed, min_tokens_to_keep = 1 keeps the top
    [InlineData(1.0, new[] { true, true, true, true })]        // threshold 0: nothing has zero probability
    public void TopP_Boundary_OnExactQuarterProbabilities(double topP, bool[] kept)
    {
        float[] s = [0f, 0f, 0f, 0f];
        Sampler.ApplyTopP(s, topP, 1, new long[4], new float[4]);
        for (int i = 0; i < 4; i++) Assert.Equal(kept[i] ? 0f : NegInf, s[i]);
    }

    [Theory]
    // softmax([2, 1, 0, 3]) = token3 0.644, token0 0.237, token1 0.087, token2 0.032; ascending cumsum 0.032, 0.119, 0.356, 1.
    [InlineData(0.9, 1, new[] { true, true, false, true })]    // threshold 0.1 removes token 2 only
    [InlineData(0.7, 1, new[] { true, false, false, true })]   // threshold 0.3 removes tokens 2 and 1
    [InlineData(0.6, 1, new[] { false, false, false, true })]  // threshold 0.4 removes all but token 3
    [InlineData(0.6, 2, new[] { true, false, false, true })]   // min_tokens_to_keep = 2 keeps token 0 too
    public void TopP_RemovesLowTailByCumulativeProbability(double topP, int minKeep, bool[] kept)
    {
        float[] input = [2f, 1f, 0f, 3f];
        var s = (float[])input.Clone();
        Sampler.ApplyTopP(s, topP, minKeep, new long[4], new float[4]);
        for (int i = 0; i < 4; i++) Assert.Equal(kept[i] ? input[i] : NegInf, s[i]);
    }

    [Fact]
    public void TopP_IgnoresAlreadyMaskedTokens_AndHandlesNegativeScores()
    {
        float[] s = [NegInf, -5f, -3f, NegInf, -4f];   // softmax over finite: -3: 0.665, -4: 0.245, -5: 0.090
        Sampler.ApplyTopP(s, 0.85, 1, new long[5], new float[5]);     // threshold 0.15: removes -5 only
        Assert.Equal(new[] { NegInf, NegInf, -3f, NegInf, -4f }, s);
    }

    [Fact]
    public void TopP_HonoursMinTokensToKeep_WhenFewTokensHaveMass()
    {
        float[] s = [0f, 0f, 0f, 0f, 10f];   // token 4 holds 0.9998 of the mass
        Sampler.ApplyTopP(s, 0.5, 3, new long[5], new float[5]);
        Assert.Equal(new[] { NegInf, NegInf, 0f, 0f, 10f }, s);   // ties ascend by id: the two highest-id zeros are kept
    }

    [Theory]
    [InlineData(1, 0.9)]
    [InlineData(3, 0.9)]
    [InlineData(8, 0.95)]
    [InlineData(3, 0.5)]
    [InlineData(0.3, 0.8)]
    public void TopP_MatchesFullSortFloat64Reference_OnLargeRows(double spread, double topP)
    {
        var rng = new Rng(11);
        foreach (int n in new[] { 7, 6 * 512 + 7, 50_000 })
        {
            var input = new float[n];
            for (int i = 0; i < n; i++) input[i] = rng.NextNormal() * (float)spread;
            var got = (float[])input.Clone();
            Sampler.ApplyTopP(got, topP, 1, new long[n], new float[n]);

            // Reference: HF's algorithm over every token, ascending (score, id), probabilities and cumsum in float64.
            var order = Enumerable.Range(0, n).OrderBy(i => input[i]).ThenBy(i => i).ToArray();
            double max = input.Max(), sum = input.Sum(v => Math.Exp(v - max)), cum = 0, thr = (float)(1 - topP);
            for (int j = 0; j < n; j++)
            {
                int t = order[j];
                cum += Math.Exp(input[t] - max) / sum;
                bool removed = cum <= thr && j < n - 1;
                if (removed != float.IsNegativeInfinity(got[t]))
                    Assert.True(Math.Abs(cum - thr) < 1e-5, $"n={n} token {t}: reference cumsum {cum:R} vs threshold {thr:R}, reference removed={removed}");
                if (!removed) Assert.True(got[t] == input[t] || Math.Abs(cum - thr) < 1e-5);
            }
        }
    }

    [Fact]
    public void ArgMax_ReturnsFirstMaximum()
    {
        Assert.Equal(1, Sampler.ArgMax([1f, 5f, 5f, 2f]));
        Assert.Equal(0, Sampler.ArgMax([NegInf, NegInf]));
        Assert.Equal(2, Sampler.ArgMax([float.NaN, -1f, 0f]));
    }

    [Theory]
    [InlineData(17)]
    [InlineData(1000)]
    [InlineData(151674)]
    public void ArgMax_OfALongRow_IsTheFirstMaximumAsAScalarScanFindsIt(int n)
    {
        // the vector passes (maximum, then its first index) against a plain scan: ties, a maximum in the vector tail,
        // NaNs (skipped), and the greedy chooser of chat / eval, which is the same argmax
        var rng = new Random(n);
        var row = new float[n];
        for (int i = 0; i < n; i++) row[i] = (float)rng.NextDouble() * 10f - 5f;
        static int Scan(float[] r)
        {
            int best = -1;
            for (int i = 0; i < r.Length; i++) if (!float.IsNaN(r[i]) && (best < 0 || r[i] > r[best])) best = i;
            return Math.Max(best, 0);
        }
        void Check(string what)
        {
            Assert.True(Scan(row) == Sampler.ArgMax(row), $"n={n} {what}: scan {Scan(row)}, ArgMax {Sampler.ArgMax(row)}");
            Assert.Equal(Sampler.ArgMax(row), GreedyChooser.Instance.Choose(row, []));
        }
        Check("random");
        row[n - 1] = 9f;
        Check("maximum last");
        row[n / 3] = 9f;
        Check("tie, first earlier");
        row[n / 2] = float.NaN;
        row[1] = 20f;
        Check("NaN present");
    }

    [Fact]
    public void Next_IsGreedy_WhenDoSampleFalseOrTemperatureZero_AndStillAppliesRepetitionPenalty()
    {
        float[] logits = [5f, 4.9f, 1f];
        Assert.Equal(0, new Sampler(3, new GenerationConfig()).Next(logits, []));
        Assert.Equal(0, new Sampler(3, new GenerationConfig { DoSample = true, Temperature = 0 }).Next(logits, []));
        var penalised = new Sampler(3, new GenerationConfig { RepetitionPenalty = 1.1 });
        Assert.Equal(1, penalised.Next(logits, [0]));   // 5 / 1.1 = 4.545 < 4.9
        Assert.Equal(5f, logits[0]);                    // the caller's row is untouched
    }

    [Fact]
    public void Next_SameSeedSameTokens_DifferentSeedDifferentTokens()
    {
        var cfg = new GenerationConfig { DoSample = true, TopK = 0, Temperature = 1.3 };
        var rng = new Rng(3);
        var logits = new float[257];
        for (int i = 0; i < logits.Length; i++) logits[i] = rng.NextNormal();
        int[] Run(ulong seed)
        {
            var s = new Sampler(logits.Length, cfg, new Rng(seed));
            return Enumerable.Range(0, 200).Select(_ => s.Next(logits, [])).ToArray();
        }
        Assert.Equal(Run(42), Run(42));
        Assert.NotEqual(Run(42), Run(43));
    }

    /// <summary>Chi-square goodness of fit of n draws against probabilities p (fixed seed, so it cannot flake).</summary>
    static double ChiSquare(int[] counts, double[] p, int n)
    {
        double chi = 0;
        for (int i = 0; i < p.Length; i++)
        {
            if (p[i] == 0) { Assert.Equal(0, counts[i]); continue; }
            double e = n * p[i];
            chi += (counts[i] - e) * (counts[i] - e) / e;
        }
        return chi;
    }

    static double[] Softmax(double[] x)
    {
        double m = x.Where(v => !double.IsNegativeInfinity(v)).Max();
        var e = x.Select(v => Math.Exp(v - m)).ToArray();
        double s = e.Sum();
        return e.Select(v => v / s).ToArray();
    }

    [Fact]
    public void Next_SamplesWithSoftmaxProbabilities_ChiSquareBelowP001Critical()
    {
        float[] logits = [1f, 2f, 0.5f, -1f, 3f];
        var cfg = new GenerationConfig { DoSample = true, TopK = 0 };
        var sampler = new Sampler(5, cfg, new Rng(12345));
        const int n = 200_000;
        var counts = new int[5];
        for (int i = 0; i < n; i++) counts[sampler.Next(logits, [])]++;
        double chi = ChiSquare(counts, Softmax(logits.Select(v => (double)v).ToArray()), n);
        Assert.True(chi < 18.47, $"chi-square {chi:F2} with 4 degrees of freedom exceeds the p = 0.001 critical value 18.47");
    }

    [Fact]
    public void Next_WithTemperatureTopKTopP_SamplesRenormalisedSurvivors()
    {
        // /0.5 -> [2, 6, 4, -2, 5, 0]; top-k 4 keeps [6, 5, 4, 2]; softmax: 0.657, 0.242, 0.089, 0.012 (ascending
        // cumsum 0.012, 0.101, 0.343, 1); top-p 0.85 (threshold 0.15) removes 2 and 4 -> 6 and 5 with 0.7311 / 0.2689.
        float[] logits = [1f, 3f, 2f, -1f, 2.5f, 0f];
        var cfg = new GenerationConfig { DoSample = true, Temperature = 0.5, TopK = 4, TopP = 0.85 };
        var sampler = new Sampler(6, cfg, new Rng(99));
        const int n = 100_000;
        var counts = new int[6];
        for (int i = 0; i < n; i++) counts[sampler.Next(logits, [])]++;
        var p = Softmax([double.NegativeInfinity, 6, double.NegativeInfinity, double.NegativeInfinity, 5, double.NegativeInfinity]);
        double chi = ChiSquare(counts, p, n);
        Assert.True(chi < 10.83, $"chi-square {chi:F2} with 1 degree of freedom exceeds the p = 0.001 critical value 10.83; counts {string.Join(",", counts)}");
    }

    [Fact]
    public void Next_AllocatesNothing_InSteadyState()
    {
        const int vocab = 151_674;
        var rng = new Rng(5);
        var logits = new float[vocab];
        for (int i = 0; i < vocab; i++) logits[i] = rng.NextNormal() * 3;
        int[] history = [1, 2, 3, 151_000, 2];
        var sampler = new Sampler(vocab, new GenerationConfig { DoSample = true, Temperature = 0.7, TopK = 50, TopP = 0.8, RepetitionPenalty = 1.05 }, new Rng(1));
        sampler.Next(logits, history);   // warm up (JIT)
        var noTopK = new Sampler(vocab, new GenerationConfig { DoSample = true, TopK = 0, TopP = 0.9 }, new Rng(1));
        noTopK.Next(logits, history);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 5; i++) { sampler.Next(logits, history); noTopK.Next(logits, history); }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void Next_Throws_WhenRowLengthDiffersFromVocab()
    {
        var e = Assert.Throws<ArgumentException>(() => new Sampler(4, new GenerationConfig()).Next(new float[5], []));
        Assert.Contains("5", e.Message);
    }
}
