using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace MMSharp.Vision;

/// <summary>
/// A video file read through the <c>ffprobe</c> and <c>ffmpeg</c> command-line tools (Debian package <c>ffmpeg</c>),
/// standing in for decord's <c>VideoReader(path, ctx=cpu(0), num_threads=1)</c> as used by the InternVL model card.
/// </summary>
/// <remarks>
/// Correspondence with decord (dmlc/decord <c>src/video/video_reader.cc</c>; decord itself is not installable on
/// Debian, so the correspondence is by reading its source):
/// <list type="bullet">
/// <item><c>len(vr)</c> is the number of packets of the best video stream (decord's <c>IndexKeyframes</c> reads every
/// packet once and keeps their timestamps; <c>GetFrameCount</c> returns that count). We ask
/// <c>ffprobe -count_packets</c> for <c>nb_read_packets</c>: the same demux-only scan, no decoding, and exact for
/// containers without a frame count in the header (mkv, webm). <c>nb_frames</c> (header) is missing or estimated for
/// many containers, and <c>-count_frames</c> would decode the whole video just to count.</item>
/// <item>The stream is the first video stream that is not cover art (ffmpeg specifier <c>V:0</c>); decord takes
/// <c>av_find_best_stream</c>, which also passes over attached pictures and is the first video stream in practice.</item>
/// <item><c>vr.get_avg_fps()</c> is the stream's <c>avg_frame_rate</c> num/den as a double (not
/// <c>r_frame_rate</c>).</item>
/// <item><c>vr[i]</c> is the i-th frame in presentation order; ffmpeg's <c>select</c> filter counts decoded frames
/// (<c>n</c>) in the same order, so <c>select='eq(n,i1)+eq(n,i2)…'</c> with <c>-vsync 0</c> (no frame duplication
/// or dropping) returns exactly the frames decord would. Frames are RGB24; rotation metadata is applied by both
/// (ffmpeg autorotates). For YUV sources the YUV→RGB conversion is swscale in both, but decord's filter-graph flags
/// may differ from the ffmpeg CLI's, so individual pixels can differ by a unit or so; lossless RGB sources are exact.</item>
/// </list>
/// Decoding runs one ffmpeg process per <see cref="GetBatch"/> call that decodes the stream once (sequentially, no
/// seeking) up to the last selected frame (<c>-frames:v</c> stops it there) and converts only the selected frames,
/// streamed back as PPM images (self-describing, so the output size after rotation need not be guessed). For the
/// model card's 8–32 frames spread over the video this costs one decode pass of (most of) the video.
/// </remarks>
public sealed class VideoReader
{
    /// <summary>ffmpeg executable (name on PATH or full path); the environment variable <c>MMSHARP_FFMPEG</c> overrides.</summary>
    public static string FfmpegPath { get; set; } = Environment.GetEnvironmentVariable("MMSHARP_FFMPEG") ?? "ffmpeg";
    /// <summary>ffprobe executable (name on PATH or full path); the environment variable <c>MMSHARP_FFPROBE</c> overrides.</summary>
    public static string FfprobePath { get; set; } = Environment.GetEnvironmentVariable("MMSHARP_FFPROBE") ?? "ffprobe";

    const string InstallHint = "install ffmpeg: apt-get install ffmpeg (or scripts/install-deps.sh ffmpeg)";

    /// <summary>The video file.</summary>
    public string Path { get; }
    /// <summary>Number of frames (decord <c>len(vr)</c>): packets of the video stream.</summary>
    public int FrameCount { get; }
    /// <summary>decord <c>get_avg_fps()</c>: the stream's avg_frame_rate as a double.</summary>
    public double AvgFps { get; }
    /// <summary>avg_frame_rate as ffprobe prints it, e.g. "30000/1001".</summary>
    public string AvgFrameRate { get; }
    /// <summary>Coded width of the stream (before any rotation).</summary>
    public int Width { get; }
    /// <summary>Coded height of the stream (before any rotation).</summary>
    public int Height { get; }

