using MMSharp.Engine;
using MMSharp.Text;
using MMSharp.Vision;

namespace MMSharp.Data;

/// <summary>Settings of sample assembly (the official finetune arguments of the same names).</summary>
public sealed record SampleBuilderOptions
{
    /// <summary><c>force_image_size</c> (tile side).</summary>
    public int ImageSize { get; init; } = 448;
    /// <summary>Context tokens per tile (<c>num_image_token</c> = (S/patch)^2 * downsample^2; 256 for 448/14/0.5).</summary>
    public int NumImageToken { get; init; } = 256;
    /// <summary><c>dynamic_image_size</c>: tile images (else one resized tile).</summary>
    public bool DynamicImageSize { get; init; } = true;
    /// <summary><c>min_dynamic_patch</c>.</summary>
    public int MinDynamicPatch { get; init; } = 1;
    /// <summary><c>max_dynamic_patch</c> (a dataset's meta entry overrides it).</summary>
    public int MaxDynamicPatch { get; init; } = 12;
    /// <summary><c>use_thumbnail</c>.</summary>
    public bool UseThumbnail { get; init; } = true;
    /// <summary><c>max_seq_length</c> (<c>tokenizer.model_max_length</c>): truncation length.</summary>
    public int MaxSeqLength { get; init; } = 8192;
    /// <summary>Video: frames drawn uniformly in [min, max] per sample (<c>min_num_frame</c>, <c>max_num_frame</c>).</summary>
    public int MinNumFrame { get; init; } = 8;
    /// <inheritdoc cref="MinNumFrame"/>
    public int MaxNumFrame { get; init; } = 32;
    /// <summary>Template supplying the default system message.</summary>
    public ChatTemplate Template { get; init; } = ChatTemplate.InternVL2_5;
    /// <summary>Normalisation mean/std (ImageNet for InternVL).</summary>
    public double[]? Mean { get; init; }
    /// <inheritdoc cref="Mean"/>
    public double[]? Std { get; init; }
}

/// <summary>
/// Turns a <see cref="DataRecord"/> into a <see cref="TrainingSample"/> like the official <c>LazySupervisedDataset</c>
/// (spec internvl.md 6.4-6.5): images tiled with the dataset's <c>max_dynamic_patch</c> (multi-image:
/// <c>max(1, max_dynamic_patch // num_images)</c> per image), <c>&lt;image&gt;</c> expanded with 256 x tiles context
/// tokens, <c>preprocess_internvl2_5</c> masking, truncation to <c>max_seq_length</c>. Problems throw
/// <see cref="BadRecordException"/>; <see cref="TryBuild"/> turns them into <see cref="DataReport"/> entries.
/// </summary>
public sealed class SampleBuilder(Qwen2Tokenizer tokenizer, SampleBuilderOptions? options = null, IVideoFrameSource? videoSource = null)
{
    private readonly int _imgEndId = tokenizer.RequireTokenId(InternVLPrompt.ImageEndToken);
    private float[]? _dummyTile;

    /// <summary>The settings.</summary>
    public SampleBuilderOptions Options { get; } = options ?? new SampleBuilderOptions();

    /// <summary>The tokenizer.</summary>
    public Qwen2Tokenizer Tokenizer => tokenizer;

    /// <summary>Parses and assembles, reporting a bad record instead of throwing; null when skipped.</summary>
    /// <param name="line">Raw JSONL line.</param>
    /// <param name="spec">Its dataset.</param>
    /// <param name="report">Where skipped records go.</param>
    /// <param name="videoSeed">Seed of the random frame choice (derive it from the run seed, epoch and index for exact resume).</param>
    public TrainingSample? TryBuild(RawLine line, DatasetSpec spec, DataReport report, ulong videoSeed = 0)
    {
        try { return Build(DataRecord.Parse(line.Bytes, line.Location), spec, line.DatasetIndex, videoSeed); }
        catch (BadRecordException e) { report.Add(e.Kind, line.Location, e.Message); return null; }
    }

