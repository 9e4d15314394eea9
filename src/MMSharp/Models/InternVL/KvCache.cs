using MMSharp.Engine;

namespace MMSharp.Models.InternVL;

/// <summary>
/// Keys and values of every decoder layer for incremental decoding: one F32 buffer [B, Hkv, MaxLength, D] per
/// layer for K and one for V, allocated once. A forward over T new tokens writes their (rotated) keys and values
/// in place at positions [Length, Length + T) of each layer and then advances <see cref="Length"/>; nothing is
/// reallocated while decoding.
/// </summary>
public sealed class KvCache : IDisposable
{
    readonly Tensor[] _keys, _values;

    public int Batch { get; }
    public int NumLayers => _keys.Length;
    public int NumKeyValueHeads { get; }
    public int HeadDim { get; }
    public int MaxLength { get; }

    /// <summary>Tokens already stored (the position id of the next token).</summary>
    public int Length { get; private set; }

    public KvCache(int numLayers, int batch, int numKeyValueHeads, int headDim, int maxLength)
    {
        if (numLayers <= 0 || batch <= 0 || numKeyValueHeads <= 0 || headDim <= 0 || maxLength <= 0)
            throw new ArgumentException($"KvCache: sizes must be positive (layers {numLayers}, batch {batch}, kv heads {numKeyValueHeads}, head dim {headDim}, max length {maxLength})");
        Batch = batch;
        NumKeyValueHeads = numKeyValueHeads;
        HeadDim = headDim;
        MaxLength = maxLength;
        _keys = new Tensor[numLayers];
        _values = new Tensor[numLayers];
        // owned by the cache, not by whatever tensor scope is open
        using (TensorScope.Suspend())
            for (int i = 0; i < numLayers; i++)
            {
                _keys[i] = Tensor.Zeros([batch, numKeyValueHeads, maxLength, headDim]);
                _values[i] = Tensor.Zeros([batch, numKeyValueHeads, maxLength, headDim]);
            }
    }

    /// <summary>A cache sized for <paramref name="config"/>.</summary>
    public static KvCache For(Qwen2Config config, int batch, int maxLength) =>
        new(config.NumHiddenLayers, batch, config.NumKeyValueHeads, config.HeadDim, maxLength);

    /// <summary>Bytes held by the buffers.</summary>
    public long Bytes => 2L * NumLayers * Batch * NumKeyValueHeads * MaxLength * HeadDim * sizeof(float);

    /// <summary>Throws unless <paramref name="newTokens"/> more tokens of batch <paramref name="batch"/> fit.</summary>
    public void EnsureRoom(int batch, int newTokens)
    {
        if (batch != Batch) throw new ArgumentException($"KvCache: batch {batch} given, cache was made for batch {Batch}");
        if (Length + newTokens > MaxLength)
            throw new InvalidOperationException($"KvCache: {Length} cached + {newTokens} new tokens exceed the maximum length {MaxLength}");
    }

    /// <summary>
    /// Writes k, v [B, Hkv, T, D] of layer <paramref name="layer"/> at [Length, Length + T) and returns views
    /// [B, Hkv, Length + T, D] of everything cached for that layer (caller disposes the views).
    /// <see cref="Advance"/> moves <see cref="Length"/> once all layers have appended.
    /// </summary>
    public (Tensor Keys, Tensor Values) Append(int layer, Tensor k, Tensor v)
    {
        int T = k.Shape[2];
        if (k.Rank != 4 || k.Shape[0] != Batch || k.Shape[1] != NumKeyValueHeads || k.Shape[3] != HeadDim || !k.Shape.AsSpan().SequenceEqual(v.Shape))
            throw new ArgumentException($"KvCache.Append: k {k.Describe()} and v {v.Describe()} must be [{Batch}, {NumKeyValueHeads}, T, {HeadDim}]");
        if (Length + T > MaxLength)
            throw new InvalidOperationException($"KvCache: {Length} cached + {T} new tokens exceed the maximum length {MaxLength}");
        using (var kSlot = Ops.Narrow(_keys[layer], 2, Length, T)) Ops.CopyInto(k, kSlot);
        using (var vSlot = Ops.Narrow(_values[layer], 2, Length, T)) Ops.CopyInto(v, vSlot);
        return (Ops.Narrow(_keys[layer], 2, 0, Length + T), Ops.Narrow(_values[layer], 2, 0, Length + T));
    }

    /// <summary>The whole key buffer [B, Hkv, MaxLength, D] of <paramref name="layer"/> (the team decode step writes into it in place).</summary>
    internal Tensor KeyBuffer(int layer) => _keys[layer];

    /// <summary>The whole value buffer [B, Hkv, MaxLength, D] of <paramref name="layer"/>.</summary>
    internal Tensor ValueBuffer(int layer) => _values[layer];

    /// <summary>Marks <paramref name="newTokens"/> appended tokens as cached (after the last layer).</summary>
    public void Advance(int newTokens) => Length += newTokens;

    /// <summary>Forgets everything cached (buffers are kept for the next sequence).</summary>
    public void Reset() => Length = 0;

    /// <summary>Drops the tokens after <paramref name="length"/> (e.g. to reuse a shared prompt prefix).</summary>
    public void Truncate(int length)
    {
        if (length < 0 || length > Length) throw new ArgumentOutOfRangeException(nameof(length), $"KvCache: cannot truncate {Length} tokens to {length}");
        Length = length;
    }

    /// <summary>Copies everything <paramref name="source"/> holds (same layers, heads and head size; this cache empty and
    /// at least as long) and takes its length.</summary>
    public void CopyPrefixFrom(KvCache source)
    {
        if (source.NumLayers != NumLayers || source.Batch != Batch || source.NumKeyValueHeads != NumKeyValueHeads || source.HeadDim != HeadDim)
            throw new ArgumentException($"KvCache.CopyPrefixFrom: layouts differ ({source.NumLayers} layers, batch {source.Batch}, {source.NumKeyValueHeads}x{source.HeadDim} into {NumLayers}, {Batch}, {NumKeyValueHeads}x{HeadDim})");
        if (Length != 0 || source.Length > MaxLength)
            throw new InvalidOperationException($"KvCache.CopyPrefixFrom: {source.Length} tokens into a cache holding {Length} of at most {MaxLength}");
        for (int l = 0; l < NumLayers; l++)
            foreach (var (from, to) in new[] { (source._keys[l], _keys[l]), (source._values[l], _values[l]) })
            {
                using var src = Ops.Narrow(from, 2, 0, source.Length);
                using var dst = Ops.Narrow(to, 2, 0, source.Length);
                Ops.CopyInto(src, dst);
            }
        Length = source.Length;
    }

    public void Dispose()
    {
        foreach (var t in _keys) t.Dispose();
        foreach (var t in _values) t.Dispose();
    }
}
