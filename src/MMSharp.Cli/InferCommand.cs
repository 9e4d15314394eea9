using System.CommandLine;
using System.Text.Json;
using MMSharp.Generation;

namespace MMSharp.Cli;

/// <summary>
/// <c>mmsharp infer --config FILE.json</c>: a chat driven by a MindSpeed-MM style inference json (schema in the README,
/// "Inference json"). Every prompt is answered on its own (a fresh conversation) about the same media, which are read and
/// encoded once.
/// </summary>
internal static class InferCommand
{
    static readonly Option<string> ConfigFile = new("--config") { Description = "Inference json (infer_data_type, file_path, prompts, from_pretrained, generation_config).", Required = true };

    public static Command Build(CliConsole io)
    {
        var cmd = new Command("infer", "Run inference described by a MindSpeed-MM style inference json.");
        cmd.Options.Add(ConfigFile);
        cmd.SetAction(parse => io.Guard(parse, () => Run(parse.GetValue(ConfigFile)!, io)));
        return cmd;
    }

    /// <summary>The fields of the inference json this command reads (others, e.g. MindSpeed's model blocks, are ignored).</summary>
    internal sealed record InferConfig(string InferDataType, string[] FilePaths, string[] Prompts, string FromPretrained,
        string? TokenizerPath, string? Template, int NumSegments, int? MaxTiles, GenerationConfig Generation, ulong Seed, string? DumpTensors,
        bool NoMmap = false, bool Stats = false);

    internal static InferConfig Parse(string path)
    {
        if (!File.Exists(path)) throw new CliException($"inference json '{path}' does not exist");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllText(path), new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true }); }
        catch (JsonException e) { throw new CliException($"{path}: not valid JSON ({e.Message})"); }
        using (doc)
        {
            var r = doc.RootElement;
            string baseDir = Path.GetDirectoryName(Path.GetFullPath(path))!;
            string Resolve(string p) => Path.IsPathRooted(p) || File.Exists(p) || Directory.Exists(p) ? p : Path.Combine(baseDir, p);
            string type = Str(r, "infer_data_type", path) ?? "image";
            if (type is not ("image" or "video" or "text"))
                throw new CliException($"{path}: infer_data_type must be \"image\", \"video\" or \"text\", got \"{type}\"");
            var files = Strings(r, "file_path", path).Select(Resolve).ToArray();
            if (type != "text" && files.Length == 0) throw new CliException($"{path}: infer_data_type \"{type}\" needs file_path");
            if (type == "video" && files.Length != 1) throw new CliException($"{path}: infer_data_type \"video\" takes one file_path, got {files.Length}");
            var prompts = Strings(r, "prompts", path);
            if (prompts.Length == 0) throw new CliException($"{path}: prompts is missing or empty");
            string model = Str(r, "from_pretrained", path) ?? throw new CliException($"{path}: from_pretrained (the Hugging Face checkpoint directory) is missing");
            string? tok = r.TryGetProperty("tokenizer", out var t) && t.ValueKind == JsonValueKind.Object ? Str(t, "from_pretrained", path) : null;
            GenerationConfig generation;
            try
            {
                generation = r.TryGetProperty("generation_config", out var g) && g.ValueKind == JsonValueKind.Object
                    ? GenerationConfig.Parse(g.GetRawText(), GenerationConfig.InternVLChat with { EosTokenIds = [] })
                    : GenerationConfig.InternVLChat with { EosTokenIds = [] };
                generation.Validate();
            }
            catch (ArgumentException e) { throw new CliException($"{path}: generation_config: {e.Message}"); }
            ulong seed = r.TryGetProperty("generation_config", out var gs) && Int(gs, "seed") is int sd ? (ulong)sd : 0;
            return new InferConfig(type, files, prompts, Resolve(model), tok != null ? Resolve(tok) : null, Str(r, "template", path),
                Int(r, "num_segments") ?? 8, Int(r, "max_num") ?? Int(r, "max_tiles"), generation, seed,
                Str(r, "dump_tensors", path) is string d ? Resolve(d) : null, Bool(r, "no_mmap", path) ?? false,
                Bool(r, "stats", path) ?? false);
        }
    }

    static int Run(string path, CliConsole io)
    {
        var c = Parse(path);
        using var loaded = LoadedModel.Open(c.FromPretrained, c.TokenizerPath, c.Template, c.Generation.EosTokenIds, mapped: !c.NoMmap);
        if (c.Stats) io.Err.WriteLine(StatsLine.Load(loaded));
        var chooser = SamplerChooser.For(c.Generation, loaded.Model.Config.Llm.VocabSize, c.Seed);
        string? dump = c.DumpTensors;
        // one session for all prompts: the media are read once, and each prompt's new conversation reuses the cached
        // start its prompt shares with the previous one (system message and images)
        using var session = new ChatSession(loaded.Generator, c.MaxTiles);
        if (c.InferDataType == "image") foreach (var f in c.FilePaths) session.AddImage(f);
        else if (c.InferDataType == "video")
        {
            var frames = MediaLoader.LoadVideo(c.FilePaths[0], c.NumSegments, c.MaxTiles ?? 1, loaded.Model.Config.ImageSize);
            using (frames.PixelValues) session.AddVideoFrames(frames.PixelValues, frames.NumPatches);
            if (dump != null) TensorDump.WriteFrameIndices(dump, frames.FrameIndices);
        }
        for (int i = 0; i < c.Prompts.Length; i++)
        {
            session.NewConversation();
            if (c.Prompts.Length > 1) io.Out.WriteLine($"[{i + 1}/{c.Prompts.Length}] {c.Prompts[i]}");
            ChatCommand.Answer(session, c.Prompts[i], c.Generation.MaxNewTokens, chooser, io, dump, c.Stats);
            dump = null;                                                         // only the first forward is dumped
        }
        return 0;
    }

    static string? Str(JsonElement e, string name, string path) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null
            ? v.ValueKind == JsonValueKind.String ? v.GetString() : throw new CliException($"{path}: {name} must be a string")
            : null;

    static string[] Strings(JsonElement e, string name, string path)
    {
        if (!e.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return [];
        if (v.ValueKind == JsonValueKind.String) return [v.GetString()!];
        if (v.ValueKind == JsonValueKind.Array && v.EnumerateArray().All(x => x.ValueKind == JsonValueKind.String))
            return v.EnumerateArray().Select(x => x.GetString()!).ToArray();
        throw new CliException($"{path}: {name} must be a string or a list of strings");
    }

    static bool? Bool(JsonElement e, string name, string path)
    {
        if (!e.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind is JsonValueKind.True or JsonValueKind.False) return v.GetBoolean();
        throw new CliException($"{path}: {name} must be true or false");
    }

    static int? Int(JsonElement e, string name) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt32() : null;

    }
