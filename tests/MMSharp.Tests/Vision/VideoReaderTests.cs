using System.Diagnostics;
using MMSharp.Vision;

namespace MMSharp.Tests.Vision;

/// <summary>
/// Test videos are made here with ffmpeg from raw RGB frames and stored losslessly (FFV1 in Matroska), so every decoded
/// pixel is known: frame k has R = k mod 256, G = k / 256 everywhere and B = (x + 3y) mod 256.
/// </summary>
public sealed class VideoReaderTests : IDisposable
{
    readonly string _dir = Directory.CreateTempSubdirectory("mmsharp-video-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    static byte[] FramePixels(int k, int w, int h, int step = 1)
    {
        k *= step;
        var p = new byte[w * h * 3];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                int o = (y * w + x) * 3;
                p[o] = (byte)(k & 255); p[o + 1] = (byte)(k >> 8); p[o + 2] = (byte)((x + 3 * y) & 255);
            }
        return p;
    }

    /// <summary>Encodes <paramref name="frames"/> numbered frames at <paramref name="rate"/> (e.g. "10" or "30000/1001").</summary>
    string MakeVideo(string name, int frames, string rate, int w = 64, int h = 48, int step = 1, string[]? codecArgs = null)
    {
        codecArgs ??= ["-c:v", "ffv1"];
        string raw = Path.Combine(_dir, name + ".rgb");
        using (var f = File.Create(raw))
            for (int k = 0; k < frames; k++) f.Write(FramePixels(k, w, h, step));
        string output = Path.Combine(_dir, name);
        Run("ffmpeg", ["-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", $"{w}x{h}", "-r", rate,
            "-i", raw, .. codecArgs, output]);
        return output;
    }

    static void Run(string exe, params string[] args)
    {
        var psi = new ProcessStartInfo(exe) { RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"{exe} failed: {err}");
    }

    static int FrameNumber(RgbImage img) => img.Pixels[0] | (img.Pixels[1] << 8);

    [Fact]
    public void Probe_ReportsPacketCountAndAvgFrameRate()
    {
        var vr = new VideoReader(MakeVideo("a.mkv", 30, "10"));
        Assert.Equal(30, vr.FrameCount);
        Assert.Equal(10.0, vr.AvgFps);
        Assert.Equal("10/1", vr.AvgFrameRate);
        Assert.Equal((64, 48), (vr.Width, vr.Height));
    }

    [Fact]
    public void Probe_AvgFpsIsRationalAsDouble_ForNtscRate()
    {
        var vr = new VideoReader(MakeVideo("ntsc.mkv", 12, "30000/1001"));
        Assert.Equal(12, vr.FrameCount);
        Assert.Equal("30000/1001", vr.AvgFrameRate);
        Assert.Equal(30000.0 / 1001.0, vr.AvgFps);
    }

    [Fact]
    public void GetBatch_ReturnsExactlyTheRequestedFrames_InRequestOrderWithRepeats()
    {
        var vr = new VideoReader(MakeVideo("b.mkv", 300, "30", 33, 17));
        int[] want = [280, 0, 17, 17, 299, 256, 3];
        var frames = vr.GetBatch(want);
        Assert.Equal(want, frames.Select(FrameNumber).ToArray());
        foreach (var (f, k) in frames.Zip(want))
        {
            Assert.Equal((33, 17), (f.Width, f.Height));
            Assert.Equal(FramePixels(k, 33, 17), f.Pixels);   // lossless: every pixel
        }
        Assert.Equal(42, FrameNumber(vr[42]));
    }

    [Theory]
    [InlineData("x264.mkv", "libx264")]
    [InlineData("x264.mp4", "libx264")]
    [InlineData("mpeg4.avi", "mpeg4")]
    public void GetBatch_ReturnsPresentationOrderFrames_WhenCodecUsesBFrames(string name, string codec)
    {
        // Lossy codecs with forced B-frames (x264 turns B-frames off when lossless): packets arrive in decode order,
        // frames must come out in display order. Frame k is encoded as 6k in R (k < 40), read back as round(mean R / 6).
        string[] args = codec == "libx264"
            ? ["-c:v", "libx264", "-pix_fmt", "yuv444p", "-crf", "10", "-x264-params", "bframes=3:b-adapt=0:keyint=12"]
            : ["-c:v", "mpeg4", "-bf", "2", "-q:v", "2", "-g", "12"];
        var vr = new VideoReader(MakeVideo(name, 40, "25", 32, 16, step: 6, codecArgs: args));
        Assert.Equal(40, vr.FrameCount);
        Assert.Equal(25.0, vr.AvgFps);
        int[] want = [0, 1, 2, 13, 14, 25, 38, 39];
        var frames = vr.GetBatch(want);
        Assert.Equal(want, frames.Select(f => (int)Math.Round(Enumerable.Range(0, f.Width * f.Height).Average(i => f.Pixels[i * 3]) / 6)).ToArray());
    }

