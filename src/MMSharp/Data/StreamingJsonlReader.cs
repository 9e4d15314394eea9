using System.Text.Json;

namespace MMSharp.Data;

/// <summary>
/// Where a <see cref="StreamingJsonlReader"/> stands: the dataset of the mix, the repeat pass inside it, the byte offset and
/// line number of the next line, lines already taken in this pass, the epoch and samples taken in this epoch.
/// Saving it in a checkpoint and reopening from it continues at exactly the next record.
/// </summary>
/// <remarks>With block shuffling, <c>ByteOffset</c>/<c>Line</c>/<c>TakenInPass</c> describe the start of the current block and
/// <c>IndexInBlock</c> counts the records of that block already returned.</remarks>
public sealed record StreamPosition(int Dataset = 0, int Pass = 0, long ByteOffset = 0, long Line = 0, long TakenInPass = 0,
    int Epoch = 0, long TakenInEpoch = 0, int IndexInBlock = 0)
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
/// epoch forever. A global shuffle is not possible with constant memory; <c>shuffleBlock</c> = K shuffles each run of K
/// consecutive lines with a permutation seeded by (seed, epoch, dataset, pass, block) — 16 bytes of memory per line of the
/// block — and stays exactly resumable. Shuffle large files beforehand for a better mix.
/// </summary>
public sealed class StreamingJsonlReader : IDisposable
{
    private readonly DatasetSpec[] _specs;
    private readonly long?[] _kept;    // lines kept per pass, null = all (no count needed)
    private readonly long? _maxSamples;
    private readonly int _shuffleBlock;
    private readonly ulong _seed;
    private FileStream? _stream;
    private int _streamDataset = -1;
    private (int Dataset, int Pass, long Offset, int Epoch)? _blockKey;
    private readonly List<(long Offset, long Line)> _block = [];
    private int[] _blockOrder = [];
    private long _blockEndOffset, _blockEndLine;

    /// <summary>Position of the next record.</summary>
    public StreamPosition Position { get; private set; }

    /// <summary>The datasets.</summary>
    public IReadOnlyList<DatasetSpec> Datasets => _specs;

    /// <param name="specs">Datasets in order.</param>
    /// <param name="position">Where to start (a saved <see cref="Position"/>), or the beginning.</param>
    /// <param name="maxSamples">Records per epoch at most.</param>
    /// <param name="shuffleBlock">0 = file order; K = shuffle every block of K consecutive lines.</param>
    /// <param name="seed">Seed of the block shuffle.</param>
    public StreamingJsonlReader(IReadOnlyList<DatasetSpec> specs, StreamPosition? position = null, long? maxSamples = null,
        int shuffleBlock = 0, ulong seed = 0)
    {
        if (shuffleBlock < 0) throw new ArgumentException($"StreamingJsonlReader: shuffleBlock must be >= 0, got {shuffleBlock}");
        _shuffleBlock = shuffleBlock;
        _seed = seed;
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
        for (int guard = 0; guard < 8 * _specs.Length + 8; guard++)
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
            if (_shuffleBlock > 0)
            {
                if (!passDone)
                {
                    LoadBlock(p);
                    if (p.IndexInBlock < _block.Count)
                    {
                        var (at, number0) = _block[_blockOrder[p.IndexInBlock]];
                        long o = at, n = number0 - 1;
                        JsonlLines.TryReadLine(Stream(p.Dataset), ref o, ref n, out var b, out long st, out long num);
                        line = new RawLine(b, new SourceLocation(spec.Annotation, num, st), p.Dataset);
                        Position = p with { IndexInBlock = p.IndexInBlock + 1, TakenInEpoch = p.TakenInEpoch + 1 };
                        return true;
                    }
                    if (_block.Count > 0)
                    {
                        p = p with { ByteOffset = _blockEndOffset, Line = _blockEndLine, TakenInPass = p.TakenInPass + _block.Count, IndexInBlock = 0 };
                        continue;
                    }
                }
                p = p.Pass + 1 < repeat
                    ? p with { Pass = p.Pass + 1, ByteOffset = 0, Line = 0, TakenInPass = 0, IndexInBlock = 0 }
                    : p with { Dataset = p.Dataset + 1, Pass = 0, ByteOffset = 0, Line = 0, TakenInPass = 0, IndexInBlock = 0 };
                continue;
            }
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

    // Scans the next block's line offsets (at most K lines, within the pass's kept lines) and its seeded order.
    private void LoadBlock(StreamPosition p)
    {
        var key = (p.Dataset, p.Pass, p.ByteOffset, p.Epoch);
        if (_blockKey == key) return;
        _block.Clear();
        long limit = _kept[p.Dataset] is long kept ? Math.Min(_shuffleBlock, kept - p.TakenInPass) : _shuffleBlock;
        long offset = p.ByteOffset, lineNo = p.Line;
        var fs = Stream(p.Dataset);
        while (_block.Count < limit && JsonlLines.TryReadLine(fs, ref offset, ref lineNo, out _, out long start, out long number))
            _block.Add((start, number));
        _blockEndOffset = offset; _blockEndLine = lineNo;
        ulong blockSeed = _seed ^ ((ulong)p.Dataset << 48) ^ ((ulong)p.Pass << 32) ^ (ulong)p.ByteOffset * 0x9E3779B97F4A7C15UL;
        _blockOrder = RandomBatchSampler.Permutation(_block.Count, blockSeed, p.Epoch);
        _blockKey = key;
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
