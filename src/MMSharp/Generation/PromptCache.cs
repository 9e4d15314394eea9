using MMSharp.Models.InternVL;

namespace MMSharp.Generation;

/// <summary>
/// The KV cache of one conversation, kept from one turn to the next (<see cref="ChatSession"/>), and the token ids whose
/// keys and values it holds: the previous prompt and the answer tokens fed back while decoding. The next turn's prompt
/// repeats all of that (history, then the new question), so <see cref="Generator.Generate"/> prefills only what follows
/// the longest common prefix, and only the images whose <c>&lt;IMG_CONTEXT&gt;</c> tokens lie there go through the
/// vision encoder. The official <c>model.chat()</c> recomputes the whole conversation every turn. Keys and values kept
/// from an earlier prefill equal a recompute's (tests: a new conversation about the same images gets bit-identical
/// logits); those of answer tokens come from decode steps, whose products sum in another order, so a follow-up can differ
/// from a recompute by float rounding.
/// </summary>
/// <remarks>
/// The prefix is matched on token ids only: images earlier in the conversation must stay as they were (a session only
/// appends images, and <see cref="Clear"/> goes with <see cref="ChatSession.Reset"/>).
/// </remarks>
public sealed class PromptCache : IDisposable
{
    KvCache? _cache;
    readonly List<int> _ids = [];

    /// <summary>Tokens whose keys and values are cached.</summary>
    public int Length => _ids.Count;

    /// <summary>Forgets the conversation (the buffers are kept for the next one).</summary>
    public void Clear() => _ids.Clear();

    /// <summary>
    /// A cache holding the longest prefix of <paramref name="promptIds"/> already computed — at most all but its last
    /// token, and never a cut through a run of <c>&lt;IMG_CONTEXT&gt;</c> tokens (an image's tiles are encoded whole) —
    /// with room for the rest and <paramref name="maxNewTokens"/>; returns the prefix length. The buffers grow (doubling
    /// up to the context length, the prefix copied over) when the conversation outgrows them.
    /// </summary>
    internal (KvCache Cache, int Reused) Prepare(InternVLChatModel model, IReadOnlyList<int> promptIds, int maxNewTokens)
    {
        if (_cache == null || _cache.Length < _ids.Count) _ids.Clear();           // a turn that failed half-way
        int keep = 0, limit = Math.Min(_ids.Count, promptIds.Count - 1);
        while (keep < limit && _ids[keep] == promptIds[keep]) keep++;
        if (model.ImgContextTokenId is int ctx)
            while (keep > 0 && promptIds[keep] == ctx && promptIds[keep - 1] == ctx) keep--;
        _ids.RemoveRange(keep, _ids.Count - keep);
        int needed = promptIds.Count + maxNewTokens;
        if (_cache == null || _cache.MaxLength < needed)
        {
            // doubling, but not past what a prompt of the context length and this answer can use
            int cap = Math.Min(2 * (_cache?.MaxLength ?? 0), model.Config.Llm.MaxPositionEmbeddings + maxNewTokens);
            var grown = model.NewCache(1, Math.Max(needed, cap));
            if (_cache != null)
            {
                _cache.Truncate(keep);
                grown.CopyPrefixFrom(_cache);
                _cache.Dispose();
            }
            _cache = grown;
        }
        else _cache.Truncate(keep);
        return (_cache, keep);
    }

    /// <summary>After a turn: the cache holds the prompt and every answer token but the last (which was never fed).</summary>
    internal void Remember(IReadOnlyList<int> promptIds, IReadOnlyList<int> answer)
    {
        _ids.Clear();
        _ids.AddRange(promptIds);
        for (int i = 0; i + 1 < answer.Count; i++) _ids.Add(answer[i]);
        if (_cache == null || _cache.Length != _ids.Count)
            throw new InvalidOperationException($"PromptCache: the KV cache holds {_cache?.Length ?? 0} tokens, the turn fed {_ids.Count}");
    }

    public void Dispose()
    {
        _cache?.Dispose();
        _cache = null;
        _ids.Clear();
    }
}
