using System.Diagnostics;
using System.Runtime.InteropServices;
using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.Models.InternVL;
using MMSharp.Text;

namespace MMSharp.Generation;

/// <summary>
/// The generation loop of InternVL's <c>chat()</c> / <c>batch_chat()</c> on a KV cache: one prefill over the prompt
/// (vision features written over the <c>&lt;IMG_CONTEXT&gt;</c> rows), then one-token decode steps, each token picked
/// by an <see cref="ITokenChooser"/>, until a stop id or <c>max_new_tokens</c>. Text is streamed through a
/// <see cref="StreamingDecoder"/> as tokens arrive.
/// </summary>
public sealed unsafe class Generator
{
    public InternVLChatModel Model { get; }
    public Qwen2Tokenizer Tokenizer { get; }
    public ChatTemplate Template { get; }

    /// <summary>Ids that end an answer: the template's stop token (<c>&lt;|im_end|&gt;</c>), as <c>chat()</c> sets it.</summary>
    public IReadOnlySet<int> StopIds { get; }

    /// <summary>The longest prompt the model takes: <c>llm_config.max_position_embeddings</c>.</summary>
    public int ContextLength => Model.Config.Llm.MaxPositionEmbeddings;

    public Generator(InternVLChatModel model, Qwen2Tokenizer tokenizer, ChatTemplate template, IEnumerable<int>? extraStopIds = null)
    {
        Model = model;
        Tokenizer = tokenizer;
        Template = template;
        StopIds = new HashSet<int>(InternVLPrompt.StopTokenIds(tokenizer, template, (extraStopIds ?? []).ToArray()));
    }

    /// <summary>Throws <see cref="ContextLengthException"/> when a prompt of <paramref name="promptTokens"/> does not fit.</summary>
    public void CheckContext(int promptTokens)
    {
        if (promptTokens > ContextLength) throw new ContextLengthException(promptTokens, ContextLength);
    }

    /// <summary>
    /// Generates one answer for <paramref name="promptIds"/> with the tiles <paramref name="pixelValues"/>
    /// ([tiles, 3, S, S] of every image in the prompt, or null). <paramref name="onText"/> receives the text of every token
    /// as soon as its characters are complete (special tokens are skipped, the stop token is not printed). With
    /// <paramref name="reuse"/> (a conversation's <see cref="PromptCache"/>) only the part of the prompt after what the cache
    /// already holds is prefilled, and only the tiles of the images in that part are encoded.
    /// </summary>
    public GenerationResult Generate(IReadOnlyList<int> promptIds, Tensor? pixelValues, int maxNewTokens,
        ITokenChooser? chooser = null, Action<string>? onText = null, PromptCache? reuse = null)
    {
        chooser ??= GreedyChooser.Instance;
        int T = promptIds.Count;
        CheckContext(T);
        if (maxNewTokens <= 0) return new GenerationResult([], "", T, false, 0, 0);
        using var noGrad = GradMode.NoGrad();
        using var owned = reuse == null ? Model.NewCache(1, T + maxNewTokens) : null;
        var output = new List<int>(maxNewTokens);
        var stream = Tokenizer.CreateStreamingDecoder(skipSpecial: true);
        bool stopped = false;
        try
        {
            var sw = Stopwatch.StartNew();
            var (cache, reused) = reuse?.Prepare(Model, promptIds, maxNewTokens) ?? (owned!, 0);
            var logits = PrefillFrom(promptIds, reused, pixelValues, cache);
            double prefill = sw.Elapsed.TotalSeconds;
            sw.Restart();
            using var step = Tensor.Empty([1], DType.I64);
            while (true)
            {
                int next = chooser.Choose(Row(logits, 0), CollectionsMarshal.AsSpan(output));
                logits.Dispose();
                output.Add(next);
                if (StopIds.Contains(next)) { stopped = true; break; }
                string piece = stream.Push(next);
                if (piece.Length > 0) onText?.Invoke(piece);
                if (output.Count == maxNewTokens) break;
                step.SetFlat(0, next);
                logits = Model.DecodeStep(step, cache);
            }
            string rest = stream.Flush();
            if (rest.Length > 0) onText?.Invoke(rest);
            reuse?.Remember(promptIds, output);
            return new GenerationResult(output.ToArray(), Response(output), T, stopped, prefill, sw.Elapsed.TotalSeconds, reused);
        }
        catch
        {
            reuse?.Clear();
            throw;
        }
    }

    /// <summary>Prefill of promptIds[start..] on a cache holding promptIds[..start): the tiles of the images whose
    /// context tokens come before <paramref name="start"/> are skipped (<see cref="PromptCache"/> never cuts an image).</summary>
    Tensor PrefillFrom(IReadOnlyList<int> promptIds, int start, Tensor? pixelValues, KvCache cache)
    {
        using var ids = Tensor.FromArray(promptIds.Skip(start).Select(i => (long)i).ToArray(), 1, promptIds.Count - start);
        if (start == 0 || pixelValues == null) return Model.Prefill(ids, pixelValues, cache);
        int ctx = Model.ImgContextTokenId ?? -1, done = 0;
        for (int i = 0; i < start; i++) if (promptIds[i] == ctx) done++;
        int tiles = done / Model.Config.NumImageToken, all = pixelValues.Shape[0];
        if (tiles >= all) return Model.Prefill(ids, null, cache);
        using var rest = Ops.Narrow(pixelValues, 0, tiles, all - tiles);
        return Model.Prefill(ids, rest, cache);
    }

