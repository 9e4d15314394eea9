using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using MMSharp.Engine;
using MMSharp.Engine.IO;

namespace MMSharp.Training;

/// <summary>What one training checkpoint holds.</summary>
public sealed class CheckpointContent
{
    /// <summary>The number of optimizer steps completed.</summary>
    public required long Iteration { get; init; }
    /// <summary>Model tensors under their HF names (all, or only the trainable ones).</summary>
    public required IEnumerable<KeyValuePair<string, Tensor>> Model { get; init; }
    /// <summary>Saved unless null (<c>--no-save-optim</c>).</summary>
    public AdamW? Optimizer { get; init; }
    /// <summary><see cref="Rng.Default"/>'s state (and any other generator the caller needs).</summary>
    public ulong[]? RngState { get; init; }
    /// <summary>Opaque position of the data loader (epoch, index, shuffling state...).</summary>
    public JsonNode? DataState { get; init; }
    /// <summary>The full run configuration.</summary>
    public JsonNode? Config { get; init; }
    /// <summary>Anything else the trainer needs to continue exactly (elapsed time, guard counters...).</summary>
    public JsonObject? TrainerState { get; init; }
}

/// <summary>A checkpoint found on disk and checked complete.</summary>
public sealed class LoadedCheckpoint
{
    public required long Iteration { get; init; }
    public required string Directory { get; init; }
    /// <summary>Directory or file to open with <see cref="CheckpointReader.Open"/>.</summary>
    public required string ModelPath { get; init; }
    /// <summary>null when the checkpoint was saved without optimizer state.</summary>
    public string? OptimizerPath { get; init; }
    public ulong[]? RngState { get; init; }
    public JsonNode? DataState { get; init; }
    public JsonNode? Config { get; init; }
    public JsonObject? TrainerState { get; init; }
}

/// <summary>
/// Megatron-style checkpoint directories: <c>OUTPUT/iter_0000100/</c> and <c>OUTPUT/latest_checkpointed_iteration.txt</c>.
/// </summary>
/// <remarks>
/// A checkpoint directory holds <c>model.safetensors</c> (or HF shards with an index), <c>optimizer.safetensors</c>
/// (unless saved without), <c>run_config.json</c>, and last <c>trainer_state.json</c>, which lists every file of the
/// checkpoint with its size.
/// Crash safety: everything is written into <c>OUTPUT/.tmp_iter_0000100/</c> (each file fsynced), the directory is
/// fsynced and renamed to <c>iter_0000100</c>, the output directory is fsynced, and only then is
/// <c>latest_checkpointed_iteration.txt</c> replaced through a temporary file and a rename. A kill at any moment leaves
/// the previous "latest" complete and pointed to; leftover <c>.tmp_*</c> directories are ignored by loading and removed
/// by the next save. Old checkpoints beyond <see cref="SaveTotalLimit"/> are deleted only after "latest" moved on.
/// </remarks>
public sealed class CheckpointManager
{
    public const string LatestFileName = "latest_checkpointed_iteration.txt";
    public const string TrainerStateFileName = "trainer_state.json";
    public const string RunConfigFileName = "run_config.json";
    public const string OptimizerFileName = "optimizer.safetensors";
    const string TmpPrefix = ".tmp_";

    /// <summary>Largest model shard written (HF's default 5 GB).</summary>
    public long MaxShardBytes { get; init; } = 5_000_000_000;

    public string OutputDirectory { get; }

    /// <summary>Keep at most this many checkpoint directories (0 = keep all); the newest is never deleted.</summary>
    public int SaveTotalLimit { get; }

    /// <summary>Test hook: called with each file's path after it is complete inside the temporary directory.</summary>
    internal Action<string>? AfterFileWritten { get; set; }

    /// <summary>Test hook: called after the checkpoint directory got its final name, before "latest" points to it.</summary>
    internal Action? BeforeLatestUpdated { get; set; }

    public CheckpointManager(string outputDirectory, int saveTotalLimit = 0)
    {
        if (saveTotalLimit < 0) throw new ArgumentOutOfRangeException(nameof(saveTotalLimit));
        OutputDirectory = Path.GetFullPath(outputDirectory);
        SaveTotalLimit = saveTotalLimit;
    }

