using System.CommandLine;
using MMSharp.Engine;
using MMSharp.Generation;

namespace MMSharp.Cli;

/// <summary>
/// <c>mmsharp chat</c>: one answer for <c>--prompt</c>, or an interactive multi-turn session
/// (<c>/image PATH</c>, <c>/reset</c>, <c>/exit</c>), the answer streamed as it is generated.
/// </summary>
internal static class ChatCommand
{
    internal static readonly Option<string> Model = new("--model") { Description = "InternVL checkpoint directory (config.json, safetensors, tokenizer files).", Required = true };
    internal static readonly Option<string[]> Images = new("--image") { Description = "Image file (PNG/JPEG); repeat for several images." };
    internal static readonly Option<string?> Video = new("--video") { Description = "Video file (read with ffmpeg)." };
    internal static readonly Option<int> NumSegments = new("--num-segments") { Description = "Frames sampled from --video.", DefaultValueFactory = _ => 8 };
    internal static readonly Option<string?> Prompt = new("--prompt") { Description = "Question; without it an interactive session starts." };
    internal static readonly Option<int?> MaxTiles = new("--max-tiles") { Description = "Tiles per image at most (default: config max_dynamic_patch; 1 per video frame)." };
    internal static readonly Option<int> MaxNewTokens = new("--max-new-tokens") { Description = "Tokens to generate at most.", DefaultValueFactory = _ => 1024 };
    internal static readonly Option<double> Temperature = new("--temperature") { Description = "0 = greedy.", DefaultValueFactory = _ => 0.0 };
    internal static readonly Option<double> TopP = new("--top-p") { Description = "Nucleus sampling mass.", DefaultValueFactory = _ => 1.0 };
    internal static readonly Option<int?> TopK = new("--top-k") { Description = "Sample among the k most likely tokens (default 50 as HF; 0 = all)." };
    internal static readonly Option<ulong?> Seed = new("--seed") { Description = "Seed of the sampler." };
    internal static readonly Option<string?> DumpTensors = new("--dump-tensors") { Description = "Write the first forward's tensors (.npy) to this directory." };
    internal static readonly Option<bool> Stats = new("--stats") { Description = "Print timings on stderr: the load, then per answer the prompt's prefill (vision encoder included) and the decoding speed in tokens/s." };
    internal static readonly Option<bool> NoPrefixCache = new("--no-prefix-cache") { Description = "Recompute the whole conversation (history and every image) each turn, as the official model.chat() does, instead of keeping the KV cache between turns (slower; answers can differ only by float rounding)." };
    internal static readonly Option<bool> NoMmap = new("--no-mmap") { Description = "Copy the weights into memory on huge pages instead of memory-mapping the safetensors: faster decoding when the files were written recently (README: Inference); costs the model size in RAM and a copy at load." };

    public static Command Build(CliConsole io)
    {
        var cmd = new Command("chat", "Ask an InternVL model about images, a video or plain text.");
        foreach (var o in new Option[] { Model, Images, Video, NumSegments, Prompt, MaxTiles, MaxNewTokens, Temperature, TopP, TopK, Seed, DumpTensors, Stats, NoPrefixCache, NoMmap })
            cmd.Options.Add(o);
        cmd.SetAction(parse => io.Guard(parse, () => Run(parse, io)));
        return cmd;
    }

    static int Run(ParseResult p, CliConsole io)
    {
        var decoding = new Decoding(p.GetValue(MaxNewTokens), p.GetValue(Temperature), p.GetValue(TopP), p.GetValue(TopK), p.GetValue(Seed));
        decoding.ToGenerationConfig();   // bad settings fail before the model loads
        var images = p.GetValue(Images) ?? [];
        string? video = p.GetValue(Video);
        foreach (var f in images.Append(video).OfType<string>())
            if (!File.Exists(f)) throw new CliException($"file '{f}' does not exist");
        using var loaded = LoadedModel.Open(p.GetValue(Model)!, mapped: !p.GetValue(NoMmap));
        bool stats = p.GetValue(Stats);
        if (stats) io.Err.WriteLine(StatsLine.Load(loaded));
        var chooser = decoding.CreateChooser(loaded.Model.Config.Llm.VocabSize);
        using var session = new ChatSession(loaded.Generator, p.GetValue(MaxTiles), reusePrefix: !p.GetValue(NoPrefixCache));
        string? dump = p.GetValue(DumpTensors);

        foreach (var f in images) session.AddImage(f);
        if (video != null)
        {
            var frames = MediaLoader.LoadVideo(video, p.GetValue(NumSegments), p.GetValue(MaxTiles) ?? 1, loaded.Model.Config.ImageSize);
            using (frames.PixelValues) session.AddVideoFrames(frames.PixelValues, frames.NumPatches);
            if (dump != null) TensorDump.WriteFrameIndices(dump, frames.FrameIndices);
        }

        string? prompt = p.GetValue(Prompt);
        if (prompt != null)
        {
            Answer(session, prompt, decoding.MaxNewTokens, chooser, io, dump, stats);
            return 0;
        }
        io.Err.WriteLine("Interactive chat: type a question; /image PATH attaches an image, /reset starts over, /exit quits.");
        while (true)
        {
            io.Out.Write("> ");
            io.Out.Flush();
            string? line = io.In.ReadLine();
            if (line == null) return 0;
            line = line.Trim();
            if (line.Length == 0) continue;
            if (line == "/exit" || line == "/quit") return 0;
            if (line == "/reset") { session.Reset(); io.Err.WriteLine("(conversation and images cleared)"); continue; }
            if (line.StartsWith("/image", StringComparison.Ordinal))
            {
                string path = line["/image".Length..].Trim().Trim('"');
                try { session.AddImage(path); io.Err.WriteLine($"(attached {path}: {session.NumPatchesList[^1]} tiles)"); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException) { io.Err.WriteLine("error: " + e.Message); }
                continue;
            }
            if (line.StartsWith('/')) { io.Err.WriteLine($"unknown command {line.Split(' ')[0]} (known: /image PATH, /reset, /exit)"); continue; }
            try { Answer(session, line, decoding.MaxNewTokens, chooser, io, dump, stats); }
            catch (ContextLengthException e) { io.Err.WriteLine("error: " + e.Message); }
            dump = null;   // only the first forward is dumped
        }
    }

    /// <summary>One answer streamed to stdout (chat and infer): the first forward's tensors into <paramref name="dump"/> when
    /// given, the timings on stderr with <paramref name="stats"/>.</summary>
    internal static void Answer(ChatSession session, string question, int maxNewTokens, ITokenChooser chooser, CliConsole io, string? dump, bool stats)
    {
        var result = session.Ask(question, maxNewTokens, chooser, piece => { io.Out.Write(piece); io.Out.Flush(); },
            dump == null ? null : (ids, pv) => TensorDump.WritePrompt(dump, session.Generator.Model, ids, pv));
        io.Out.WriteLine();
        io.Out.Flush();
        if (dump != null) TensorDump.WriteGenerated(dump, result.Tokens);
        if (stats) io.Err.WriteLine(StatsLine.Answer(result));
    }
}
