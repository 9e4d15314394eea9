using System.Diagnostics;
using System.Text.Json.Nodes;
using MMSharp.Engine;
using MMSharp.Engine.IO;
using MMSharp.Tests.Models;
using MMSharp.Vision;

namespace MMSharp.Tests.Cli;

/// <summary>Video prompts through the commands: a clip made here with ffmpeg (test pattern, 30 frames at 10 fps, FFV1).</summary>
public class VideoChatTests
{
    static string MakeClip(string dir)
    {
        string path = Path.Combine(dir, "clip.mkv");
        var psi = new ProcessStartInfo("ffmpeg") { RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=80x60:rate=10", "-frames:v", "30", "-c:v", "ffv1", path })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, "ffmpeg failed: " + err);
        return path;
    }

    [Fact]
    public void Chat_Video_DumpsFrameIndicesAndOneTilePerFrame()
    {
        using var dir = CliFixtures.ModelDir();
        using var work = new IO.TempDir();
        string clip = MakeClip(work.Path);
        var (code, _, err) = CliFixtures.Run("chat", "--model", dir.Path, "--video", clip, "--num-segments", "4",
            "--prompt", "What happens?", "--max-new-tokens", "3", "--dump-tensors", work.File("dump"));
        Assert.True(code == 0, err);
        using var frames = Npy.Read(Path.Combine(work.Path, "dump", "frame_indices.npy"));
        Assert.Equal(DType.I64, frames.DType);
        Assert.Equal(VideoFrameSampler.GetIndex(null, 10, 29, 0, 4).Select(i => (long)i), frames.ToLongArray());
        using var pv = Npy.Read(Path.Combine(work.Path, "dump", "pixel_values.npy"));
        Assert.Equal([4, 3, 56, 56], pv.Shape);
        using var ids = Npy.Read(Path.Combine(work.Path, "dump", "input_ids.npy"));
        Assert.Equal(4 * 4, ids.ToLongArray().Count(i => i == InternVLFixtures.ImgContext));
    }

    [Fact]
    public void Infer_Video_Runs()
    {
        using var dir = CliFixtures.ModelDir();
        using var work = new IO.TempDir();
        string clip = MakeClip(work.Path);
        File.WriteAllText(work.File("infer.json"), new JsonObject
        {
            ["infer_data_type"] = "video", ["file_path"] = clip, ["prompts"] = "Describe.", ["num_segments"] = 3,
            ["from_pretrained"] = dir.Path, ["generation_config"] = new JsonObject { ["max_new_tokens"] = 2 },
        }.ToJsonString());
        var (code, _, err) = CliFixtures.Run("infer", "--config", work.File("infer.json"));
        Assert.True(code == 0, err);
    }

    [Fact]
    public void Chat_Sampling_IsReproducibleForASeed()
    {
        using var dir = CliFixtures.ModelDir();
        string[] args = ["chat", "--model", dir.Path, "--prompt", "Tell me.", "--max-new-tokens", "10", "--temperature", "1.5", "--top-k", "0", "--seed", "7"];
        var a = CliFixtures.Run(args);
        var b = CliFixtures.Run(args);
        Assert.True(a.Code == 0, a.Err);
        Assert.Equal(a.Out, b.Out);
    }
}