    /// <summary>
    /// <c>batch_chat()</c>: several prompts at once, left-padded to the longest with <paramref name="padId"/>.
    /// As HF generate does for left padding, attention_mask hides the pad keys and position_ids = cumsum(mask) − 1,
    /// so each row computes what it would alone. <paramref name="pixelValues"/> holds all rows' tiles in row order, or
    /// <paramref name="visionFeatures"/> their features when the caller encoded them already.
    /// A finished row keeps decoding its stop id (ignored) until every row is done.
    /// </summary>
    public GenerationResult[] GenerateBatch(IReadOnlyList<IReadOnlyList<int>> prompts, Tensor? pixelValues,
        int maxNewTokens, int padId, ITokenChooser? chooser = null, Tensor? visionFeatures = null)
    {
        chooser ??= GreedyChooser.Instance;
        int B = prompts.Count;
        if (B == 0) return [];
        int T = prompts.Max(p => p.Count);
        foreach (var p in prompts) CheckContext(p.Count);
        if (maxNewTokens <= 0) return prompts.Select(p => new GenerationResult([], "", p.Count, false, 0, 0)).ToArray();
        using var noGrad = GradMode.NoGrad();
        int maxLen = T + maxNewTokens;

        // mask[b, j] over all positions (prompt and generated); row b's pad occupies [0, T − len_b)
        var mask = new bool[B, maxLen];
        var ids = new long[B * T];
        var positions = new long[B * T];
        var lengths = new int[B];
        for (int b = 0; b < B; b++)
        {
            var p = prompts[b];
            int pad = T - p.Count;
            lengths[b] = p.Count;
            for (int j = 0; j < T; j++)
            {
                bool real = j >= pad;
                mask[b, j] = real;
                ids[b * T + j] = real ? p[j - pad] : padId;
                positions[b * T + j] = real ? j - pad : 1;                      // HF: masked_fill_(mask == 0, 1)
            }
        }

        var outputs = Enumerable.Range(0, B).Select(_ => new List<int>(maxNewTokens)).ToArray();
        var done = new bool[B];
        var sw = Stopwatch.StartNew();
        using var cache = Model.NewCache(B, maxLen);
        Tensor logits;
        using (var idsT = Tensor.FromArray(ids, B, T))
        using (var posT = Tensor.FromArray(positions, B, T))
        using (var maskT = MaskTensor(mask, B, T))
            logits = Model.Prefill(idsT, pixelValues, cache, attentionMask: maskT, positionIds: posT, visionFeatures: visionFeatures);
        double prefill = sw.Elapsed.TotalSeconds;
        sw.Restart();
        using var stepIds = Tensor.Empty([B], DType.I64);
        using var stepPos = Tensor.Empty([B, 1], DType.I64);
        for (int t = 0; ; t++)
        {
            for (int b = 0; b < B; b++)
            {
                if (done[b]) continue;
                int next = chooser.Choose(Row(logits, b), CollectionsMarshal.AsSpan(outputs[b]));
                outputs[b].Add(next);
                if (StopIds.Contains(next) || outputs[b].Count == maxNewTokens) done[b] = true;
            }
            logits.Dispose();
            if (done.All(d => d)) break;
            for (int b = 0; b < B; b++)
            {
                stepIds.SetFlat(b, outputs[b][^1]);
                stepPos.SetFlat(b, lengths[b] + t);
                mask[b, T + t] = true;
            }
            using var maskT = MaskTensor(mask, B, T + t + 1);
            logits = Model.DecodeStep(stepIds, cache, maskT, stepPos);
        }
        double decode = sw.Elapsed.TotalSeconds;
        return Enumerable.Range(0, B).Select(b => new GenerationResult(outputs[b].ToArray(), Response(outputs[b]),
            lengths[b], StopIds.Contains(outputs[b][^1]), prefill, decode)).ToArray();
    }

    /// <summary>The reply text of new ids: decode skipping special tokens, cut at the template's stop token, trim.</summary>
    public string Response(IReadOnlyList<int> newIds)
    {
        var ids = newIds.Where(id => !StopIds.Contains(id)).ToArray();
        return InternVLPrompt.ExtractResponse(Tokenizer.Decode(ids, skipSpecial: true), Template);
    }

    static Tensor MaskTensor(bool[,] mask, int B, int columns)
    {
        var m = Tensor.Empty([B, columns], DType.Bool);
        for (int b = 0; b < B; b++)
            for (int j = 0; j < columns; j++) m.SetFlat((long)b * columns + j, mask[b, j] ? 1 : 0);
        return m;
    }

    static ReadOnlySpan<float> Row(Tensor logits, int b)
    {
        if (logits.DType != DType.F32 || !logits.IsContiguous || logits.Rank != 2)
            throw new ArgumentException($"Generator: logits must be contiguous F32 [B, V], got {logits.Describe()}");
        int V = logits.Shape[1];
        return new ReadOnlySpan<float>(logits.F32Ptr + (long)b * V, V);
    }
}
