using MMSharp.Engine;
using MMSharp.Engine.IO;
using MMSharp.Tests.Models;

namespace MMSharp.Tests.Cli;

/// <summary>Every user error ends with exit code 1 and one line naming the problem, without a stack trace.</summary>
public class CliErrorTests
{
    static string AssertOneLineError((int Code, string Out, string Err) r, string expected)
    {
        Assert.Equal(1, r.Code);
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var error = Assert.Single(lines, l => l.StartsWith("error: ", StringComparison.Ordinal));
        Assert.Contains(expected, error);
        Assert.DoesNotContain("   at ", r.Err);
        return error;
    }

    [Fact]
    public void Chat_MissingModelDirectory_NamesTheDirectory()
    {
        string missing = Path.Combine(Path.GetTempPath(), "mmsharp-no-such-model-" + Guid.NewGuid().ToString("N"));
        AssertOneLineError(CliFixtures.Run("chat", "--model", missing, "--prompt", "hi"), $"model directory '{missing}' does not exist");
    }

    [Fact]
    public void Chat_MissingTensor_GivesTheLoadersMessage()
    {
        using var dir = CliFixtures.ModelDir("vit6b");
        const string drop = "vision_model.encoder.layers.1.attn.k_norm.weight";
        string file = Path.Combine(dir.Path, "model.safetensors");
        var tensors = new List<KeyValuePair<string, Tensor>>();
        using (var reader = new SafeTensorsReader(file))
            foreach (var n in reader.Names)
                if (n != drop)
                    using (var t = reader.Get(n)) tensors.Add(new(n, Ops.Clone(t)));
        File.Delete(file);
        SafeTensorsWriter.Write(file, tensors);
        foreach (var kv in tensors) kv.Value.Dispose();
        AssertOneLineError(CliFixtures.Run("chat", "--model", dir.Path, "--prompt", "hi"), drop);
    }

    [Fact]
    public void Chat_CorruptImage_GivesTheDecodersMessage()
    {
        using var dir = CliFixtures.ModelDir();
        using var work = new IO.TempDir();
        var bytes = File.ReadAllBytes(CliFixtures.Image("opt_64x48.jpg"));
        File.WriteAllBytes(work.File("broken.jpg"), bytes[..(bytes.Length / 3)]);
        var line = AssertOneLineError(CliFixtures.Run("chat", "--model", dir.Path, "--image", work.File("broken.jpg"), "--prompt", "hi"), "broken.jpg");
        Assert.True(line.Length > "error: ".Length + 20);
    }

    [Fact]
    public void Chat_MissingImage_NamesTheFile()
    {
        using var dir = CliFixtures.ModelDir();
        AssertOneLineError(CliFixtures.Run("chat", "--model", dir.Path, "--image", "/no/such/image.png", "--prompt", "hi"), "'/no/such/image.png' does not exist");
    }

    [Fact]
    public void Chat_UnreadableVideo_NamesTheFile()
    {
        using var dir = CliFixtures.ModelDir();
        using var work = new IO.TempDir();
        File.WriteAllBytes(work.File("clip.mp4"), "this is not a video"u8.ToArray());
        AssertOneLineError(CliFixtures.Run("chat", "--model", dir.Path, "--video", work.File("clip.mp4"), "--prompt", "hi"), "clip.mp4");
    }

    [Fact]
    public void Chat_PromptLongerThanContext_SaysSo()
    {
        using var dir = CliFixtures.ModelDir("vit6b");   // max_position_embeddings 16
        var line = AssertOneLineError(CliFixtures.Run("chat", "--model", dir.Path, "--prompt", "hi"), "is longer than the model's context (16)");
        Assert.Matches(@"prompt of \d+ tokens is longer than the model's context \(16\)", line);
    }

    [Fact]
    public void Verbose_PrintsTheStackTrace()
    {
        var r = CliFixtures.Run("chat", "--model", "/no/such/dir", "--prompt", "hi", "--verbose");
        Assert.Equal(1, r.Code);
        Assert.Contains("   at ", r.Err);
    }

    [Fact]
    public void Infer_MissingFields_NameTheField()
    {
        using var work = new IO.TempDir();
        File.WriteAllText(work.File("a.json"), """{"infer_data_type": "image", "file_path": "x.png"}""");
        AssertOneLineError(CliFixtures.Run("infer", "--config", work.File("a.json")), "prompts is missing");
        File.WriteAllText(work.File("b.json"), """{"infer_data_type": "audio", "prompts": "hi", "from_pretrained": "m"}""");
        AssertOneLineError(CliFixtures.Run("infer", "--config", work.File("b.json")), "infer_data_type must be");
    }

    [Fact]
    public void MissingRequiredOption_IsAUsageError()
    {
        var r = CliFixtures.Run("chat", "--prompt", "hi");
        Assert.NotEqual(0, r.Code);
        Assert.Contains("--model", r.Err);
    }
}
