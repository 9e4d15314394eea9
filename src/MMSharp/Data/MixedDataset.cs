namespace MMSharp.Data;

/// <summary>Random access to raw records by index (the map-style dataset a sampler draws from).</summary>
public interface IRecordSource
{
    /// <summary>Number of records.</summary>
    int Count { get; }
    /// <summary>The datasets (for per-dataset settings such as <c>max_dynamic_patch</c> and the media root).</summary>
    IReadOnlyList<DatasetSpec> Datasets { get; }
    /// <summary>The raw line of record <paramref name="index"/>.</summary>
    RawLine Read(int index);
}

/// <summary>
/// Several JSONL datasets concatenated in meta-file order (the official <c>ConcatDataset</c>), each reduced or repeated by its
/// <c>repeat_time</c> exactly as <c>LazySupervisedDataset.__init__</c> does (<see cref="DatasetSpec.Selection"/>), then cut to
/// <c>max_samples</c>. Only line offsets are held (12 bytes per line); records are read from disk when asked for.
/// </summary>
/// <remarks>
/// The official code also shuffles each dataset's lines with <c>np.random.default_rng(seed=ds_idx)</c>; the order inside the
/// concatenation does not matter here because the batch samplers draw a seeded permutation of all indices.
/// </remarks>
public sealed class MixedDataset : IRecordSource, IDisposable
{
    private readonly DatasetSpec[] _specs;
    private readonly long[][] _offsets;
    private readonly int[][] _lines;
    private readonly int[] _kept;          // lines kept per dataset
    private readonly long[] _start;        // first global index of each dataset
    private readonly FileStream?[] _streams;
    private readonly object[] _locks;

    /// <inheritdoc/>
    public int Count { get; }

    /// <inheritdoc/>
    public IReadOnlyList<DatasetSpec> Datasets => _specs;

    /// <summary>Records contributed by each dataset after repeat_time (before max_samples).</summary>
    public IReadOnlyList<long> CountsPerDataset { get; }

    /// <param name="specs">The datasets in order.</param>
    /// <param name="maxSamples">Keep only the first <paramref name="maxSamples"/> records of the concatenation.</param>
    public MixedDataset(IReadOnlyList<DatasetSpec> specs, long? maxSamples = null)
    {
        if (specs.Count == 0) throw new ArgumentException("MixedDataset: no datasets");
        _specs = specs.ToArray();
        _offsets = new long[specs.Count][];
        _lines = new int[specs.Count][];
        _kept = new int[specs.Count];
        _start = new long[specs.Count + 1];
        _streams = new FileStream?[specs.Count];
        _locks = specs.Select(_ => new object()).ToArray();
        var counts = new long[specs.Count];
        for (int d = 0; d < specs.Count; d++)
        {
            if (!File.Exists(specs[d].Annotation)) throw new FileNotFoundException($"dataset '{specs[d].Name}': annotation file not found", specs[d].Annotation);
            var (off, lines) = JsonlLines.Index(specs[d].Annotation);
            var (kept, repeat) = specs[d].Selection(off.Length);
            _offsets[d] = off; _lines[d] = lines; _kept[d] = (int)kept;
            counts[d] = kept * repeat;
            _start[d + 1] = _start[d] + counts[d];
        }
        long total = _start[^1];
        if (maxSamples is long m && m >= 0) total = Math.Min(total, m);
        if (total > int.MaxValue) throw new NotSupportedException($"MixedDataset: {total} records exceed the indexed mode; use streaming mode");
        Count = (int)total;
        CountsPerDataset = counts;
    }

    /// <summary>Dataset index and line index (into the dataset's kept lines) of a global record index.</summary>
    public (int Dataset, int Line) Locate(int index)
    {
        if ((uint)index >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(index), $"MixedDataset: index {index} outside [0, {Count})");
        int d = Array.BinarySearch(_start, index);
        d = d >= 0 ? d : ~d - 1;
        while (_start[d + 1] <= index) d++;   // skip empty datasets
        return (d, (int)((index - _start[d]) % _kept[d]));
    }

    /// <inheritdoc/>
    public RawLine Read(int index)
    {
        var (d, k) = Locate(index);
        lock (_locks[d])
        {
            var fs = _streams[d] ??= new FileStream(_specs[d].Annotation, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 14);
            long offset = _offsets[d][k], line = _lines[d][k] - 1;
            if (!JsonlLines.TryReadLine(fs, ref offset, ref line, out var bytes, out long start, out long lineNo))
                throw new IOException($"{_specs[d].Annotation}: line {_lines[d][k]} vanished (file changed while training?)");
            return new RawLine(bytes, new SourceLocation(_specs[d].Annotation, lineNo, start), d);
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var s in _streams) s?.Dispose();
    }
}

/// <summary>A subset of another source, by index list (train/validation splits).</summary>
public sealed class SubsetSource(IRecordSource inner, int[] indices) : IRecordSource
{
    /// <summary>Indices into the inner source.</summary>
    public IReadOnlyList<int> Indices => indices;
    /// <inheritdoc/>
    public int Count => indices.Length;
    /// <inheritdoc/>
    public IReadOnlyList<DatasetSpec> Datasets => inner.Datasets;
    /// <inheritdoc/>
    public RawLine Read(int index) => inner.Read(indices[index]);
}
