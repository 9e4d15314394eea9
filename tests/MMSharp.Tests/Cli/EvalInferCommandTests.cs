using System.Text.Json.Nodes;
using MMSharp.Engine;
using MMSharp.Engine.IO;
using MMSharp.Tests.Models;

namespace MMSharp.Tests.Cli;

public class EvalInferCommandTests
{
    static string Record(object id, string? image, string question, string answer)
    {
        var o = new JsonObject { ["id"] = JsonValue.Create(id) };
        if (image != null) o["image"] = image;
        o["conversations"] = new JsonArray(
            new JsonObject { ["from"] = "human", ["value"] = question },
            new JsonObject { ["from"] = "gpt", ["value"] = answer },
            new JsonObject { ["from"] = "human", ["value"] = "ignored second turn" });
        return o.ToJsonString();
    }

    static string FirstAnswer(string stdout) => stdout.Trim();

    /// <summary>A work directory holding a.jpg (64×48) and b.jpg (130×97).</summary>
    static IO.TempDir TwoImages()
    {
        var work = new IO.TempDir();
        File.Copy(CliFixtures.Image("opt_64x48.jpg"), work.File("a.jpg"));
        File.Copy(CliFixtures.Image("opt_130x97.jpg"), work.File("b.jpg"));
        return work;
    }

    [Fact]
    public void Eval_WritesResults_AndSecondRunSkipsAnsweredIds()
    {
        using var dir = CliFixtures.ModelDir();
        using var work = TwoImages();
        string data = work.File("test.jsonl");
        File.WriteAllLines(data, [
            Record(1, "a.jpg", "<image>\nWhat colour?", "red"),
            Record("two", null, "Say hi.", "hi"),
            Record(3, "b.jpg", "Count the things.", "3"),
        ]);
        string outPath = work.File("results.json");
        var (code, _, err) = CliFixtures.Run("eval", "--model", dir.Path, "--data", data, "--out", outPath, "--max-new-tokens", "5", "--batch-size", "2");
        Assert.True(code == 0, err);
        Assert.Contains("3 to answer", err);
        Assert.Contains("3/3", err);
        Assert.Contains("ETA", err);                                          // after the first batch of two
        Assert.Matches(@"eval: answered 3 records in \d+:\d\d \(\d+\.\d\d s each\); vision: \d+ tiles encoded, 0 reused; results in ", err);
        var results = JsonNode.Parse(File.ReadAllText(outPath))!.AsArray();
        Assert.Equal(["1", "\"two\"", "3"], results.Select(r => r!["id"]!.ToJsonString()));
        Assert.Equal("Say hi.", results[1]!["prompt"]!.GetValue<string>());
        Assert.Equal("hi", results[1]!["reference"]!.GetValue<string>());
        Assert.All(results, r => Assert.NotNull(r!["prediction"]));
        Assert.False(File.Exists(outPath + ".tmp"));

        // the batched answer equals the single chat answer of the same question
        var (c2, chatOut, chatErr) = CliFixtures.Run("chat", "--model", dir.Path, "--image", work.File("b.jpg"), "--prompt", "Count the things.", "--max-new-tokens", "5");
        Assert.True(c2 == 0, chatErr);
        Assert.Equal(FirstAnswer(chatOut), results[2]!["prediction"]!.GetValue<string>());

        // resume: nothing left; then drop one id and only that one is answered again
        string before = File.ReadAllText(outPath);
        (code, _, err) = CliFixtures.Run("eval", "--model", dir.Path, "--data", data, "--out", outPath);
        Assert.Equal(0, code);
        Assert.Contains("3 already in", err);
        Assert.Contains("0 to answer", err);
        Assert.DoesNotContain("eval: answered", err);
        Assert.Equal(before, File.ReadAllText(outPath));
        results.RemoveAt(1);
        File.WriteAllText(outPath, results.ToJsonString());
        (code, _, err) = CliFixtures.Run("eval", "--model", dir.Path, "--data", data, "--out", outPath, "--max-new-tokens", "5");
        Assert.True(code == 0, err);
        Assert.Contains("1 to answer", err);
        var again = JsonNode.Parse(File.ReadAllText(outPath))!.AsArray();
        Assert.Equal(["1", "3", "\"two\""], again.Select(r => r!["id"]!.ToJsonString()));
    }