    /// <summary>Assembles one record; throws <see cref="BadRecordException"/>.</summary>
    public TrainingSample Build(DataRecord record, DatasetSpec spec, int datasetIndex = 0, ulong videoSeed = 0)
    {
        int maxPatch = spec.MaxDynamicPatch ?? Options.MaxDynamicPatch;
        var turns = record.Conversations.ToList();
        int firstHuman = turns.FindIndex(t => t.From == "human");
        if (record.Video != null) return BuildVideo(record, spec, turns, firstHuman, datasetIndex, videoSeed);
        if (record.Images.Count == 0)
        {
            var text = InternVLPreprocessor.Preprocess(turns, tokenizer, [], numImage: 0, textOnly: true,
                modelMaxLength: Options.MaxSeqLength, template: Options.Template);
            return new TrainingSample(ToLong(text.InputIds), ToLong(text.Labels), DummyTile(), 1, Options.ImageSize, [], [0],
                record.Source, datasetIndex);
        }

        int tags = turns.Where(t => t.From == "human").Sum(t => CountTags(t.Value));
        if (tags > record.Images.Count)   // a bad record of its own here; the official code would leave the extra tags as text
            throw new BadRecordException(BadRecordKind.ImageTagMismatch,
                $"{tags} <image> tag(s) in the human turns but {record.Images.Count} image(s)");
        // Single image: the official multi_modal_get_item prepends "<image>\n" to conversations[0] when that turn has none,
        // whatever its role. We do the same whenever the official sample survives: with a tag in a later human turn the
        // prepended one takes the image and the later one stays text; with a leading system turn the prepended tag stays
        // literal text in the system prompt. Only when no human turn has a tag and turn 0 is not a human turn would the
        // official sample fail its image count and be dropped; we put the tag in the first human turn instead.
        if (record.Images.Count == 1 && !turns[0].Value.Contains(InternVLPrompt.ImagePlaceholder, StringComparison.Ordinal))
        {
            int at = tags > 0 || turns[0].From == "human" ? 0 : firstHuman;
            if (at < 0) throw new BadRecordException(BadRecordKind.ImageTagMismatch, "an image but no human turn to hold it");
            turns[at] = turns[at] with { Value = InternVLPrompt.ImagePlaceholder + "\n" + turns[at].Value };
        }
        else if (tags < record.Images.Count)   // the official preprocess asserts current_image_idx == num_image
            throw new BadRecordException(BadRecordKind.ImageTagMismatch,
                $"{tags} <image> tag(s) in the human turns but {record.Images.Count} image(s)");

        int perImage = record.Images.Count == 1 ? maxPatch : InternVLImagePreprocessor.MaxNumPerImage(maxPatch, record.Images.Count);
        var tiles = new List<RgbImage>();
        var tilesPerImage = new int[record.Images.Count];
        for (int i = 0; i < record.Images.Count; i++)
        {
            var image = LoadImage(spec.ResolveMedia(record.Images[i]));
            var t = Options.DynamicImageSize
                ? InternVLImagePreprocessor.Tiles(image, Options.ImageSize, perImage, Options.MinDynamicPatch, Options.UseThumbnail)
                : [image.Width == Options.ImageSize && image.Height == Options.ImageSize ? image : image.Resize(Options.ImageSize, Options.ImageSize)];
            tilesPerImage[i] = t.Count;
            tiles.AddRange(t);
        }
        var s = Preprocess(turns, tilesPerImage.Select(n => n * Options.NumImageToken).ToList(), record.Images.Count);
        var pixels = ImageNormalizer.ToChwBatch(tiles, Options.Mean, Options.Std);
        return new TrainingSample(s.Ids, s.Labels, pixels, tiles.Count, Options.ImageSize, tilesPerImage,
            Enumerable.Repeat(1, tiles.Count).ToArray(), record.Source, datasetIndex);
    }