    [Fact]
    public void GetBatch_Throws_WhenIndexOutOfRange()
    {
        var vr = new VideoReader(MakeVideo("c.mkv", 5, "10"));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => vr.GetBatch([4, 5]));
        Assert.Contains("frame 5", e.Message);
    }

    [Fact]
    public void Load_SamplesLikeGetIndex_AndNormalizesEachFrameToOneTile()
    {
        string path = MakeVideo("d.mkv", 30, "10");
        using var v = InternVLVideoLoader.Load(path, numSegments: 4, maxNum: 1);
        // get_index(None, 10, 29, 0, 4): seg = 29/4 = 7.25 -> int(3.625 + round_half_even(7.25k)) = [3, 10, 17, 25] (round(14.5) = 14)
        Assert.Equal(new long[] { 3, 10, 17, 25 }, v.FrameIndices);
        Assert.Equal(new[] { 1, 1, 1, 1 }, v.NumPatchesList);
        Assert.Equal(new[] { 4, 3, 448, 448 }, v.PixelValues.Shape);
        // R is constant within a frame, so the bicubic resize keeps it: (k/255 - 0.485)/0.229 (float32 table).
        var table = ImageNormalizer.Table();
        var data = v.PixelValues.ToFloatArray();
        for (int f = 0; f < 4; f++)
        {
            float expected = table[0 * 256 + (int)v.FrameIndices[f]];
            Assert.Equal(expected, data[(long)f * 3 * 448 * 448 + 200 * 448 + 300]);
        }
    }

    [Fact]
    public void Load_WithBound_UsesSecondsTimesFps()
    {
        using var v = InternVLVideoLoader.Load(MakeVideo("e.mkv", 30, "10"), numSegments: 4, maxNum: 1, bound: (1.0, 2.0));
        // start 10, end 20, seg 2.5 -> int(11.25 + round_half_even(2.5k)) = [11, 13, 16, 19]
        Assert.Equal(new long[] { 11, 13, 16, 19 }, v.FrameIndices);
    }

    [Fact]
    public void Load_WithMaxNum_TilesEachFrame()
    {
        // 64x48 -> (4,3) grid with max 12: 12 tiles + thumbnail per frame.
        using var v = InternVLVideoLoader.Load(MakeVideo("f.mkv", 6, "10"), numSegments: 2, maxNum: 12);
        Assert.Equal(new[] { 13, 13 }, v.NumPatchesList);
        Assert.Equal(26, v.PixelValues.Shape[0]);
    }

    [Fact]
    public void Open_ThrowsNamingFileAndFfprobeMessage_WhenFileIsNotAVideo()
    {
        string path = Path.Combine(_dir, "garbage.mkv");
        var bytes = new byte[3000];
        new Random(1).NextBytes(bytes);
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<VideoDecodeException>(() => new VideoReader(path));
        Assert.Contains("garbage.mkv", e.Message);
        Assert.Contains("ffprobe cannot read", e.Message);
        Assert.Equal("garbage.mkv", e.VideoName);
    }

    [Fact]
    public void Open_Throws_WhenVideoHasZeroFrames()
    {
        string path = Path.Combine(_dir, "empty.avi");
        Run("ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10", "-frames:v", "0", "-c:v", "ffv1", path);
        var e = Assert.Throws<VideoDecodeException>(() => new VideoReader(path));
        Assert.Contains("empty.avi", e.Message);
        Assert.Contains("zero frames", e.Message);
    }

    [Fact]
    public void Open_Throws_WhenFileHasNoVideoStream()
    {
        string path = Path.Combine(_dir, "tone.wav");
        Run("ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=d=0.2", path);
        var e = Assert.Throws<VideoDecodeException>(() => new VideoReader(path));
        Assert.Contains("no video stream", e.Message);
    }

    [Fact]
    public void Open_ThrowsWithInstallHint_WhenFfprobeIsMissing()
    {
        string path = MakeVideo("g.mkv", 3, "10");
        string saved = VideoReader.FfprobePath;
        VideoReader.FfprobePath = Path.Combine(_dir, "no-such-ffprobe");
        try
        {
            var e = Assert.Throws<InvalidOperationException>(() => new VideoReader(path));
            Assert.Contains("apt-get install ffmpeg", e.Message);
        }
        finally { VideoReader.FfprobePath = saved; }
    }

    [Fact]
    public void GetBatch_ThrowsWithInstallHint_WhenFfmpegIsMissing()
    {
        var vr = new VideoReader(MakeVideo("h.mkv", 3, "10"));
        string saved = VideoReader.FfmpegPath;
        VideoReader.FfmpegPath = Path.Combine(_dir, "no-such-ffmpeg");
        try
        {
            var e = Assert.Throws<InvalidOperationException>(() => vr.GetBatch([0]));
            Assert.Contains("apt-get install ffmpeg", e.Message);
        }
        finally { VideoReader.FfmpegPath = saved; }
    }

    [Fact]
    public void GetBatch_ThrowsWithFfmpegStderr_WhenStreamIsCorruptAfterTheHeader()
    {
        string path = MakeVideo("i.mkv", 20, "10");
        var bytes = File.ReadAllBytes(path);
        // Keep the header (probe succeeds from the first packets) and cut the file in the middle of the frames.
        var vr = new VideoReader(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        var e = Assert.Throws<VideoDecodeException>(() => vr.GetBatch([19]));
        Assert.Contains("i.mkv", e.Message);
    }
}