    [Fact]
    public void Eval_EncodesEachImageOnce_AndAnswersEveryRecordAsChatDoes()
    {
        using var dir = CliFixtures.ModelDir();
        using var work = TwoImages();
        (string Image, string Question)[] asked = [("a.jpg", "What colour?"), ("a.jpg", "How many?"), ("b.jpg", "Where?"), ("a.jpg", "Why?")];
        string data = work.File("test.jsonl");
        File.WriteAllLines(data, asked.Select((r, i) => Record(i, r.Image, r.Question, "-")));
        string outPath = work.File("results.json");
        var (code, _, err) = CliFixtures.Run("eval", "--model", dir.Path, "--data", data, "--out", outPath, "--max-new-tokens", "5", "--batch-size", "2");
        Assert.True(code == 0, err);

        int Tiles(string image)
        {
            using var model = MMSharp.Models.InternVL.InternVLChatModel.FromPretrained(dir.Path);
            using var t = MMSharp.Vision.InternVLImagePreprocessor.LoadImage(work.File(image), model.Config.ImageSize, model.Config.MaxDynamicPatch);
            return t.Shape[0];
        }
        int a = Tiles("a.jpg"), b = Tiles("b.jpg");
        Assert.Contains($"vision: {a + b} tiles encoded, {2 * a} reused;", err);
        // every prediction (features from the cache, several images in one batch) equals the single chat answer
        var results = JsonNode.Parse(File.ReadAllText(outPath))!.AsArray();
        for (int i = 0; i < asked.Length; i++)
        {
            var (c, chatOut, chatErr) = CliFixtures.Run("chat", "--model", dir.Path, "--image", work.File(asked[i].Image), "--prompt", asked[i].Question, "--max-new-tokens", "5");
            Assert.True(c == 0, chatErr);
            Assert.Equal(FirstAnswer(chatOut), results[i]!["prediction"]!.GetValue<string>());
        }
    }

    [Fact]
    public void Infer_AnswersEveryPromptOfTheJson_AsChatDoes()
    {
        using var dir = CliFixtures.ModelDir();
        using var work = new IO.TempDir();
        File.Copy(CliFixtures.Image("opt_64x48.jpg"), work.File("img.jpg"));
        using var dump = new IO.TempDir();
        var json = new JsonObject
        {
            ["infer_data_type"] = "image",
            ["file_path"] = "img.jpg",
            ["prompts"] = new JsonArray("Describe the image.", "What is the colour?"),
            ["pipeline_class"] = "InternVLPipeline",
            ["from_pretrained"] = dir.Path,
            ["template"] = "internvl2_5",
            ["dump_tensors"] = dump.Path,
            ["no_mmap"] = true,                 // weights copied into memory: the answers below still equal chat's mapped ones
            ["stats"] = true,                   // timings on stderr, stdout unchanged
            ["generation_config"] = new JsonObject { ["do_sample"] = false, ["max_new_tokens"] = 6, ["top_k"] = 50, ["eos_token_id"] = 298 },
        };
        File.WriteAllText(work.File("infer.json"), json.ToJsonString());
        var (code, stdout, err) = CliFixtures.Run("infer", "--config", work.File("infer.json"));
        Assert.True(code == 0, err);
        Assert.Contains("[1/2] Describe the image.", stdout);
        Assert.Contains("[2/2] What is the colour?", stdout);
        Assert.True(File.Exists(dump.File("logits.npy")));
        Assert.Contains("MB of weights, copied into memory", err);
        Assert.Equal(2, err.Split('\n').Count(l => l.StartsWith("stats: prompt ", StringComparison.Ordinal)));
        Assert.DoesNotContain("stats:", stdout);

        var (c2, chatOut, _) = CliFixtures.Run("chat", "--model", dir.Path, "--image", work.File("img.jpg"), "--prompt", "What is the colour?", "--max-new-tokens", "6");
        Assert.Equal(0, c2);
        string second = stdout[(stdout.IndexOf("[2/2] What is the colour?\n", StringComparison.Ordinal) + "[2/2] What is the colour?\n".Length)..];
        Assert.Equal(chatOut.Trim(), second.Trim());
    }

    [Fact]
    public void Infer_TextOnly_NeedsNoFile()
    {
        using var dir = CliFixtures.ModelDir();
        using var work = new IO.TempDir();
        File.WriteAllText(work.File("infer.json"), new JsonObject
        {
            ["infer_data_type"] = "text", ["prompts"] = "Hello", ["from_pretrained"] = dir.Path,
            ["generation_config"] = new JsonObject { ["max_new_tokens"] = 3 },
        }.ToJsonString());
        var (code, _, err) = CliFixtures.Run("infer", "--config", work.File("infer.json"));
        Assert.True(code == 0, err);
    }

    [Fact]
    public void Infer_NoMmapThatIsNotABoolean_IsAClearError()
    {
        using var work = new IO.TempDir();
        File.WriteAllText(work.File("infer.json"), new JsonObject
        {
            ["infer_data_type"] = "text", ["prompts"] = "Hello", ["from_pretrained"] = work.Path, ["no_mmap"] = "yes",
        }.ToJsonString());
        var (code, _, err) = CliFixtures.Run("infer", "--config", work.File("infer.json"));
        Assert.NotEqual(0, code);
        Assert.Contains("infer.json: no_mmap must be true or false", err);
    }

    [Theory]
    [InlineData(0, "0:00")]
    [InlineData(59.9, "0:59")]
    [InlineData(61, "1:01")]
    [InlineData(3599, "59:59")]
    [InlineData(3600, "1:00:00")]
    [InlineData(90061, "25:01:01")]
    public void ProgressClock_IsMinutesAndSeconds_ThenHours(double seconds, string expected) =>
        Assert.Equal(expected, MMSharp.Cli.ProgressBar.Clock(TimeSpan.FromSeconds(seconds)));
}
