using System.Diagnostics;

namespace MMSharp.Engine;

/// <summary>Op families timed by <see cref="Profiler"/>.</summary>
public enum ProfileCategory { Linear, LmHead, Attention, KvCache, Norm, Rope, Embedding, Elementwise, Sampling, Count }

/// <summary>
/// Switchable wall-clock breakdown of a forward by op family (for the decode benchmark). Off by default: a disabled
/// <see cref="Time"/> costs one static bool read. Only the outermost timed scope counts, so an LM-head scope around
/// a linear books the time once, to the head. Single-threaded callers only (ops are issued from one thread; their
/// inner <c>Par</c> work is inside the timed span).
/// </summary>
public static class Profiler
{
    public static bool Enabled;
    static readonly long[] _ticks = new long[(int)ProfileCategory.Count];
    static readonly long[] _calls = new long[(int)ProfileCategory.Count];
    static int _depth;

    /// <summary>A scope booking its elapsed time to <paramref name="category"/> when disposed (a no-op when disabled).</summary>
    public static Scope Time(ProfileCategory category)
    {
        if (!Enabled) return default;
        return new Scope(category, _depth++ == 0 ? Stopwatch.GetTimestamp() : 0);
    }

    public static void Reset()
    {
        Array.Clear(_ticks);
        Array.Clear(_calls);
        lock (_named) _named.Clear();
    }

    static readonly Dictionary<string, (long Ticks, long Calls)> _named = new();

    /// <summary>Books <paramref name="ticks"/> (<see cref="Stopwatch"/> ticks) to a named entry, e.g. one autograd node's
    /// backward by op name (see <see cref="Autograd.BackwardEngine"/>); the caller checks <see cref="Enabled"/>.</summary>
    public static void Book(string name, long ticks)
    {
        lock (_named) // a backward on another thread must not corrupt the table (the counters above tolerate races)
        {
            _named.TryGetValue(name, out var e);
            _named[name] = (e.Ticks + ticks, e.Calls + 1);
        }
    }

    /// <summary>Named entries booked since the last <see cref="Reset"/>: seconds and calls, largest first.</summary>
    public static IReadOnlyList<(string Name, double Seconds, long Calls)> Named()
    {
        lock (_named)
            return _named.Select(kv => (kv.Key, kv.Value.Ticks / (double)Stopwatch.Frequency, kv.Value.Calls)).OrderByDescending(e => e.Item2).ToList();
    }

    /// <summary>Seconds booked to <paramref name="category"/> since the last <see cref="Reset"/>.</summary>
    public static double Seconds(ProfileCategory category) => _ticks[(int)category] / (double)Stopwatch.Frequency;

    public static long Calls(ProfileCategory category) => _calls[(int)category];

    public readonly struct Scope : IDisposable
    {
        readonly ProfileCategory _category;
        readonly long _start;
        readonly bool _active;

        internal Scope(ProfileCategory category, long start)
        {
            _category = category;
            _start = start;
            _active = true;
        }

        public void Dispose()
        {
            if (!_active) return;
            if (--_depth == 0)
            {
                _ticks[(int)_category] += Stopwatch.GetTimestamp() - _start;
                _calls[(int)_category]++;
            }
        }
    }
}
