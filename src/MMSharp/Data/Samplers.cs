using MMSharp.Engine;

namespace MMSharp.Data;

/// <summary>
/// A batch sampler whose whole state is the number of consumed samples, so a checkpoint stores one integer and resume
/// is exact (MindSpeed-MM <c>BaseRandomBatchSampler</c>, spec mindspeed-mm.md 4.4).
/// </summary>
/// <remarks>
/// <c>active = N - N mod (mbs*dp)</c> (drop_last); <c>epoch = consumed // active</c>; <c>offset = consumed mod active</c>;
/// the epoch's order is a permutation seeded by (seed, epoch) — MindSpeed seeds with the epoch alone (torch randperm), we mix in
/// the run seed so different seeds give different orders; rank r takes <c>order[offset + r + dp*j]</c>, j &lt; mbs;
/// each call advances <c>consumed</c> by <c>mbs*dp</c>.
/// </remarks>
public class RandomBatchSampler
{
    private int _cachedEpoch = -1;
    private int[] _order = [];

    /// <summary>Dataset size N.</summary>
    public int DatasetSize { get; }
    /// <summary>Micro-batch size (per rank).</summary>
    public int MicroBatchSize { get; }
    /// <summary>Data-parallel size and this rank.</summary>
    public int DataParallelSize { get; }
    /// <inheritdoc cref="DataParallelSize"/>
    public int Rank { get; }
    /// <summary>Run seed mixed into every epoch's permutation.</summary>
    public ulong Seed { get; }
    /// <summary>Samples consumed over all ranks so far (what a checkpoint saves as <c>consumed_train_samples</c>).</summary>
    public long ConsumedSamples { get; set; }

    /// <summary>Samples used per epoch (<c>N - N mod (mbs*dp)</c>).</summary>
    public int ActiveSize => DatasetSize - DatasetSize % (MicroBatchSize * DataParallelSize);
    /// <summary>Epoch of the next batch.</summary>
    public int Epoch => (int)(ConsumedSamples / ActiveSize);

    /// <param name="datasetSize">N.</param>
    /// <param name="microBatchSize">mbs.</param>
    /// <param name="seed">Run seed.</param>
    /// <param name="dataParallelSize">dp.</param>
    /// <param name="rank">This rank.</param>
    /// <param name="consumedSamples">Restored position.</param>
    public RandomBatchSampler(int datasetSize, int microBatchSize, ulong seed = 0, int dataParallelSize = 1, int rank = 0, long consumedSamples = 0)
    {
        if (microBatchSize < 1 || dataParallelSize < 1 || (uint)rank >= (uint)dataParallelSize)
            throw new ArgumentException($"RandomBatchSampler: bad mbs={microBatchSize}, dp={dataParallelSize}, rank={rank}");
        if (datasetSize < microBatchSize * dataParallelSize)
            throw new ArgumentException($"RandomBatchSampler: {datasetSize} samples are fewer than one global micro-batch ({microBatchSize}x{dataParallelSize})");
        DatasetSize = datasetSize; MicroBatchSize = microBatchSize; DataParallelSize = dataParallelSize; Rank = rank;
        Seed = seed; ConsumedSamples = consumedSamples;
    }

    /// <summary>Index order of an epoch (length <see cref="ActiveSize"/>).</summary>
    protected virtual int[] EpochOrder(int epoch) => Permutation(DatasetSize, Seed, epoch).AsSpan(0, ActiveSize).ToArray();

    /// <summary>The next micro-batch of this rank; advances <see cref="ConsumedSamples"/> by mbs*dp.</summary>
    public int[] NextBatch()
    {
        int epoch = Epoch;
        if (epoch != _cachedEpoch) { _order = EpochOrder(epoch); _cachedEpoch = epoch; }
        int offset = (int)(ConsumedSamples % ActiveSize);
        var batch = new int[MicroBatchSize];
        for (int j = 0; j < MicroBatchSize; j++) batch[j] = _order[offset + Rank + DataParallelSize * j];
        ConsumedSamples += MicroBatchSize * DataParallelSize;
        return batch;
    }

