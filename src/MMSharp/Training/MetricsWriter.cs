using System.Text;
using System.Text.Json;

namespace MMSharp.Training;

/// <summary>
/// One line of <c>metrics.jsonl</c>: <c>step</c>; <c>loss</c> = the global batch's loss computed before the update (mean
/// of the micro-batch losses); <c>lr</c> used by this step's update; <c>grad_norm</c> = global L2 norm of the trainable
/// gradients before clipping; throughput since the previous logged line; <c>elapsed_s</c> over all parts of a resumed
/// run; <c>val_loss</c> on evaluation steps only.
/// </summary>
public sealed record StepMetrics(long Step, double Loss, double Lr, double GradNorm, double TokensPerSecond,
    double SamplesPerSecond, double ElapsedSeconds, double? ValLoss = null);

/// <summary>
/// Appends one JSON object per logged step to <c>OUTPUT/metrics.jsonl</c>, flushed to the OS after each line so a kill
/// loses nothing already written. Doubles are written in their shortest round-trip form, so a loss read back is the
/// same bits. Opening for a resumed run truncates the lines of steps after the resumed step (and any torn last line),
/// so the file always describes one consistent run.
/// </summary>
public sealed class MetricsWriter : IDisposable
{
    public const string FileName = "metrics.jsonl";
    readonly FileStream _fs;

    public string Path { get; }

    /// <param name="path">The jsonl file.</param>
    /// <param name="resumeStep">Keep only lines with step ≤ this (null: start a new file, replacing any old one).</param>
    public MetricsWriter(string path, long? resumeStep = null)
    {
        Path = System.IO.Path.GetFullPath(path);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(Path)!);
        _fs = new FileStream(Path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read);
        long keep = resumeStep is { } r ? ValidPrefixLength(_fs, r) : 0;
        _fs.SetLength(keep);
        _fs.Position = keep;
        _fs.Flush(flushToDisk: true);
    }

    /// <summary>Length of the leading complete lines whose step is ≤ <paramref name="maxStep"/>.</summary>
    static long ValidPrefixLength(FileStream fs, long maxStep)
    {
        fs.Position = 0;
        var bytes = new byte[fs.Length];
        fs.ReadExactly(bytes);
        long pos = 0;
        while (pos < bytes.Length)
        {
            int nl = Array.IndexOf(bytes, (byte)'\n', (int)pos);
            if (nl < 0) break; // torn last line
            try
            {
                using var doc = JsonDocument.Parse(bytes.AsMemory((int)pos, nl - (int)pos));
                if (doc.RootElement.GetProperty("step").GetInt64() > maxStep) break;
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or FormatException or InvalidOperationException)
            {
                break;
            }
            pos = nl + 1;
        }
        return pos;
    }

    public void Write(StepMetrics m)
    {
        var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            w.WriteNumber("step", m.Step);
            Number(w, "loss", m.Loss);
            Number(w, "lr", m.Lr);
            Number(w, "grad_norm", m.GradNorm);
            Number(w, "tokens_per_s", m.TokensPerSecond);
            Number(w, "samples_per_s", m.SamplesPerSecond);
            Number(w, "elapsed_s", m.ElapsedSeconds);
            if (m.ValLoss is { } v) Number(w, "val_loss", v);
            w.WriteEndObject();
        }
        ms.WriteByte((byte)'\n');
        _fs.Write(ms.GetBuffer(), 0, (int)ms.Length);
        _fs.Flush();
    }

    /// <summary>JSON has no NaN or infinity; those are written as the strings "NaN", "Infinity", "-Infinity".</summary>
    static void Number(Utf8JsonWriter w, string name, double v)
    {
        if (double.IsFinite(v)) w.WriteNumber(name, v);
        else w.WriteString(name, double.IsNaN(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity");
    }

    /// <summary>Reads every line back (tests, plots).</summary>
    public static List<StepMetrics> Read(string path)
    {
        var list = new List<StepMetrics>();
        foreach (var line in File.ReadLines(path, Encoding.UTF8))
        {
            if (line.Length == 0) continue;
            using var doc = JsonDocument.Parse(line);
            var r = doc.RootElement;
            double D(string k) => r.GetProperty(k).ValueKind == JsonValueKind.String
                ? double.Parse(r.GetProperty(k).GetString()!, System.Globalization.CultureInfo.InvariantCulture)
                : r.GetProperty(k).GetDouble();
            list.Add(new StepMetrics(r.GetProperty("step").GetInt64(), D("loss"), D("lr"), D("grad_norm"), D("tokens_per_s"),
                D("samples_per_s"), D("elapsed_s"), r.TryGetProperty("val_loss", out _) ? D("val_loss") : null));
        }
        return list;
    }

    public void Dispose() => _fs.Dispose();
}