    /// <summary>Opens <paramref name="path"/> and probes its first video stream (one ffprobe run, demux only).</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="VideoDecodeException">ffprobe cannot read it, it has no video stream, or the stream has no frames.</exception>
    /// <exception cref="InvalidOperationException">ffprobe is not installed.</exception>
    public VideoReader(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"VideoReader: no such file '{path}'", path);
        Path = path;
        var (code, stdout, stderr) = RunText(FfprobePath,
            ["-v", "error", "-select_streams", "V:0", "-count_packets",
             "-show_entries", "stream=width,height,avg_frame_rate,nb_read_packets", "-of", "default=noprint_wrappers=1", path]);
        string name = System.IO.Path.GetFileName(path);
        if (code != 0) throw new VideoDecodeException(name, $"ffprobe cannot read the file (exit code {code}): {Tail(stderr)}");
        var kv = new Dictionary<string, string>();
        foreach (var line in stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int eq = line.IndexOf('=');
            if (eq > 0) kv.TryAdd(line[..eq], line[(eq + 1)..]);
        }
        if (!kv.ContainsKey("nb_read_packets")) throw new VideoDecodeException(name, $"no video stream{(stderr.Length > 0 ? ": " + Tail(stderr) : "")}");
        Width = ParseInt(kv, "width", name);
        Height = ParseInt(kv, "height", name);
        // ffprobe prints N/A when it read no packet at all (e.g. an AVI with a stream header and no frames).
        FrameCount = kv["nb_read_packets"] == "N/A" ? 0 : ParseInt(kv, "nb_read_packets", name);
        if (FrameCount <= 0) throw new VideoDecodeException(name, "the video stream has zero frames");
        AvgFrameRate = kv.GetValueOrDefault("avg_frame_rate", "0/0");
        AvgFps = ParseRational(AvgFrameRate);
    }

    /// <summary>
    /// decord <c>vr.get_batch(indices)</c> / <c>vr[i]</c>: the frames at <paramref name="indices"/> (any order, repeats
    /// allowed), decoded to RGB. One ffmpeg run decodes the video once and converts only the distinct requested frames.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">An index is outside [0, FrameCount).</exception>
    /// <exception cref="VideoDecodeException">ffmpeg fails or returns fewer frames than asked (its stderr tail is included).</exception>
    public RgbImage[] GetBatch(IReadOnlyList<int> indices)
    {
        if (indices.Count == 0) return [];
        foreach (int i in indices)
            if (i < 0 || i >= FrameCount)
                throw new ArgumentOutOfRangeException(nameof(indices), $"VideoReader.GetBatch: frame {i} is outside [0, {FrameCount}) of '{Path}'");
        int[] distinct = indices.Distinct().Order().ToArray();
        // select passes frame n when any eq(n, i) is 1; the comma must be escaped inside the filter graph.
        var select = new StringBuilder("select='");
        for (int k = 0; k < distinct.Length; k++)
            select.Append(k == 0 ? "" : "+").Append("eq(n\\,").Append(distinct[k].ToString(CultureInfo.InvariantCulture)).Append(')');
        select.Append('\'');
        string[] args = ["-nostdin", "-v", "error", "-i", Path, "-map", "0:V:0", "-an", "-sn", "-dn",
                         "-vf", select.ToString(), "-vsync", "0",
                         "-frames:v", distinct.Length.ToString(CultureInfo.InvariantCulture), "-pix_fmt", "rgb24", "-c:v", "ppm", "-f", "image2pipe", "-"];

        var decoded = new List<RgbImage>(distinct.Length);
        string name = System.IO.Path.GetFileName(Path);
        using var proc = Start(FfmpegPath, args);
        var stderrTask = proc.StandardError.ReadToEndAsync();
        Exception? parseError = null;
        try
        {
            var stdout = new BufferedStream(proc.StandardOutput.BaseStream, 1 << 16);
            while (decoded.Count < distinct.Length && ReadPpm(stdout, out var img)) decoded.Add(img!);
            // Drain anything extra so ffmpeg is not blocked on a full pipe.
            stdout.CopyTo(Stream.Null);
        }
        catch (FormatException e) { parseError = e; }
        proc.WaitForExit();
        string stderr = stderrTask.Result;
        if (proc.ExitCode != 0)
            throw new VideoDecodeException(name, $"ffmpeg cannot decode the file (exit code {proc.ExitCode}): {Tail(stderr)}");
        if (parseError != null) throw new VideoDecodeException(name, $"unexpected ffmpeg output: {parseError.Message}", parseError);
        if (decoded.Count != distinct.Length)
            throw new VideoDecodeException(name,
                $"ffmpeg returned {decoded.Count} of {distinct.Length} requested frames (the stream has {FrameCount} packets; " +
                $"first missing frame {distinct[decoded.Count]}){(stderr.Length > 0 ? ": " + Tail(stderr) : "")}");

        var result = new RgbImage[indices.Count];
        for (int k = 0; k < indices.Count; k++) result[k] = decoded[Array.BinarySearch(distinct, indices[k])];
        return result;
    }

    /// <summary>decord <c>vr[i]</c>: one frame.</summary>
    public RgbImage this[int index] => GetBatch([index])[0];

    /// <summary>Reads one binary PPM ("P6 w h 255\n" + w*h*3 bytes); false at a clean end of stream.</summary>
    static bool ReadPpm(Stream s, out RgbImage? image)
    {
        image = null;
        int b = s.ReadByte();
        if (b < 0) return false;
        if (b != 'P' || s.ReadByte() != '6') throw new FormatException("expected a binary PPM (P6) frame");
        int w = ReadHeaderInt(s), h = ReadHeaderInt(s), max = ReadHeaderInt(s);
        if (max != 255) throw new FormatException($"PPM maxval {max}, expected 255 (rgb24)");
        if (w <= 0 || h <= 0 || (long)w * h > RgbImage.MaxPixels) throw new FormatException($"PPM size {w}x{h}");
        var pixels = new byte[w * h * 3];
        s.ReadExactly(pixels);
        image = new RgbImage(w, h, pixels);
        return true;
    }

    /// <summary>Skips whitespace, reads a decimal number and consumes the single whitespace byte after it.</summary>
    static int ReadHeaderInt(Stream s)
    {
        int c;
        do c = s.ReadByte(); while (c is ' ' or '\n' or '\r' or '\t');
        if (c < '0' || c > '9') throw new FormatException("truncated PPM header");
        long v = 0;
        while (c is >= '0' and <= '9') { v = v * 10 + (c - '0'); if (v > int.MaxValue) throw new FormatException("PPM header number too large"); c = s.ReadByte(); }
        if (c is not (' ' or '\n' or '\r' or '\t')) throw new FormatException("malformed PPM header");
        return (int)v;
    }

    static int ParseInt(Dictionary<string, string> kv, string key, string name)
    {
        if (kv.TryGetValue(key, out var s) && int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v)) return v;
        throw new VideoDecodeException(name, $"ffprobe reported no usable {key} ('{kv.GetValueOrDefault(key, "missing")}')");
    }

    /// <summary>"num/den" as num / den in double (0/0 gives NaN, as decord's division does).</summary>
    static double ParseRational(string r)
    {
        var parts = r.Split('/');
        double num = double.Parse(parts[0], CultureInfo.InvariantCulture);
        double den = parts.Length > 1 ? double.Parse(parts[1], CultureInfo.InvariantCulture) : 1;
        return num / den;
    }

    static string Tail(string stderr, int max = 1500)
    {
        stderr = stderr.Trim();
        if (stderr.Length == 0) return "(no message)";
        return stderr.Length <= max ? stderr : "…" + stderr[^max..];
    }

    static Process Start(string exe, string[] args)
    {
        var psi = new ProcessStartInfo(exe)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = false,
            UseShellExecute = false, CreateNoWindow = true,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        try
        {
            return Process.Start(psi) ?? throw new InvalidOperationException($"VideoReader: could not start '{exe}'; {InstallHint}");
        }
        catch (Win32Exception e)
        {
            throw new InvalidOperationException($"VideoReader: '{exe}' was not found or cannot run ({e.Message}); {InstallHint}", e);
        }
    }

    static (int Code, string Stdout, string Stderr) RunText(string exe, string[] args)
    {
        using var proc = Start(exe, args);
        var err = proc.StandardError.ReadToEndAsync();
        string output = proc.StandardOutput.ReadToEnd();
        proc.WaitForExit();
        return (proc.ExitCode, output, err.Result);
    }
}
