using MMSharp.Engine;
using MMSharp.Generation;
using MMSharp.Models.InternVL;
using MMSharp.Text;

namespace MMSharp.Cli;

/// <summary>A checkpoint directory opened for generation: model, its tokenizer, its template and a <see cref="Generator"/>.</summary>
internal sealed class LoadedModel : IDisposable
{
    public InternVLChatModel Model { get; }
    public Qwen2Tokenizer Tokenizer { get; }
    public Generator Generator { get; }
    public string Directory { get; }
    /// <summary>Whether the weights are read from the memory-mapped safetensors (false: copied into memory).</summary>
    public bool Mapped { get; }
    /// <summary>Wall time of <see cref="Open"/>: tokenizer, config and weights.</summary>
    public double LoadSeconds { get; }

    LoadedModel(InternVLChatModel model, Qwen2Tokenizer tokenizer, Generator generator, string directory, bool mapped, double loadSeconds)
    {
        Model = model;
        Tokenizer = tokenizer;
        Generator = generator;
        Directory = directory;
        Mapped = mapped;
        LoadSeconds = loadSeconds;
    }

    /// <summary>Bytes of the model's parameters in their stored dtypes (tied ones counted once).</summary>
    public long WeightBytes => Model.Parameters().Sum(p => p.NumEl * p.DType.SizeOf());

    /// <summary>
    /// Loads <paramref name="directory"/> (config.json, safetensors, tokenizer files; the tokenizer may come from
    /// <paramref name="tokenizerDirectory"/>). The <c>&lt;IMG_CONTEXT&gt;</c> id is resolved by the tokenizer. Generation stops
    /// at the template's stop token and <paramref name="extraStopIds"/>. With <paramref name="mapped"/> false the weights are
    /// copied into memory (see <see cref="InternVLChatModel.FromPretrained"/>).
    /// </summary>
    public static LoadedModel Open(string directory, string? tokenizerDirectory = null, string? templateName = null,
        IEnumerable<int>? extraStopIds = null, bool mapped = true)
    {
        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        if (!System.IO.Directory.Exists(directory)) throw new CliException($"model directory '{directory}' does not exist");
        if (!File.Exists(Path.Combine(directory, "config.json"))) throw new CliException($"model directory '{directory}' has no config.json");
        string tokDir = tokenizerDirectory ?? directory;
        if (!System.IO.Directory.Exists(tokDir)) throw new CliException($"tokenizer directory '{tokDir}' does not exist");
        var tokenizer = Qwen2Tokenizer.FromDirectory(tokDir);
        var model = InternVLChatModel.FromPretrained(directory, tokenizer.TokenToId(InternVLPrompt.ImageContextToken), mapped: mapped);
        try
        {
            var template = ChatTemplate.Get(templateName ?? model.Config.Template ?? "internvl2_5");
            return new LoadedModel(model, tokenizer, new Generator(model, tokenizer, template, extraStopIds), directory, mapped,
                System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    public void Dispose() => Model.Dispose();
}
