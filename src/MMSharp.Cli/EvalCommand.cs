using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using MMSharp.Engine;
using MMSharp.Generation;
using MMSharp.Text;
using MMSharp.Vision;

namespace MMSharp.Cli;

/// <summary>
/// <c>mmsharp eval --model DIR --data FILE.jsonl --out results.json</c>: answers every record of an InternVL JSONL test
/// set (question = first human turn, reference = first gpt turn) in left-padded greedy batches. Resumable: ids already
/// in the results file are skipped, and the file is rewritten atomically after every batch.
/// </summary>
internal static class EvalCommand
{
    static readonly Option<string> Data = new("--data") { Description = "InternVL JSONL records (id, image or video, conversations).", Required = true };
    static readonly Option<string> Out = new("--out") { Description = "Results json (a list of {id, prompt, prediction, reference}).", Required = true };
    static readonly Option<string?> ImageRoot = new("--image-root") { Description = "Directory that image/video paths are relative to (default: the JSONL's directory)." };
    static readonly Option<int> BatchSize = new("--batch-size") { Description = "Records generated together (left padding).", DefaultValueFactory = _ => 4 };

    public static Command Build(CliConsole io)
    {
        var cmd = new Command("eval", "Answer a JSONL test set in batches, resumably.");
        foreach (var o in new Option[] { ChatCommand.Model, Data, Out, ImageRoot, BatchSize, ChatCommand.MaxTiles, ChatCommand.MaxNewTokens, ChatCommand.NumSegments, ChatCommand.NoMmap })
            cmd.Options.Add(o);
        cmd.SetAction(parse => io.Guard(parse, () => Run(parse, io)));
        return cmd;
    }

    /// <summary>One test record: its id as written in the JSONL, media paths, question and reference answer.</summary>
    internal sealed record EvalRecord(JsonNode Id, string[] Images, string? Video, string Question, string? Reference)
    {
        public string Key => Id.ToJsonString();
    }

    internal static List<EvalRecord> ReadRecords(string path, string root)
    {
        if (!File.Exists(path)) throw new CliException($"data file '{path}' does not exist");
        var list = new List<EvalRecord>();
        int lineNo = 0;
        foreach (string line in File.ReadLines(path))
        {
            lineNo++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonNode? n;
            try { n = JsonNode.Parse(line); }
            catch (JsonException e) { throw new CliException($"{path}:{lineNo}: not valid JSON ({e.Message})"); }
            if (n is not JsonObject o) throw new CliException($"{path}:{lineNo}: a record must be a JSON object");
            var id = o["id"]?.DeepClone() ?? JsonValue.Create(lineNo - 1);
            string[] images = o["image"] switch
            {
                null => [],
                JsonArray a => a.Select(x => x!.GetValue<string>()).ToArray(),
                var x => [x.GetValue<string>()],
            };
            string? video = o["video"]?.GetValue<string>();
            if (o["conversations"] is not JsonArray conv) throw new CliException($"{path}:{lineNo}: record {id.ToJsonString()} has no conversations");
            string? Turn(string from) => conv.OfType<JsonObject>().FirstOrDefault(t => t["from"]?.GetValue<string>() == from)?["value"]?.GetValue<string>();
            string question = Turn("human") ?? throw new CliException($"{path}:{lineNo}: record {id.ToJsonString()} has no human turn");
            string Abs(string p) => Path.IsPathRooted(p) ? p : Path.Combine(root, p);
            list.Add(new EvalRecord(id, images.Select(Abs).ToArray(), video != null ? Abs(video) : null, question, Turn("gpt")));
        }
        return list;
    }

