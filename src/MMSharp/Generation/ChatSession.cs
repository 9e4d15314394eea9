using MMSharp.Engine;
using MMSharp.Text;
using MMSharp.Vision;

namespace MMSharp.Generation;

/// <summary>
/// A multi-turn conversation as <c>model.chat(..., history=history, return_history=True)</c> keeps it: the
/// (question, answer) pairs so far and every image attached so far. Each turn's prompt is the whole conversation
/// (history included, images expanded left to right), as the official code builds it. The official code also recomputes
/// all of it every turn; a session by default keeps the conversation's KV cache (<see cref="PromptCache"/>), so a
/// follow-up question prefills only the answer's re-tokenized text and the new question, and encodes only new images.
/// </summary>
/// <remarks>
/// Placeholders for images attached since the previous question are put in front of the next question: one image in
/// the conversation gets <c>"&lt;image&gt;\n"</c> (what chat() prepends), several get the model card's
/// <c>"Image-k: &lt;image&gt;\n"</c>, video frames <c>"Frame{i}: &lt;image&gt;\n"</c>.
/// </remarks>
public sealed class ChatSession : IDisposable
{
    readonly List<Tensor> _tiles = [];           // one [tiles, 3, S, S] block per image / frame, rounded to the model's dtype
    readonly List<int> _numPatches = [];
    readonly List<(string Question, string Answer)> _history = [];
    readonly PromptCache? _reuse;
    int _images, _frames, _pendingImages, _pendingFrames;

    public Generator Generator { get; }

    /// <summary>Tiles per image at most (<c>max_num</c>), the config's max_dynamic_patch by default.</summary>
    public int MaxTiles { get; }

    /// <summary>System message; null = the template's (spec 5.6: config.system_message null means the default).</summary>
    public string? SystemMessage { get; }

    public IReadOnlyList<(string Question, string Answer)> History => _history;
    public IReadOnlyList<int> NumPatchesList => _numPatches;

    /// <summary>A conversation with <paramref name="generator"/>'s model; <paramref name="maxTiles"/> (default: the config's
    /// max_dynamic_patch) caps the tiles per image, <paramref name="systemMessage"/> (default: the config's, else the
    /// template's) opens the prompt. <paramref name="reusePrefix"/> keeps the KV cache between turns (false: recompute the
    /// whole conversation every turn, as the official code does; answers then match it without the float rounding of
    /// reused keys and values).</summary>
    public ChatSession(Generator generator, int? maxTiles = null, string? systemMessage = null, bool reusePrefix = true)
    {
        Generator = generator;
        _reuse = reusePrefix ? new PromptCache() : null;
        MaxTiles = maxTiles ?? generator.Model.Config.MaxDynamicPatch;
        if (MaxTiles < 1) throw new ArgumentOutOfRangeException(nameof(maxTiles), $"max tiles must be >= 1, got {MaxTiles}");
        SystemMessage = systemMessage ?? generator.Model.Config.SystemMessage;
    }

    /// <summary>Attaches an image (decoded and tiled now; a corrupt file throws <see cref="ImageDecodeException"/>).</summary>
    public void AddImage(string path)
    {
        using var t = InternVLImagePreprocessor.LoadImage(path, Generator.Model.Config.ImageSize, MaxTiles);
        _tiles.Add(Generator.Model.RoundPixels(t));
        _numPatches.Add(t.Shape[0]);
        _images++;
        _pendingImages++;
    }

    /// <summary>Attaches video frames: <paramref name="pixelValues"/> [Σ tiles, 3, S, S] with <paramref name="numPatches"/> tiles per frame.</summary>
    public void AddVideoFrames(Tensor pixelValues, IReadOnlyList<int> numPatches)
    {
        _tiles.Add(Generator.Model.RoundPixels(pixelValues));
        _numPatches.AddRange(numPatches);
        _frames += numPatches.Count;
        _pendingFrames += numPatches.Count;
    }

    /// <summary>Forgets history and images.</summary>
    public void Reset()
    {
        foreach (var t in _tiles) t.Dispose();
        _tiles.Clear();
        _numPatches.Clear();
        _history.Clear();
        _reuse?.Clear();
        _images = _frames = _pendingImages = _pendingFrames = 0;
    }

    /// <summary>
    /// Starts a new conversation about the images and frames already attached (infer's prompts, each answered on its
    /// own): the history is forgotten and the next question gets every placeholder again, as a fresh session would give
    /// it. The KV cache is kept, so the new prompt's common start (system message and images) is neither encoded nor
    /// prefilled again.
    /// </summary>
    public void NewConversation()
    {
        _history.Clear();
        (_pendingImages, _pendingFrames) = (_images, _frames);
    }

    /// <summary>The question as it is stored in the history (placeholders of newly attached images in front).</summary>
    public string PrepareQuestion(string question)
    {
        string prefix = "";
        if (_pendingFrames > 0) prefix = InternVLPrompt.VideoPrefix(_pendingFrames);
        if (_pendingImages > 0)
        {
            if (_numPatches.Count == 1 && !question.Contains(InternVLPrompt.ImagePlaceholder, StringComparison.Ordinal))
                prefix += InternVLPrompt.ImagePlaceholder + "\n";
            else if (_numPatches.Count > 1)
                for (int k = _numPatches.Count - _pendingImages; k < _numPatches.Count; k++)
                    prefix += $"Image-{k + 1}: {InternVLPrompt.ImagePlaceholder}\n";
        }
        return prefix + question;
    }

    /// <summary>The full prompt text for a question already passed through <see cref="PrepareQuestion"/>, given the current history.</summary>
    public string BuildPrompt(string preparedQuestion) =>
        InternVLPrompt.BuildChatQuery(Generator.Template, preparedQuestion, _numPatches, Generator.Model.Config.NumImageToken,
            _history.Count == 0 ? null : _history, SystemMessage);

    /// <summary>All attached tiles [Σ tiles, 3, S, S] in prompt order, rounded to the model's dtype as the model
    /// card's <c>.to(torch.bfloat16)</c> does (F32 values); null without images. Caller disposes.</summary>
    public Tensor? PixelValues() =>
        _tiles.Count == 0 ? null : _tiles.Count == 1 ? Ops.Contiguous(_tiles[0]) : Ops.Concat(_tiles.ToArray(), 0);

    /// <summary>
    /// Answers <paramref name="question"/>: builds the prompt, tokenizes it, calls <paramref name="beforeGenerate"/>
    /// (e.g. to dump tensors) and generates, streaming to <paramref name="onText"/>; the turn joins the history.
    /// </summary>
    public GenerationResult Ask(string question, int maxNewTokens, ITokenChooser? chooser = null, Action<string>? onText = null,
        Action<int[], Tensor?>? beforeGenerate = null)
    {
        string q = PrepareQuestion(question);
        string prompt = BuildPrompt(q);
        int[] ids = Generator.Tokenizer.Encode(prompt);
        Generator.CheckContext(ids.Length);
        using var pv = PixelValues();
        beforeGenerate?.Invoke(ids, pv);
        var result = Generator.Generate(ids, pv, maxNewTokens, chooser, onText, _reuse);
        _history.Add((q, result.Text));
        _pendingImages = _pendingFrames = 0;
        return result;
    }

    public void Dispose()
    {
        Reset();
        _reuse?.Dispose();
    }
}