    private TrainingSample BuildVideo(DataRecord record, DatasetSpec spec, List<ConversationTurn> turns, int firstHuman, int datasetIndex, ulong seed)
    {
        string path = spec.ResolveMedia(record.Video!);
        if (!File.Exists(path)) throw new BadRecordException(BadRecordKind.MissingImage, $"video not found: {path}");
        if (videoSource == null) throw new BadRecordException(BadRecordKind.UnreadableVideo, "video record but no video frame source is configured");
        var frames = new List<RgbImage>();
        try
        {
            using var clip = videoSource.Open(path);
            var rng = new Rng(seed);
            int n = Options.MinNumFrame + rng.NextInt(Options.MaxNumFrame - Options.MinNumFrame + 1);
            foreach (int idx in RandomFrameIndices(n, clip.FrameCount, clip.Fps, record.Clip, rng)) frames.Add(clip.ReadFrame(idx));
        }
        catch (Exception e) when (e is not BadRecordException)
        {
            throw new BadRecordException(BadRecordKind.UnreadableVideo, $"cannot read video {path}: {e.Message}");
        }
        // The official video_get_item works on conversations[0]; with a leading system turn its frames land in the system
        // prompt and the sample is always dropped on its image count. We use the first human turn (the same turn otherwise).
        if (firstHuman < 0) throw new BadRecordException(BadRecordKind.ImageTagMismatch, "a video but no human turn to hold it");
        if (!turns[firstHuman].Value.Contains("<video>", StringComparison.Ordinal))
            turns[firstHuman] = turns[firstHuman] with { Value = "<video>\n" + turns[firstHuman].Value };
        string prefix = string.Concat(Enumerable.Range(0, frames.Count).Select(i => $"Frame-{i + 1}: <image>\n"));
        turns[firstHuman] = turns[firstHuman] with { Value = turns[firstHuman].Value.Replace("<video>\n", prefix, StringComparison.Ordinal) };
        // Each frame is one tile: the training transform is a single resize to S x S.
        var tiles = frames.Select(f => f.Width == Options.ImageSize && f.Height == Options.ImageSize ? f : f.Resize(Options.ImageSize, Options.ImageSize)).ToList();
        // No </img> count check for videos: the official video_get_item has none, so a video cut inside its frame tokens is
        // kept and the model forward's mismatch rule multiplies that micro-batch's loss by 0 (InternVLTraining.Loss).
        var s = Preprocess(turns, Enumerable.Repeat(Options.NumImageToken, tiles.Count).ToList(), tiles.Count, checkImageEnds: false);
        return new TrainingSample(s.Ids, s.Labels, ImageNormalizer.ToChwBatch(tiles, Options.Mean, Options.Std), tiles.Count, Options.ImageSize,
            Enumerable.Repeat(1, tiles.Count).ToArray(), Enumerable.Repeat(1, tiles.Count).ToArray(), record.Source, datasetIndex);
    }

