using MMSharp.Training;
using System.Text.Json;
using System.Text.Json.Nodes;
using MMSharp.Text;

namespace MMSharp.Data;

/// <summary>The data options of <c>mmsharp finetune</c>.</summary>
public sealed record DataOptions
{
    /// <summary><c>--data</c>: a meta file (<c>.json</c>) or a JSONL file.</summary>
    public required string Data { get; init; }
    /// <summary><c>--val-data FILE</c> (meta or JSONL); takes precedence over <see cref="ValRate"/>.</summary>
    public string? ValData { get; init; }
    /// <summary><c>--val-rate R</c>: seeded split of the training records (indexed mode only).</summary>
    public double ValRate { get; init; }
    /// <summary><c>--seed</c>.</summary>
    public ulong Seed { get; init; }
    /// <summary><c>--micro-batch-size</c>.</summary>
    public int MicroBatchSize { get; init; } = 1;
    /// <summary><c>--max-samples</c>.</summary>
    public long? MaxSamples { get; init; }
    /// <summary><c>--streaming</c>: constant-memory reading in file order.</summary>
    public bool Streaming { get; init; }
    /// <summary><c>--shuffle-block K</c> (streaming): shuffle each block of K consecutive lines (0 = file order).</summary>
    public int ShuffleBlock { get; init; }
    /// <summary><c>--group-by-length</c>; <see cref="GroupSize"/> = world size x gradient-accumulation steps.</summary>
    public bool GroupByLength { get; init; }
    /// <inheritdoc cref="GroupByLength"/>
    public int GroupSize { get; init; } = 1;
    /// <summary><c>--pack-max-tokens N</c>: pack each micro-batch's samples into rows of at most N tokens.</summary>
    public int? PackMaxTokens { get; init; }
    /// <summary><c>--loss-reduction</c> (per-token loss weights of the batches).</summary>
    public LossReduction LossReduction { get; init; } = LossReduction.Token;
    /// <summary>Sample assembly settings.</summary>
    public SampleBuilderOptions Builder { get; init; } = new();
}

/// <summary>The data position saved in a checkpoint: consumed samples (indexed mode) or the stream position.</summary>
public sealed record DataState(long ConsumedSamples, StreamPosition? Stream)
{
    /// <summary>JSON for the checkpoint.</summary>
    public string ToJson() => JsonSerializer.Serialize(this);
    /// <summary>Inverse of <see cref="ToJson"/>.</summary>
    public static DataState FromJson(string json) => JsonSerializer.Deserialize<DataState>(json)!;
}

/// <summary>
/// The training data of a run, wired from <see cref="DataOptions"/>: indexed (seeded shuffle, optional length grouping) or
/// streaming loading, padding or packing, the validation data, the bad-record report, and the resumable position.
/// </summary>
public sealed class TrainingData : IBatchSource<Batch>, IDisposable
{
    private readonly DataOptions _options;
    private readonly SampleBuilder _builder;
    private readonly CollateOptions _collate;
    private readonly MixedDataset? _dataset;
    private readonly DataLoader? _loader;
    private readonly List<DatasetSpec> _specs;
    private StreamingJsonlReader? _reader;
    private StreamingDataLoader? _streamLoader;
    private readonly IRecordSource? _val;
    private readonly MixedDataset? _valDataset;

    /// <summary>Skipped records of training and validation.</summary>
    public DataReport Report { get; } = new();

    /// <summary>Training records (indexed mode; null when streaming).</summary>
    public int? TrainCount { get; }

    /// <summary>Validation records (0 when none).</summary>
    public int ValCount => _val?.Count ?? 0;

    /// <summary>Pad id used by the batches.</summary>
    public long PadId => _collate.PadId;

    private TrainingData(DataOptions options, Qwen2Tokenizer tokenizer, IVideoFrameSource? video)
    {
        _options = options;
        _builder = new SampleBuilder(tokenizer, options.Builder, video);
        long pad = tokenizer.PadTokenId ?? 0;   // the official collator pads with 0
        _collate = new CollateOptions(pad, options.LossReduction, options.PackMaxTokens);
        _specs = DatasetSpec.Load(options.Data);
        if (options.ValData != null) { _valDataset = new MixedDataset(DatasetSpec.Load(options.ValData)); _val = _valDataset; }
        if (options.Streaming)
        {
            if (options.ValData == null && options.ValRate > 0)
                throw new ArgumentException("--val-rate needs the indexed mode (a streamed file cannot be split by a seeded permutation); use --val-data");
            OpenStream(null);
            return;
        }
        _dataset = new MixedDataset(_specs, options.MaxSamples);
        IRecordSource train = _dataset;
        if (options.ValData == null && options.ValRate > 0)
        {
            var (t, v) = ValidationSplit.Split(_dataset, options.ValRate, options.Seed);
            train = t; _val = v;
        }
        TrainCount = train.Count;
        RandomBatchSampler sampler = options.GroupByLength
            ? new LengthGroupedBatchSampler(SampleLengths.Compute(train, tokenizer, options.Builder), options.MicroBatchSize, options.GroupSize, options.Seed)
            : new RandomBatchSampler(train.Count, options.MicroBatchSize, options.Seed);
        _loader = new DataLoader(train, _builder, sampler, _collate, Report);
    }

    /// <summary>Opens the data of a run.</summary>
    public static TrainingData Open(DataOptions options, Qwen2Tokenizer tokenizer, IVideoFrameSource? video = null) => new(options, tokenizer, video);

    private void OpenStream(StreamPosition? position)
    {
        _reader?.Dispose();
        _reader = new StreamingJsonlReader(_specs, position, _options.MaxSamples, _options.ShuffleBlock, _options.Seed);
        _streamLoader = new StreamingDataLoader(_reader, _builder, _options.MicroBatchSize, _collate, Report);
    }

    /// <summary>The next training micro-batch.</summary>
    public Batch NextBatch() => _loader != null ? _loader.NextBatch() : _streamLoader!.NextBatch();

    /// <summary>Current position (after the last batch returned).</summary>
    public DataState State => _loader != null ? new DataState(_loader.ConsumedSamples, null) : new DataState(0, _streamLoader!.Position);

    /// <summary>Restores a position saved from <see cref="State"/>.</summary>
    public void Restore(DataState state)
    {
        if (_loader != null) _loader.ConsumedSamples = state.ConsumedSamples;
        else OpenStream(state.Stream ?? throw new ArgumentException("TrainingData.Restore: the checkpoint has no stream position but the run streams"));
    }

    /// <inheritdoc/>
    public Batch Next() => NextBatch();

    /// <inheritdoc/>
    public JsonNode GetState() => JsonNode.Parse(State.ToJson())!;

    /// <inheritdoc/>
    public void SetState(JsonNode state) => Restore(DataState.FromJson(state.ToJsonString()));

    /// <summary>The validation data as the trainer's batch source (null when there is none).</summary>
    public IBatchSource<Batch>? Validation => _val == null ? null : _validation ??= new SequentialBatchSource(_val, _builder, _options.MicroBatchSize, _collate, Report);
    private SequentialBatchSource? _validation;

    /// <summary>Validation micro-batches in file order (<c>--eval-iters</c> limits them).</summary>
    public IEnumerable<Batch> ValidationBatches(int? maxBatches = null) =>
        _val == null ? [] : DataLoader.Sequential(_val, _builder, _options.MicroBatchSize, _collate, Report, maxBatches);

    /// <inheritdoc/>
    public void Dispose()
    {
        _dataset?.Dispose();
        _valDataset?.Dispose();
        _reader?.Dispose();
    }
}
