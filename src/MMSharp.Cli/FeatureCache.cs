using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.Models.InternVL;

namespace MMSharp.Cli;

/// <summary>
/// Vision features that <c>eval</c> has computed, by media (image paths and tiles, or video, frames and tiles), so
/// records about the same image or video — several questions per image are common in test sets — are decoded and
/// encoded once. A tile's features do not depend on the other tiles encoded with it (tested), so answers are the same
/// as with every record encoded in its batch. Least recently used entries go once the features held pass the capacity.
/// </summary>
internal sealed class FeatureCache(InternVLChatModel model, long capacityBytes) : IDisposable
{
    sealed record Entry(string Key, Tensor Features, int[] NumPatches);

    readonly Dictionary<string, LinkedListNode<Entry>> _map = [];
    readonly LinkedList<Entry> _lru = new();
    long _bytes;

    /// <summary>Tiles put through the vision encoder, and tiles whose features were taken from the cache.</summary>
    public int TilesEncoded { get; private set; }
    public int TilesReused { get; private set; }

    /// <summary>
    /// The features [tiles, n, Hl] and the tiles per image of the media <paramref name="key"/>; on a miss the pixels from
    /// <paramref name="load"/> are rounded to the model's dtype (as the model card's <c>.to(torch.bfloat16)</c>) and encoded.
    /// The tensor belongs to the cache and stays valid until the next <see cref="Trim"/>.
    /// </summary>
    public (Tensor Features, int[] NumPatches) Get(string key, Func<(Tensor Pixels, int[] NumPatches)> load)
    {
        if (_map.TryGetValue(key, out var node))
        {
            _lru.Remove(node);
            _lru.AddFirst(node);
            TilesReused += node.Value.Features.Shape[0];
            return (node.Value.Features, node.Value.NumPatches);
        }
        var (pixels, numPatches) = load();
        Tensor features;
        using (pixels)
        using (GradMode.NoGrad())
        using (var rounded = model.RoundPixels(pixels))
        using (var scope = TensorScope.Begin())
            features = scope.Keep(model.ExtractFeature(rounded));
        var entry = new Entry(key, features, numPatches);
        _map[key] = _lru.AddFirst(entry);
        _bytes += features.NumEl * features.DType.SizeOf();
        TilesEncoded += features.Shape[0];
        return (features, numPatches);
    }

    /// <summary>Drops the least recently used entries while the features held pass the capacity (the most recent one stays).</summary>
    public void Trim()
    {
        while (_bytes > capacityBytes && _lru.Count > 1)
        {
            var last = _lru.Last!.Value;
            _lru.RemoveLast();
            _map.Remove(last.Key);
            _bytes -= last.Features.NumEl * last.Features.DType.SizeOf();
            last.Features.Dispose();
        }
    }

    public void Dispose()
    {
        foreach (var e in _lru) e.Features.Dispose();
        _lru.Clear();
        _map.Clear();
        _bytes = 0;
    }
}
