using System.Text;

namespace MMSharp.Data;

/// <summary>Why a record was skipped.</summary>
public enum BadRecordKind
{
    /// <summary>The line is not a JSON object (or a required field has the wrong type).</summary>
    MalformedJson,
    /// <summary>An image (or video) file named by the record does not exist.</summary>
    MissingImage,
    /// <summary>The image file exists but cannot be decoded.</summary>
    UndecodableImage,
    /// <summary>The number of <c>&lt;image&gt;</c> tags does not match the number of images.</summary>
    ImageTagMismatch,
    /// <summary>No conversation, or no assistant turn.</summary>
    EmptyConversation,
    /// <summary>A turn's <c>from</c> is not system/human/gpt.</summary>
    UnknownRole,
    /// <summary><c>max_seq_length</c> truncation cut the image tokens of a single- or multi-image record (the official code
    /// asserts on the <c>&lt;/img&gt;</c> count and drops the sample). Videos are kept, as officially: the model zeroes that loss.</summary>
    ImageTokensTruncated,
    /// <summary>The video could not be read (no frame source, or the reader failed).</summary>
    UnreadableVideo,
}

/// <summary>Where a record came from: file, 1-based line number and byte offset of the line.</summary>
public readonly record struct SourceLocation(string File, long Line, long ByteOffset)
{
    /// <inheritdoc/>
    public override string ToString() => $"{File}:{Line}";
}

/// <summary>A record that cannot be turned into a training sample.</summary>
public sealed class BadRecordException(BadRecordKind kind, string message) : Exception(message)
{
    /// <summary>Category used for the counts of <see cref="DataReport"/>.</summary>
    public BadRecordKind Kind { get; } = kind;
}

/// <summary>
/// Skipped records of a run: the first <see cref="MaxDetailed"/> in full (kind, file:line, message), then only counts
/// per kind. Thread-safe. A bad record never stops the run; it is added here and the next record is used instead.
/// </summary>
public sealed class DataReport
{
    /// <summary>How many entries are kept with their location and message.</summary>
    public const int MaxDetailed = 20;

    /// <summary>One kept entry.</summary>
    public sealed record Entry(BadRecordKind Kind, SourceLocation Location, string Message)
    {
        /// <inheritdoc/>
        public override string ToString() => $"{Location}: {Kind}: {Message}";
    }

    private readonly object _lock = new();
    private readonly List<Entry> _entries = [];
    private readonly Dictionary<BadRecordKind, long> _counts = [];
    private readonly HashSet<(string, long)> _seen = [];

    /// <summary>Total skipped records (each file:line counted once, even when met again in a later epoch).</summary>
    public long Total { get { lock (_lock) return _counts.Values.Sum(); } }

    /// <summary>The first <see cref="MaxDetailed"/> entries.</summary>
    public IReadOnlyList<Entry> Entries { get { lock (_lock) return _entries.ToList(); } }

    /// <summary>Skipped records per kind.</summary>
    public IReadOnlyDictionary<BadRecordKind, long> Counts { get { lock (_lock) return new Dictionary<BadRecordKind, long>(_counts); } }

    /// <summary>Optional sink for each new detailed line (e.g. the trainer's log); called outside the lock.</summary>
    public Action<string>? OnDetailed { get; set; }

    /// <summary>Records a skipped record; returns false if this file:line was already reported.</summary>
    public bool Add(BadRecordKind kind, SourceLocation location, string message)
    {
        Entry? detailed = null;
        lock (_lock)
        {
            if (!_seen.Add((location.File, location.Line))) return false;
            _counts[kind] = _counts.GetValueOrDefault(kind) + 1;
            if (_entries.Count < MaxDetailed) { detailed = new Entry(kind, location, message); _entries.Add(detailed); }
        }
        if (detailed != null) OnDetailed?.Invoke("skipped record " + detailed);
        return true;
    }

    /// <summary>Number of records skipped for <paramref name="kind"/>.</summary>
    public long Count(BadRecordKind kind) { lock (_lock) return _counts.GetValueOrDefault(kind); }

    /// <summary>Multi-line summary: the detailed entries, then "N more" and the counts per kind.</summary>
    public override string ToString()
    {
        lock (_lock)
        {
            long total = _counts.Values.Sum();
            if (total == 0) return "data: no bad records";
            var sb = new StringBuilder();
            sb.Append("data: ").Append(total).Append(" bad record(s) skipped\n");
            foreach (var e in _entries) sb.Append("  ").Append(e).Append('\n');
            if (total > _entries.Count) sb.Append("  ... and ").Append(total - _entries.Count).Append(" more\n");
            foreach (var (k, n) in _counts.OrderBy(p => p.Key)) sb.Append("  ").Append(k).Append(": ").Append(n).Append('\n');
            return sb.ToString().TrimEnd('\n');
        }
    }
}