    public static string IterationDirectoryName(long iteration) => $"iter_{iteration:D7}";

    public string IterationDirectory(long iteration) => Path.Combine(OutputDirectory, IterationDirectoryName(iteration));

    // ---------------------------------------------------------------- save

    /// <summary>Writes the checkpoint atomically, makes it "latest", then prunes old ones. Returns its directory.</summary>
    public string Save(CheckpointContent c)
    {
        if (c.Iteration < 0) throw new ArgumentOutOfRangeException(nameof(c), "iteration must be non-negative");
        Directory.CreateDirectory(OutputDirectory);
        foreach (var stale in Directory.GetDirectories(OutputDirectory, TmpPrefix + "*")) Directory.Delete(stale, recursive: true);

        string name = IterationDirectoryName(c.Iteration);
        string tmp = Path.Combine(OutputDirectory, TmpPrefix + name);
        Directory.CreateDirectory(tmp);

        var files = new List<string>();
        void Done(string path)
        {
            files.Add(Path.GetFileName(path));
            AfterFileWritten?.Invoke(path);
        }

        foreach (var f in SafeTensorsWriter.WriteSharded(tmp, c.Model, MaxShardBytes, new Dictionary<string, string> { ["format"] = "pt" }))
            Done(f);
        if (c.Optimizer != null)
        {
            string opt = Path.Combine(tmp, OptimizerFileName);
            c.Optimizer.Save(opt);
            Done(opt);
        }
        string cfg = Path.Combine(tmp, RunConfigFileName);
        DurableFile.WriteAllText(cfg, (c.Config ?? new JsonObject()).ToJsonString(Indented));
        Done(cfg);

        var state = new JsonObject
        {
            ["iteration"] = c.Iteration,
            ["rng_state"] = c.RngState == null ? null : new JsonArray(c.RngState.Select(w => (JsonNode)w.ToString("x16")).ToArray()),
            ["data_state"] = c.DataState?.DeepClone(),
            ["trainer"] = c.TrainerState?.DeepClone(),
            ["optimizer"] = c.Optimizer != null,
            ["files"] = new JsonObject(files.Select(f => KeyValuePair.Create(f, (JsonNode?)new FileInfo(Path.Combine(tmp, f)).Length))),
        };
        string statePath = Path.Combine(tmp, TrainerStateFileName);
        DurableFile.WriteAllText(statePath, state.ToJsonString(Indented)); // last: its presence marks the set complete
        AfterFileWritten?.Invoke(statePath);
        DurableFile.SyncDirectory(tmp);

        string final = Path.Combine(OutputDirectory, name);
        if (Directory.Exists(final))
        {
            // Re-saving an iteration (e.g. after a resume): "latest" never points here at this moment unless it is this
            // very iteration, in which case the window without it is one rename long.
            string old = Path.Combine(OutputDirectory, TmpPrefix + "old_" + name);
            Directory.Move(final, old);
            Directory.Move(tmp, final);
            Directory.Delete(old, recursive: true);
        }
        else Directory.Move(tmp, final);
        DurableFile.SyncDirectory(OutputDirectory);
        BeforeLatestUpdated?.Invoke();

        DurableFile.WriteAllText(Path.Combine(OutputDirectory, LatestFileName), c.Iteration.ToString(CultureInfo.InvariantCulture) + "\n");
        Prune(c.Iteration);
        return final;
    }