    /// <summary>
    /// <c>get_frame_indices(sample='rand')</c> of the official dataset: <c>acc = min(n, vlen)</c>,
    /// <c>intervals = linspace(0, vlen, acc+1).astype(int)</c> (i·(vlen/acc) in double, truncated; the last one is vlen),
    /// one random index in <c>[a, b-1)</c> per interval; if any of those ranges is empty, a sorted random choice of acc distinct
    /// frames instead (the official <c>except</c> branch); then padded to n with the last index. With <c>clip</c> [start, end] s:
    /// <c>vlen = int((end-start)·fps)</c> from frame <c>int(start·fps)</c> (kept inside the video).
    /// </summary>
    public static int[] RandomFrameIndices(int n, int frameCount, double fps, (double Start, double End)? clip, Rng rng)
    {
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), "at least one frame");
        int first = 0, vlen = frameCount;
        if (clip is { } c && fps > 0)
        {
            first = Math.Clamp((int)(c.Start * fps), 0, Math.Max(0, frameCount - 1));
            vlen = Math.Min((int)((c.End - c.Start) * fps), frameCount - first);
        }
        if (vlen <= 0) throw new InvalidDataException("video has no frames");
        int acc = Math.Min(n, vlen);
        double step = (double)vlen / acc;
        var bounds = new int[acc + 1];
        for (int i = 0; i < acc; i++) bounds[i] = (int)(i * step);   // numpy linspace: arange * step, then astype(int)
        bounds[acc] = vlen;                                             // endpoint
        var picked = new int[acc];
        bool anyEmpty = false;
        for (int i = 0; i < acc; i++) anyEmpty |= bounds[i + 1] - 1 <= bounds[i];
        if (!anyEmpty)
            for (int i = 0; i < acc; i++) picked[i] = bounds[i] + rng.NextInt(bounds[i + 1] - 1 - bounds[i]);   // random.choice(range(a, b-1))
        else
        {
            var perm = Enumerable.Range(0, vlen).ToArray();             // np.random.permutation(vlen)[:acc], sorted
            for (int i = 0; i < acc; i++) { int j = i + rng.NextInt(vlen - i); (perm[i], perm[j]) = (perm[j], perm[i]); }
            Array.Copy(perm, picked, acc);
            Array.Sort(picked);
        }
        var result = new int[n];
        for (int i = 0; i < n; i++) result[i] = first + picked[Math.Min(i, acc - 1)];   // padded with the last frame
        return result;
    }

    // Single and multi-image samples: the official multi_modal_*_get_item assert that exactly num_image </img> ids survived
    // the max_seq_length truncation; a failing sample raises and __getitem__ retries another index. Here it is skipped and
    // reported (BadRecordKind.ImageTokensTruncated), which keeps the run deterministic.
    private (long[] Ids, long[] Labels) Preprocess(List<ConversationTurn> turns, List<int> tokenList, int numImage, bool checkImageEnds = true)
    {
        SupervisedSample s;
        try
        {
            s = InternVLPreprocessor.Preprocess(turns, tokenizer, tokenList, numImage, textOnly: false,
                modelMaxLength: Options.MaxSeqLength, template: Options.Template);
        }
        catch (ArgumentException e)   // e.g. "<video>" not followed by "\n": no frame tags (the official assert drops it)
        {
            throw new BadRecordException(BadRecordKind.ImageTagMismatch, e.Message);
        }
        int ends = s.InputIds.Count(id => id == _imgEndId);
        if (checkImageEnds && ends != numImage)
            throw new BadRecordException(BadRecordKind.ImageTokensTruncated,
                $"max_seq_length {Options.MaxSeqLength} truncation kept {ends} of {numImage} </img> token(s) (the official code drops such samples)");
        return (ToLong(s.InputIds), ToLong(s.Labels));
    }

    private static RgbImage LoadImage(string path)
    {
        if (!File.Exists(path)) throw new BadRecordException(BadRecordKind.MissingImage, $"image not found: {path}");
        try { return RgbImage.Load(path); }
        catch (Exception e) when (e is ImageDecodeException or InvalidDataException or NotSupportedException or IOException or ArgumentException)
        {
            throw new BadRecordException(BadRecordKind.UndecodableImage, $"cannot decode image {path}: {e.Message}");
        }
    }

    // Text-only samples carry one white 224x224 image tiled with max_num=1 (image_flags 0) so the ViT stays in the graph.
    private float[] DummyTile()
    {
        if (_dummyTile == null)
        {
            var white = new RgbImage(224, 224, Enumerable.Repeat((byte)255, 224 * 224 * 3).ToArray());
            _dummyTile = ImageNormalizer.ToChwBatch(InternVLImagePreprocessor.Tiles(white, Options.ImageSize, 1, 1, Options.UseThumbnail), Options.Mean, Options.Std);
        }
        return _dummyTile;
    }

    private static int CountTags(string s)
    {
        int count = 0;
        for (int at = s.IndexOf(InternVLPrompt.ImagePlaceholder, StringComparison.Ordinal); at >= 0;
             at = s.IndexOf(InternVLPrompt.ImagePlaceholder, at + InternVLPrompt.ImagePlaceholder.Length, StringComparison.Ordinal)) count++;
        return count;
    }

    private static long[] ToLong(int[] a) => Array.ConvertAll(a, x => (long)x);
}
