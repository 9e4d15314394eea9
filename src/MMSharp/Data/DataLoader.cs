using MMSharp.Training;
using System.Text.Json.Nodes;
using MMSharp.Engine;

namespace MMSharp.Data;

/// <summary>How a loader collates its micro-batches.</summary>
public sealed record CollateOptions(long PadId, LossReduction Reduction = LossReduction.Token, int? PackMaxTokens = null, int PadToMultipleOf = 1)
{
    /// <summary>Pads or packs <paramref name="samples"/>.</summary>
    public Batch Collate(IReadOnlyList<TrainingSample> samples) => PackMaxTokens is int max
        ? Collator.Pack(samples, max, PadId, Reduction)
        : Collator.Pad(samples, PadId, PadToMultipleOf, Reduction);
}

/// <summary>
/// Indexed (map-style) loading: a seeded <see cref="RandomBatchSampler"/> picks indices, the <see cref="SampleBuilder"/>
/// assembles them, bad records are reported and replaced (like the official <c>__getitem__</c>, which retries with a random
/// index) by a replacement drawn from a generator seeded by (seed, index, attempt), so the batch sequence after a resume
/// from <see cref="ConsumedSamples"/> is the same as in an uninterrupted run.
/// </summary>
public sealed class DataLoader(IRecordSource source, SampleBuilder builder, RandomBatchSampler sampler, CollateOptions collate, DataReport report)
{
    /// <summary>Attempts per slot before giving up (a data set where nearly everything is bad).</summary>
    public const int MaxAttempts = 100;

    /// <summary>The sampler (its <see cref="RandomBatchSampler.ConsumedSamples"/> is the loader's whole state).</summary>
    public RandomBatchSampler Sampler => sampler;

    /// <summary>Skipped records.</summary>
    public DataReport Report => report;

    /// <summary>Saved/restored position.</summary>
    public long ConsumedSamples { get => sampler.ConsumedSamples; set => sampler.ConsumedSamples = value; }

    /// <summary>The next micro-batch.</summary>
    public Batch NextBatch()
    {
        int epoch = sampler.Epoch;
        var indices = sampler.NextBatch();
        var samples = new List<TrainingSample>(indices.Length);
        foreach (int first in indices) samples.Add(Load(first, epoch));
        return collate.Collate(samples);
    }

    /// <summary>Sample at <paramref name="index"/>, or its deterministic replacement when that record is bad.</summary>
    public TrainingSample Load(int index, int epoch = 0)
    {
        var rng = new Rng(sampler.Seed ^ ((ulong)(uint)index << 20) ^ 0xBADDA7AUL);
        int idx = index;
        for (int attempt = 0; attempt < MaxAttempts; attempt++)
        {
            var line = source.Read(idx);
            ulong videoSeed = sampler.Seed * 31 + (ulong)epoch * 1_000_003UL + (ulong)idx;
            var s = builder.TryBuild(line, source.Datasets[line.DatasetIndex], report, videoSeed);
            if (s != null) return s;
            idx = rng.NextInt(source.Count);
        }
        throw new InvalidDataException($"data: {MaxAttempts} consecutive bad records while replacing index {index}\n{report}");
    }

    /// <summary>The validation batches: the first <paramref name="batches"/> micro-batches of the source in order (no shuffle).</summary>
    public static IEnumerable<Batch> Sequential(IRecordSource source, SampleBuilder builder, int microBatchSize, CollateOptions collate, DataReport report,
        int? batches = null)
    {
        var pending = new List<TrainingSample>();
        int produced = 0;
        for (int i = 0; i < source.Count; i++)
        {
            var line = source.Read(i);
            var s = builder.TryBuild(line, source.Datasets[line.DatasetIndex], report, (ulong)i);
            if (s == null) continue;
            pending.Add(s);
            if (pending.Count == microBatchSize)
            {
                yield return collate.Collate(pending);
                pending = [];
                if (++produced == batches) yield break;
            }
        }
        if (pending.Count > 0) yield return collate.Collate(pending);
    }
}

/// <summary>
/// Streaming loading: records in file order from a <see cref="StreamingJsonlReader"/>, bad ones reported and skipped,
/// collated into micro-batches. <see cref="Position"/> after a batch is where the next batch starts.
/// </summary>
public sealed class StreamingDataLoader(StreamingJsonlReader reader, SampleBuilder builder, int microBatchSize, CollateOptions collate, DataReport report)
{
    /// <summary>Position of the next record (save it with the checkpoint).</summary>
    public StreamPosition Position => reader.Position;

    /// <summary>The next micro-batch of <c>microBatchSize</c> good samples.</summary>
    public Batch NextBatch()
    {
        var samples = new List<TrainingSample>(microBatchSize);
        long misses = 0;
        while (samples.Count < microBatchSize)
        {
            var at = reader.Position;
            if (!reader.TryNext(out var line)) throw new InvalidDataException("data: the streaming datasets are empty");
            var s = builder.TryBuild(line, reader.Datasets[line.DatasetIndex], report,
                (ulong)at.Epoch * 1_000_003UL + (ulong)at.Dataset * 7919UL + (ulong)line.Location.Line);
            if (s != null) { samples.Add(s); misses = 0; }
            else if (++misses > 1_000_000) throw new InvalidDataException($"data: no good record in a million lines\n{report}");
        }
        return collate.Collate(samples);
    }
}

/// <summary>
/// Validation batches for the trainer: records in order, bad ones reported and skipped, wrapping at the end. The state is the
/// next record index, so the trainer can save it, evaluate <c>--eval-iters</c> batches and restore it (same batches every time).
/// </summary>
public sealed class SequentialBatchSource(IRecordSource source, SampleBuilder builder, int microBatchSize, CollateOptions collate, DataReport report)
    : IBatchSource<Batch>
{
    private int _next;

    /// <inheritdoc/>
    public Batch Next()
    {
        if (source.Count == 0) throw new InvalidOperationException("validation data is empty");
        var samples = new List<TrainingSample>(microBatchSize);
        int misses = 0;
        while (samples.Count < microBatchSize)
        {
            var line = source.Read(_next);
            var s = builder.TryBuild(line, source.Datasets[line.DatasetIndex], report, (ulong)_next);
            _next = (_next + 1) % source.Count;
            if (s != null) { samples.Add(s); misses = 0; }
            else if (++misses > source.Count) throw new InvalidDataException($"data: every validation record is bad\n{report}");
        }
        return collate.Collate(samples);
    }

    /// <inheritdoc/>
    public JsonNode GetState() => new JsonObject { ["next"] = _next };

    /// <inheritdoc/>
    public void SetState(JsonNode state) => _next = state["next"]!.GetValue<int>();
}