    /// <summary>Seeded Fisher-Yates permutation of 0..n-1 (xoshiro256** seeded by seed and epoch).</summary>
    public static int[] Permutation(int n, ulong seed, long epoch)
    {
        var rng = new Rng(seed * 0x9E3779B97F4A7C15UL ^ (ulong)epoch * 0xD1B54A32D192ED03UL ^ 0x5DEECE66DUL);
        var p = new int[n];
        for (int i = 0; i < n; i++) p[i] = i;
        for (int i = n - 1; i > 0; i--)
        {
            int j = (int)(((UInt128)rng.NextULong() * (ulong)(i + 1)) >> 64);
            (p[i], p[j]) = (p[j], p[i]);
        }
        return p;
    }
}

/// <summary>
/// <c>--group-by-length</c>: the official <c>LengthGroupedSampler</c> (spec internvl.md 6.4) — a seeded permutation cut into
/// megabatches of <c>groupSize * mbs</c> indices, each sorted by length descending and split into <c>groupSize</c> chunks of
/// near-equal total length (greedy: next index to the currently shortest open chunk; a chunk closes at mbs indices).
/// <c>groupSize</c> = world size x gradient-accumulation steps. Consumed-samples resume as in <see cref="RandomBatchSampler"/>.
/// </summary>
public sealed class LengthGroupedBatchSampler(IReadOnlyList<int> lengths, int microBatchSize, int groupSize, ulong seed = 0, long consumedSamples = 0)
    : RandomBatchSampler(lengths.Count, microBatchSize, seed, 1, 0, consumedSamples)
{
    /// <inheritdoc/>
    protected override int[] EpochOrder(int epoch)
    {
        var perm = Permutation(DatasetSize, Seed, epoch);
        int mega = groupSize * MicroBatchSize;
        var result = new List<int>(DatasetSize);
        for (int s = 0; s < perm.Length; s += mega)
        {
            var chunk = perm.AsSpan(s, Math.Min(mega, perm.Length - s)).ToArray();
            var sorted = chunk.OrderByDescending(i => lengths[i]).ToArray();   // stable: ties keep the permutation order
            if (sorted.Length % groupSize != 0)
            {
                for (int r = 0; r < groupSize; r++) for (int k = r; k < sorted.Length; k += groupSize) result.Add(sorted[k]);
                continue;
            }
            int quota = sorted.Length / groupSize;
            var groups = Enumerable.Range(0, groupSize).Select(_ => new List<int>(quota)).ToArray();
            var totals = new long[groupSize];
            foreach (int idx in sorted)
            {
                int best = -1;
                for (int g = 0; g < groupSize; g++)
                    if (groups[g].Count < quota && (best < 0 || totals[g] < totals[best])) best = g;
                groups[best].Add(idx); totals[best] += lengths[idx];
            }
            foreach (var g in groups) result.AddRange(g);
        }
        return result.GetRange(0, ActiveSize).ToArray();
    }
}

/// <summary>Seeded train/validation split (<c>--val-rate R</c>).</summary>
public static class ValidationSplit
{
    /// <summary>
    /// Validation = the first <c>round(n*rate)</c> (at least 1 when rate &gt; 0) indices of a seeded permutation, train = the rest;
    /// both returned in ascending order so the split does not depend on anything but (n, rate, seed).
    /// </summary>
    public static (int[] Train, int[] Val) Split(int n, double rate, ulong seed)
    {
        if (rate < 0 || rate >= 1) throw new ArgumentException($"ValidationSplit: val rate must be in [0, 1), got {rate}");
        int val = rate == 0 ? 0 : Math.Clamp((int)Math.Round(n * rate), 1, n - 1);
        var perm = RandomBatchSampler.Permutation(n, seed ^ 0x7A11DA7EUL, -1);
        var v = perm[..val]; var t = perm[val..];
        Array.Sort(v); Array.Sort(t);
        return (t, v);
    }

    /// <summary>Splits a record source into train and validation subsets.</summary>
    public static (SubsetSource Train, SubsetSource Val) Split(IRecordSource source, double rate, ulong seed)
    {
        var (t, v) = Split(source.Count, rate, seed);
        return (new SubsetSource(source, t), new SubsetSource(source, v));
    }
}
