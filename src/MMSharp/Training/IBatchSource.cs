using System.Text.Json.Nodes;
using MMSharp.Engine;

namespace MMSharp.Training;

/// <summary>
/// An endless stream of micro-batches whose position can be saved and restored, so a resumed run sees exactly the
/// batches an uninterrupted run would have seen. Epoch boundaries, shuffling and streaming are the source's business.
/// </summary>
public interface IBatchSource<TBatch>
{
    TBatch Next();

    /// <summary>A JSON snapshot of the position (stored in checkpoints).</summary>
    JsonNode GetState();

    void SetState(JsonNode state);
}

/// <summary>
/// Micro-batches of a fixed list, visited epoch by epoch in an order shuffled with a seed derived from
/// (<paramref name="seed"/>, epoch) — the epoch-seeded permutation of MindSpeed's <c>BaseRandomBatchSampler</c> —
/// so the position is just (epoch, index).
/// </summary>
public sealed class ListBatchSource<TBatch>(IReadOnlyList<TBatch> items, ulong seed, bool shuffle = true) : IBatchSource<TBatch>
{
    int[]? _order;
    long _epoch;
    int _index;

    public long Epoch => _epoch;

    public TBatch Next()
    {
        if (items.Count == 0) throw new InvalidOperationException("batch source is empty");
        if (_index >= items.Count) { _epoch++; _index = 0; _order = null; }
        _order ??= Order(_epoch);
        return items[_order[_index++]];
    }

    int[] Order(long epoch)
    {
        var o = Enumerable.Range(0, items.Count).ToArray();
        if (!shuffle) return o;
        var rng = new Rng(seed ^ (0x9E3779B97F4A7C15UL * (ulong)(epoch + 1)));
        for (int i = o.Length - 1; i > 0; i--)
        {
            int j = rng.NextInt(i + 1);
            (o[i], o[j]) = (o[j], o[i]);
        }
        return o;
    }

    public JsonNode GetState() => new JsonObject { ["epoch"] = _epoch, ["index"] = _index };

    public void SetState(JsonNode state)
    {
        _epoch = state["epoch"]!.GetValue<long>();
        _index = state["index"]!.GetValue<int>();
        _order = null;
    }
}
