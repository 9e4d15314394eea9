using System.Text.Json;

namespace MMSharp.Data;

/// <summary>
/// Where a <see cref="StreamingJsonlReader"/> stands: the dataset of the mix, the repeat pass inside it, the byte offset and
/// line number of the next line, lines already taken in this pass, the epoch and samples taken in this epoch.
/// Saving it in a checkpoint and reopening from it continues at exactly the next record.
/// </summary>
public sealed record StreamPosition(int Dataset = 0, int Pass = 0, long ByteOffset = 0, long Line = 0, long TakenInPass = 0,
    int Epoch = 0, long TakenInEpoch = 0)
{
    /// <summary>JSON form for checkpoints.</summary>
    public string ToJson() => JsonSerializer.Serialize(this);
    /// <summary>Inverse of <see cref="ToJson"/>.</summary>
    public static StreamPosition FromJson(string json) => JsonSerializer.Deserialize<StreamPosition>(json)!;
}

/// <summary>
/// Streaming mode for JSONL files larger than memory: reads the mixed datasets line by line in meta-file order with
/// constant memory, applying <c>repeat_time</c> (a fraction keeps the first <c>int(lines*repeat_time)</c> lines — counted by
/// one scan of the file when needed; an integer repeats the file) and <c>max_samples</c> per epoch, and wraps to the next
/// epoch forever. No global shuffle is possible in this mode (the order is the files' order; shuffle the files beforehand).
/// </summary>
public sealed class StreamingJsonlReader : IDisposable
{
    private readonly DatasetSpec[] _specs;
    private readonly long?[] _kept;    // lines kept per pass, null = all (no count needed)
    private readonly long? _maxSamples;
    private FileStream? _stream;
    private int _streamDataset = -1;

    /// <summary>Position of the next record.</summary>
    public StreamPosition Position { get; private set; }

    /// <summary>The datasets.</summary>
    public IReadOnlyList<DatasetSpec> Datasets => _specs;

    /// <param name="specs">Datasets in order.</param>
    /// <param name="position">Where to start (a saved <see cref="Position"/>), or the beginning.</param>
    /// <param name="maxSamples">Records per epoch at most.</param>
    public StreamingJsonlReader(IReadOnlyList<DatasetSpec> specs, StreamPosition? position = null, long? maxSamples = null)
    {
        if (specs.Count == 0) throw new ArgumentException("StreamingJsonlReader: no datasets");
        _specs = specs.ToArray();
        _kept = new long?[specs.Count];
        for (int d = 0; d < specs.Count; d++)
        {
            if (!File.Exists(specs[d].Annotation)) throw new FileNotFoundException($"dataset '{specs[d].Name}': annotation file not found", specs[d].Annotation);
            if (specs[d].RepeatTime < 1) _kept[d] = specs[d].Selection(JsonlLines.CountLines(specs[d].Annotation)).Kept;
            else specs[d].Selection(0);   // validates an integer repeat
        }
        _maxSamples = maxSamples;
        Position = position ?? new StreamPosition();
    }

    /// <summary>The next raw record (wrapping into the next epoch at the end); false only if every dataset is empty.</summary>
    public bool TryNext(out RawLine line)
    {
        var p = Position;
        for (int guard = 0; guard < 4 * _specs.Length + 4; guard++)
        {
            if (_maxSamples is long max && p.TakenInEpoch >= max) { p = new StreamPosition(Epoch: p.Epoch + 1); continue; }
            if (p.Dataset >= _specs.Length)
            {
                if (p.TakenInEpoch == 0) break;   // an epoch without any record
                p = new StreamPosition(Epoch: p.Epoch + 1);
                continue;
            }
            var spec = _specs[p.Dataset];
            int repeat = spec.Selection(0).Repeat;
            bool passDone = _kept[p.Dataset] is long kept && p.TakenInPass >= kept;
            long offset = p.ByteOffset, lineNo = p.Line;
            byte[] bytes = []; long start = 0, number = 0;
            if (!passDone && JsonlLines.TryReadLine(Stream(p.Dataset), ref offset, ref lineNo, out bytes, out start, out number))
            {
                line = new RawLine(bytes, new SourceLocation(spec.Annotation, number, start), p.Dataset);
                Position = p with { ByteOffset = offset, Line = lineNo, TakenInPass = p.TakenInPass + 1, TakenInEpoch = p.TakenInEpoch + 1 };
                return true;
            }
            p = p.Pass + 1 < repeat
                ? p with { Pass = p.Pass + 1, ByteOffset = 0, Line = 0, TakenInPass = 0 }
                : p with { Dataset = p.Dataset + 1, Pass = 0, ByteOffset = 0, Line = 0, TakenInPass = 0 };
        }
        line = default;
        return false;
    }

    private FileStream Stream(int d)
    {
        if (_streamDataset != d)
        {
            _stream?.Dispose();
            _stream = new FileStream(_specs[d].Annotation, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
            _streamDataset = d;
        }
        return _stream!;
    }

    /// <inheritdoc/>
    public void Dispose() => _stream?.Dispose();
}
