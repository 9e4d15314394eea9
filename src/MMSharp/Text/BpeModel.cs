using System.Collections.Concurrent;

namespace MMSharp.Text;

/// <summary>
/// Byte-level BPE: a word's UTF-8 bytes start as one symbol each; the adjacent pair with the lowest merge rank is merged
/// until no adjacent pair has a merge. Works on ids only (merge table maps (left id, right id) -> (rank, merged id)).
/// </summary>
/// <remarks>
/// Ties between equal ranks are broken leftmost first (HF <c>tokenizers</c>' priority queue). For a trained merge list
/// (a merge never has a lower rank than the merges that built its parts) this equals the Python slow tokenizer's
/// "merge every occurrence of the best bigram" loop.
/// </remarks>
public sealed class BpeModel
{
    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<long, (int Rank, int Id)> _merges;
    private readonly int[] _byteIds = new int[256];
    private readonly ConcurrentDictionary<string, int[]> _cache = new(StringComparer.Ordinal);
    private const int MaxCacheEntries = 200_000;
    private const int MaxCachedWordLength = 256;

    /// <summary>Token string (byte-level spelling) -> id.</summary>
    public IReadOnlyDictionary<string, int> Vocab => _vocab;

    /// <summary>Number of merges.</summary>
    public int MergeCount => _merges.Count;

    /// <summary>HF <c>ignore_merges</c>: a word that is itself in the vocabulary is emitted as one token.</summary>
    public bool IgnoreMerges { get; }

    /// <param name="vocab">byte-level token string -> id</param>
    /// <param name="merges">merge pairs in rank order (rank = index)</param>
    /// <param name="ignoreMerges">see <see cref="IgnoreMerges"/></param>
    public BpeModel(Dictionary<string, int> vocab, IReadOnlyList<(string Left, string Right)> merges, bool ignoreMerges = false)
    {
        _vocab = vocab;
        IgnoreMerges = ignoreMerges;
        for (int b = 0; b < 256; b++)
        {
            string sym = ByteLevel.ByteToChar[b].ToString();
            if (!vocab.TryGetValue(sym, out _byteIds[b]))
                throw new ArgumentException($"BPE vocabulary lacks the byte-level symbol for byte 0x{b:X2} ('{sym}').");
        }
        _merges = new Dictionary<long, (int, int)>(merges.Count, PairKeyComparer.Instance);
        for (int r = 0; r < merges.Count; r++)
        {
            var (l, rt) = merges[r];
            if (!vocab.TryGetValue(l, out int li) || !vocab.TryGetValue(rt, out int ri))
                throw new ArgumentException($"BPE merge #{r} '{l} {rt}' uses a token missing from the vocabulary.");
            if (!vocab.TryGetValue(l + rt, out int mi))
                throw new ArgumentException($"BPE merge #{r} '{l} {rt}' produces '{l + rt}', which is not in the vocabulary.");
            _merges.TryAdd(Key(li, ri), (r, mi));   // first occurrence wins, as in HF
        }
    }

    private static long Key(int left, int right) => ((long)left << 32) | (uint)right;

    /// <summary>Appends the ids of one pre-tokenized word (given as text) to <paramref name="output"/>.</summary>
    public void EncodeWord(string word, List<int> output)
    {
        if (word.Length <= MaxCachedWordLength && _cache.TryGetValue(word, out var cached)) { output.AddRange(cached); return; }
        int[] ids = EncodeUncached(word);
        if (word.Length <= MaxCachedWordLength)
        {
            if (_cache.Count >= MaxCacheEntries) _cache.Clear();
            _cache.TryAdd(word, ids);
        }
        output.AddRange(ids);
    }

    private int[] EncodeUncached(string word)
    {
        int byteCount = System.Text.Encoding.UTF8.GetByteCount(word);
        byte[] bytes = new byte[byteCount];
        System.Text.Encoding.UTF8.GetBytes(word, bytes);
        if (IgnoreMerges && _vocab.TryGetValue(ByteLevel.Encode(bytes), out int whole)) return [whole];
        return Merge(bytes);
    }

    /// <summary>BPE over the byte symbols of <paramref name="bytes"/>.</summary>
    internal int[] Merge(ReadOnlySpan<byte> bytes)
    {
        int n = bytes.Length;
        if (n == 0) return [];
        var sym = new int[n];
        for (int i = 0; i < n; i++) sym[i] = _byteIds[bytes[i]];
        if (n == 1) return sym;

        // Doubly linked list over symbol slots; a merge keeps the left slot and unlinks the right one.
        var next = new int[n];
        var prev = new int[n];
        for (int i = 0; i < n; i++) { next[i] = i + 1; prev[i] = i - 1; }
        var queue = new PriorityQueue<(int Pos, int Left, int Right), long>();
        for (int i = 0; i + 1 < n; i++) Enqueue(queue, sym, i, i + 1);

        int alive = n;
        while (queue.TryDequeue(out var e, out _))
        {
            int i = e.Pos, j = next[i];
            // Stale entry: a neighbour merged since it was queued (ids only grow, so an id match means the pair is intact).
            if (j >= n || sym[i] != e.Left || sym[j] != e.Right) continue;
            sym[i] = _merges[Key(e.Left, e.Right)].Id;
            sym[j] = -1;
            next[i] = next[j];
            if (next[j] < n) prev[next[j]] = i;
            alive--;
            if (prev[i] >= 0) Enqueue(queue, sym, prev[i], i);
            if (next[i] < n) Enqueue(queue, sym, i, next[i]);
        }

        var result = new int[alive];
        for (int i = 0, k = 0; i < n; i = next[i]) result[k++] = sym[i];
        return result;
    }

    private void Enqueue(PriorityQueue<(int, int, int), long> queue, int[] sym, int left, int right)
    {
        if (_merges.TryGetValue(Key(sym[left], sym[right]), out var m))
            queue.Enqueue((left, sym[left], sym[right]), ((long)m.Rank << 32) | (uint)left);   // rank, then leftmost
    }
}
