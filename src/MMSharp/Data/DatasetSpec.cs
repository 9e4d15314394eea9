using System.Globalization;
using System.Text.Json;

namespace MMSharp.Data;

/// <summary>
/// One entry of an InternVL meta file (spec internvl.md 6.1):
/// <c>{"name": {"root", "annotation", "data_augment", "repeat_time", "length", "max_dynamic_patch"?}}</c>.
/// </summary>
/// <param name="Name">The meta key.</param>
/// <param name="Root">Prefix joined with relative media paths (<c>os.path.join(root, p)</c>).</param>
/// <param name="Annotation">The JSONL file.</param>
/// <param name="RepeatTime">&lt; 1: keep the first <c>int(lines * repeat_time)</c> lines; &gt; 1: must be an integer, the
/// lines are repeated that many times (<c>raw_data * repeat_time</c>).</param>
/// <param name="DataAugment">Official <c>is_train</c> (JPEG re-compression augmentation; recorded, not applied).</param>
/// <param name="MaxDynamicPatch">Per-dataset override of <c>--max_dynamic_patch</c>.</param>
/// <param name="Length">Informational length from the meta file (the official code does not read it).</param>
public sealed record DatasetSpec(string Name, string Root, string Annotation, double RepeatTime = 1, bool DataAugment = false,
    int? MaxDynamicPatch = null, long? Length = null)
{
    /// <summary>Full path of a media file named by a record: absolute paths unchanged, others joined with <see cref="Root"/>.</summary>
    public string ResolveMedia(string path) => Path.IsPathRooted(path) ? path : Path.Combine(Root, path);

    /// <summary>Lines kept from a file of <paramref name="lineCount"/> lines and the repeat count (the official arithmetic).</summary>
    public (long Kept, int Repeat) Selection(long lineCount)
    {
        if (RepeatTime <= 0 || double.IsNaN(RepeatTime)) throw new ArgumentException($"dataset '{Name}': repeat_time must be > 0, got {RepeatTime}");
        if (RepeatTime < 1) return ((long)(lineCount * RepeatTime), 1);
        if (RepeatTime > 1)
        {
            if (RepeatTime != Math.Floor(RepeatTime))
                throw new ArgumentException($"dataset '{Name}': repeat_time > 1 must be an integer (official: assert isinstance(repeat_time, int)), got {RepeatTime}");
            return (lineCount, (int)RepeatTime);
        }
        return (lineCount, 1);
    }

    /// <summary>A plain JSONL file as a dataset: root = the file's folder, repeat 1.</summary>
    public static DatasetSpec FromJsonl(string path, string? root = null) =>
        new(Path.GetFileNameWithoutExtension(path), root ?? Path.GetDirectoryName(Path.GetFullPath(path))!, Path.GetFullPath(path));

    /// <summary>
    /// Reads a meta file. Relative <c>annotation</c>/<c>root</c> paths are taken relative to the working directory like the
    /// official code, or, if nothing exists there, relative to the meta file's folder.
    /// </summary>
    public static List<DatasetSpec> LoadMeta(string metaPath)
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(metaPath));
        if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{metaPath}: a meta file is a JSON object of datasets");
        string metaDir = Path.GetDirectoryName(Path.GetFullPath(metaPath))!;
        string Resolve(string p) => Path.IsPathRooted(p) || File.Exists(p) || Directory.Exists(p) ? p : Path.Combine(metaDir, p);
        var list = new List<DatasetSpec>();
        foreach (var ds in doc.RootElement.EnumerateObject())
        {
            var e = ds.Value;
            string annotation = e.TryGetProperty("annotation", out var a) && a.ValueKind == JsonValueKind.String ? a.GetString()!
                : throw new InvalidDataException($"{metaPath}: dataset '{ds.Name}' has no \"annotation\"");
            if (!annotation.EndsWith("jsonl", StringComparison.Ordinal))
                throw new InvalidDataException($"{metaPath}: dataset '{ds.Name}': annotation must be jsonl, but got {annotation}");
            string root = e.TryGetProperty("root", out var r) && r.ValueKind == JsonValueKind.String ? r.GetString()! : "";
            double repeat = e.TryGetProperty("repeat_time", out var rt) ? rt.GetDouble() : 1;
            bool augment = e.TryGetProperty("data_augment", out var au) && au.ValueKind == JsonValueKind.True;
            int? mdp = e.TryGetProperty("max_dynamic_patch", out var m) && m.ValueKind == JsonValueKind.Number ? m.GetInt32() : null;
            long? length = e.TryGetProperty("length", out var l) && l.ValueKind == JsonValueKind.Number ? l.GetInt64() : null;
            list.Add(new DatasetSpec(ds.Name, root.Length == 0 ? "" : Resolve(root), Resolve(annotation), repeat, augment, mdp, length));
        }
        if (list.Count == 0) throw new InvalidDataException($"{metaPath}: no datasets");
        return list;
    }

    /// <summary>A meta file (<c>.json</c>) or a single JSONL file.</summary>
    public static List<DatasetSpec> Load(string path) =>
        path.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase) ? [FromJsonl(path)] : LoadMeta(path);

    /// <summary>Writes a meta file for <paramref name="specs"/>.</summary>
    public static void WriteMeta(string path, IEnumerable<DatasetSpec> specs)
    {
        using var fs = File.Create(path);
        using var w = new Utf8JsonWriter(fs, new JsonWriterOptions { Indented = true });
        w.WriteStartObject();
        foreach (var s in specs)
        {
            w.WriteStartObject(s.Name);
            w.WriteString("root", s.Root);
            w.WriteString("annotation", s.Annotation);
            w.WriteBoolean("data_augment", s.DataAugment);
            if (s.RepeatTime == Math.Floor(s.RepeatTime)) w.WriteNumber("repeat_time", (long)s.RepeatTime); else w.WriteNumber("repeat_time", s.RepeatTime);
            if (s.Length is long len) w.WriteNumber("length", len);
            if (s.MaxDynamicPatch is int m) w.WriteNumber("max_dynamic_patch", m);
            w.WriteEndObject();
        }
        w.WriteEndObject();
    }

    internal static string Invariant(double v) => v.ToString(CultureInfo.InvariantCulture);
}