    static int Run(ParseResult p, CliConsole io)
    {
        string dataPath = p.GetValue(Data)!, outPath = p.GetValue(Out)!;
        string root = p.GetValue(ImageRoot) ?? Path.GetDirectoryName(Path.GetFullPath(dataPath))!;
        int batchSize = p.GetValue(BatchSize);
        if (batchSize < 1) throw new CliException($"--batch-size must be >= 1, got {batchSize}");
        var records = ReadRecords(dataPath, root);
        var results = ReadResults(outPath);
        var done = results.Select(r => r!["id"]!.ToJsonString()).ToHashSet();
        var todo = records.Where(r => !done.Contains(r.Key)).ToList();
        io.Err.WriteLine($"eval: {records.Count} records, {records.Count - todo.Count} already in {outPath}, {todo.Count} to answer");
        if (todo.Count == 0) return 0;

        using var loaded = LoadedModel.Open(p.GetValue(ChatCommand.Model)!, mapped: !p.GetValue(ChatCommand.NoMmap));
        var gen = loaded.Generator;
        var cfg = loaded.Model.Config;
        int maxTiles = p.GetValue(ChatCommand.MaxTiles) ?? cfg.MaxDynamicPatch;
        int maxNew = p.GetValue(ChatCommand.MaxNewTokens);
        int padId = loaded.Tokenizer.PadTokenId ?? loaded.Tokenizer.TokenToId("<|endoftext|>") ?? 0;
        var progress = new ProgressBar(io.Err, records.Count, records.Count - todo.Count);
        using var features = new FeatureCache(loaded.Model, FeatureCacheBytes);
        for (int start = 0; start < todo.Count; start += batchSize)
        {
            var batch = todo.Skip(start).Take(batchSize).ToList();
            var prompts = new List<IReadOnlyList<int>>();
            var batchFeatures = new List<Tensor>();
            foreach (var r in batch)
            {
                var (question, f) = Prepare(r, maxTiles, p.GetValue(ChatCommand.NumSegments), cfg.ImageSize, features);
                if (f != null) batchFeatures.Add(f);
                string text = InternVLPrompt.BuildChatQuery(gen.Template, question.Text, question.NumPatches, cfg.NumImageToken, null, cfg.SystemMessage);
                prompts.Add(gen.Tokenizer.Encode(text));
            }
            GenerationResult[] answers;
            if (batchFeatures.Count <= 1) answers = gen.GenerateBatch(prompts, null, maxNew, padId, visionFeatures: batchFeatures.FirstOrDefault());
            else
                using (var all = Ops.Concat(batchFeatures.ToArray(), 0))
                    answers = gen.GenerateBatch(prompts, null, maxNew, padId, visionFeatures: all);
            features.Trim();                                                     // nothing of this batch is in use any more
            for (int i = 0; i < batch.Count; i++)
                results.Add(new JsonObject
                {
                    ["id"] = batch[i].Id.DeepClone(),
                    ["prompt"] = batch[i].Question,
                    ["prediction"] = answers[i].Text,
                    ["reference"] = batch[i].Reference,
                });
            WriteAtomically(outPath, results);
            progress.Advance(batch.Count);
        }
        progress.Finish();
        io.Err.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"eval: answered {todo.Count} records in {ProgressBar.Clock(progress.Elapsed)} ({progress.Elapsed.TotalSeconds / todo.Count:F2} s each); " +
            $"vision: {features.TilesEncoded} tiles encoded, {features.TilesReused} reused; results in {outPath}"));
        return 0;
    }

    /// <summary>Vision features kept for records about the same media (a 448-px tile of InternVL3-1B is 0.9 MB).</summary>
    const long FeatureCacheBytes = 512L << 20;

    /// <summary>The question with image placeholders (as batch_chat / the model card) and tiles per image, and the record's
    /// vision features from <paramref name="cache"/> (decoded and encoded there the first time its media come up).</summary>
    static ((string Text, int[] NumPatches) Question, Tensor? Features) Prepare(EvalRecord r, int maxTiles, int numSegments, int imageSize, FeatureCache cache)
    {
        string q = r.Question;
        if (r.Video != null)
        {
            var (f, frames) = cache.Get($"video|{numSegments}|{Path.GetFullPath(r.Video)}", () =>
            {
                var v = MediaLoader.LoadVideo(r.Video, numSegments, 1, imageSize);
                return (v.PixelValues, v.NumPatches);
            });
            if (!q.Contains(InternVLPrompt.ImagePlaceholder, StringComparison.Ordinal)) q = InternVLPrompt.VideoPrefix(frames.Length) + q;
            return ((q, frames), f);
        }
        if (r.Images.Length == 0) return ((q, []), null);
        foreach (var path in r.Images) if (!File.Exists(path)) throw new CliException($"record {r.Key}: image '{path}' does not exist");
        int perImage = r.Images.Length > 1 ? InternVLImagePreprocessor.MaxNumPerImage(maxTiles, r.Images.Length) : maxTiles;
        var (features, numPatches) = cache.Get($"images|{perImage}|{string.Join("|", r.Images.Select(Path.GetFullPath))}", () =>
        {
            var pv = InternVLImagePreprocessor.LoadImages(r.Images, out var n, imageSize, perImage);
            return (pv, n);
        });
        if (r.Images.Length > 1 && !q.Contains(InternVLPrompt.ImagePlaceholder, StringComparison.Ordinal))
            q = InternVLPrompt.MultiImagePrefix(r.Images.Length) + q;
        return ((q, numPatches), features);
    }

    static JsonArray ReadResults(string path)
    {
        if (!File.Exists(path)) return [];
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) as JsonArray
                ?? throw new CliException($"results file '{path}' is not a JSON list; move it away or pick another --out");
        }
        catch (JsonException e) { throw new CliException($"results file '{path}' is not valid JSON ({e.Message}); move it away or pick another --out"); }
    }

    /// <summary>Never a half-written file: temporary file, fsync, rename over the target.</summary>
    static void WriteAtomically(string path, JsonArray results) =>
        MMSharp.Engine.IO.DurableFile.WriteAllText(path, results.ToJsonString(
            new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
}

/// <summary>
/// A one-line text progress bar on stderr, redrawn in place: <c>[#######.............]  35/100  2:05 elapsed, ETA 3:52</c>.
/// The estimate extrapolates the records answered in this run (records already in the results file took no time).
/// </summary>
internal sealed class ProgressBar(TextWriter err, int total, int done)
{
    readonly int _start = done;
    readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();
    int _done = done;

    public TimeSpan Elapsed => _clock.Elapsed;

    public void Advance(int n)
    {
        _done += n;
        const int width = 30;
        int filled = total == 0 ? width : (int)((long)_done * width / total);
        var elapsed = _clock.Elapsed;
        string eta = _done > _start && _done < total ? ", ETA " + Clock(elapsed * ((double)(total - _done) / (_done - _start))) : "";
        err.Write($"\r[{new string('#', filled)}{new string('.', width - filled)}] {_done}/{total}  {Clock(elapsed)} elapsed{eta}   ");
        err.Flush();
    }

    public void Finish() => err.WriteLine();

    /// <summary>m:ss, or h:mm:ss from an hour on.</summary>
    internal static string Clock(TimeSpan t) =>
        t.TotalHours >= 1 ? $"{(int)t.TotalHours}:{t.Minutes:00}:{t.Seconds:00}" : $"{(int)t.TotalMinutes}:{t.Seconds:00}";
}
