using System.Text.Json;
using MMSharp.Data;
using MMSharp.Models.InternVL;
using Xunit.Abstractions;

namespace MMSharp.Tests.Finetune;

/// <summary>The finetune job end to end on the shapes data and the demo preset: exact resume, export, LoRA.</summary>
public sealed class FinetuneRunTests(ITestOutputHelper output)
{
    static FinetuneSettings Settings(string model, string data, string outDir, int steps) => new()
    {
        Model = model, Data = data, Output = outDir, MaxSteps = steps, Lr = 3e-3, MicroBatchSize = 4, Seed = 5,
        NoProgress = true, NoTensorboard = true, MaxSeqLength = 256, LossReduction = "square",
    };

    static double[] Losses(string dir) => File.ReadAllLines(Path.Combine(dir, "metrics.jsonl"))
        .Select(l => JsonDocument.Parse(l).RootElement.GetProperty("loss").GetDouble()).ToArray();

    [Fact]
    public void Finetune_ResumedRun_EqualsUninterruptedRun_BitForBit()
    {
        using var tmp = new IO.TempDir();
        var shapes = ShapesDataset.Generate(tmp.File("data"), 40, 0, 3);
        InternVLPresets.WriteShapesDemoModel(tmp.File("model"), "demo", 1, out _);
        FinetuneRunner.Run(Settings(tmp.File("model"), shapes.TrainJsonl, tmp.File("full"), 6), TextWriter.Null);
        var s = Settings(tmp.File("model"), shapes.TrainJsonl, tmp.File("split"), 6);
        FinetuneRunner.Run(s with { StopAfterStep = 3 }, TextWriter.Null);
        string last = FinetuneRunner.Run(s with { Resume = true }, TextWriter.Null);
        var a = Losses(tmp.File("full"));
        var b = Losses(tmp.File("split"));
        output.WriteLine(string.Join(" ", a));
        Assert.Equal(6, a.Length);
        Assert.Equal(a[3..], b[^3..]);
        Assert.EndsWith("iter_0000006", last);

        using var hf = new IO.TempDir();
        InternVLExport.Export(last, hf.Path, mergeLora: false, MMSharp.Engine.DType.BF16);
        using var reloaded = InternVLChatModel.FromPretrained(hf.Path);
        Assert.Equal(MMSharp.Engine.DType.BF16, reloaded.LanguageModel.LmHead.Weight.DType);
    }

    [Fact]
    public void Finetune_WithLoRA_TrainsOnlyAdapters_AndExportMerges()
    {
        using var tmp = new IO.TempDir();
        var shapes = ShapesDataset.Generate(tmp.File("data"), 12, 0, 3);
        InternVLPresets.WriteShapesDemoModel(tmp.File("model"), "demo", 1, out _);
        var s = Settings(tmp.File("model"), shapes.TrainJsonl, tmp.File("run"), 2) with
        { LoraLlm = 4, LoraVision = 2, FreezeLlm = true, FreezeVision = true, FreezeMlp = true, Recompute = true };
        string last = FinetuneRunner.Run(s, TextWriter.Null);
        using var reader = MMSharp.Engine.IO.CheckpointReader.Open(Path.Combine(last, "model.safetensors"));
        Assert.All(reader.Names, n => Assert.Contains(".lora_", n));
        using var hf = new IO.TempDir();
        InternVLExport.Export(last, hf.Path, mergeLora: true, MMSharp.Engine.DType.F32);
        using var reloaded = InternVLChatModel.FromPretrained(hf.Path);
        Assert.DoesNotContain(reloaded.NamedParameters(), x => x.Name.Contains("lora_"));
    }
}

/// <summary>--config FILE.json: kebab-case option names, unknown names rejected.</summary>
public sealed class FinetuneConfigTests
{
    [Fact]
    public void Config_ReadsKebabCaseOptions()
    {
        using var tmp = new IO.TempDir();
        File.WriteAllText(tmp.File("c.json"), "{ \"lr\": 2e-5, \"freeze-vision\": true, \"lora-llm\": 16, \"loss-reduction\": \"square\", // comment\n \"max-steps\": 7, }");
        var s = FinetuneSettings.Load(tmp.File("c.json"));
        Assert.Equal(2e-5, s.Lr);
        Assert.True(s.FreezeVision);
        Assert.Equal(16, s.LoraLlm);
        Assert.Equal("square", s.LossReduction);
        Assert.Equal(7, s.MaxSteps);
        Assert.Equal(0.05, s.WeightDecay);  // defaults kept
    }

    [Fact]
    public void Config_ThrowsNamingTheField_WhenUnknown()
    {
        using var tmp = new IO.TempDir();
        File.WriteAllText(tmp.File("c.json"), "{ \"learning-rate\": 2e-5 }");
        var e = Assert.Throws<ArgumentException>(() => FinetuneSettings.Load(tmp.File("c.json")));
        Assert.Contains("learning-rate", e.Message);
    }
}