    static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>Iterations that have a checkpoint directory (complete or not), ascending.</summary>
    public List<long> ListIterations()
    {
        var list = new List<long>();
        if (!Directory.Exists(OutputDirectory)) return list;
        foreach (var d in Directory.GetDirectories(OutputDirectory, "iter_*"))
            if (long.TryParse(Path.GetFileName(d)["iter_".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out long it))
                list.Add(it);
        list.Sort();
        return list;
    }

    void Prune(long latest)
    {
        if (SaveTotalLimit <= 0) return;
        var its = ListIterations();
        var keep = its.OrderByDescending(x => x).Take(SaveTotalLimit).Append(latest).ToHashSet();
        foreach (var it in its)
            if (!keep.Contains(it)) Directory.Delete(IterationDirectory(it), recursive: true);
    }

    // ---------------------------------------------------------------- load

    /// <summary>The iteration named by <c>latest_checkpointed_iteration.txt</c>, or null when there is none.</summary>
    public long? LatestIteration()
    {
        string path = Path.Combine(OutputDirectory, LatestFileName);
        if (!File.Exists(path)) return null;
        string text = File.ReadAllText(path).Trim();
        if (!long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long it))
            throw new InvalidDataException($"{path}: expected an iteration number, found '{text}'");
        return it;
    }

    /// <summary>
    /// Finds the checkpoint of <paramref name="iteration"/> (default: latest) and checks that every file it lists is
    /// present with its size. Throws <see cref="FileNotFoundException"/> naming the first missing file.
    /// </summary>
    public LoadedCheckpoint Load(long? iteration = null)
    {
        long it = iteration ?? LatestIteration()
            ?? throw new FileNotFoundException($"{OutputDirectory}: no {LatestFileName}; nothing to resume from", Path.Combine(OutputDirectory, LatestFileName));
        string dir = IterationDirectory(it);
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"checkpoint directory {dir} (iteration {it}) is missing");
        string statePath = Path.Combine(dir, TrainerStateFileName);
        if (!File.Exists(statePath)) throw new FileNotFoundException($"checkpoint {dir} is incomplete: {TrainerStateFileName} is missing", statePath);
        JsonObject state;
        try { state = JsonNode.Parse(File.ReadAllText(statePath))!.AsObject(); }
        catch (Exception e) when (e is JsonException or InvalidOperationException or NullReferenceException)
        {
            throw new InvalidDataException($"checkpoint {statePath} is not valid JSON: {e.Message}", e);
        }
        if (state["files"] is not JsonObject files) throw new InvalidDataException($"checkpoint {statePath} lists no files");
        foreach (var (file, size) in files)
        {
            string p = Path.Combine(dir, file);
            if (!File.Exists(p)) throw new FileNotFoundException($"checkpoint {dir} is incomplete: {file} is missing", p);
            long expect = size!.GetValue<long>();
            long actual = new FileInfo(p).Length;
            if (actual != expect) throw new InvalidDataException($"checkpoint {dir}: {file} has {actual} bytes, {TrainerStateFileName} says {expect}");
        }
        long stored = state["iteration"]!.GetValue<long>();
        if (stored != it) throw new InvalidDataException($"checkpoint {dir} says iteration {stored}");
        string index = Path.Combine(dir, "model.safetensors.index.json");
        string model = File.Exists(index) ? index : Path.Combine(dir, "model.safetensors");
        if (!File.Exists(model)) throw new FileNotFoundException($"checkpoint {dir} is incomplete: model.safetensors is missing", model);
        bool hasOpt = state["optimizer"]?.GetValue<bool>() == true;
        string? optPath = hasOpt ? Path.Combine(dir, OptimizerFileName) : null;
        if (optPath != null && !File.Exists(optPath)) throw new FileNotFoundException($"checkpoint {dir} is incomplete: {OptimizerFileName} is missing", optPath);
        JsonNode? config = null;
        string cfgPath = Path.Combine(dir, RunConfigFileName);
        if (File.Exists(cfgPath)) config = JsonNode.Parse(File.ReadAllText(cfgPath));
        return new LoadedCheckpoint
        {
            Iteration = it,
            Directory = dir,
            ModelPath = model,
            OptimizerPath = optPath,
            RngState = state["rng_state"] is JsonArray a ? a.Select(x => ulong.Parse(x!.GetValue<string>(), NumberStyles.HexNumber, CultureInfo.InvariantCulture)).ToArray() : null,
            DataState = state["data_state"]?.DeepClone(),
            Config = config,
            TrainerState = state["trainer"]?.DeepClone().AsObject(),
        };
    }
}
