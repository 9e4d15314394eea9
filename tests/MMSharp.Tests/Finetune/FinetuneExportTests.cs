using System.Text.Json.Nodes;
using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.Models.InternVL;
using MMSharp.NN;
using MMSharp.Tests.Models;
using MMSharp.Training;
using Xunit.Abstractions;

namespace MMSharp.Tests.Finetune;

/// <summary>init (random preset in HF layout) and export (checkpoint -> HF directory) round trips.</summary>
public sealed class FinetuneExportTests(ITestOutputHelper output)
{
    [Fact]
    public void InitDemo_WritesAnHfDirectory_ThatFromPretrainedLoads()
    {
        using var dir = new IO.TempDir();
        long n = InternVLPresets.WriteRandomModel(dir.Path, InternVLPresets.Demo, 300, 298, 299, seed: 7);
        File.WriteAllText(dir.File("added_tokens.json"), "{\"<IMG_CONTEXT>\": 297}");
        output.WriteLine($"demo preset: {n:N0} parameters");
        using var model = InternVLChatModel.FromPretrained(dir.Path);
        Assert.Equal(297, model.ImgContextTokenId);
        Assert.Empty(model.LoadNotes);
        int tokens = 9; // 6×6 patches, pixel shuffle 0.5 → 3×3
        var ids = Enumerable.Repeat(297L, tokens).Prepend(5).Append(6).ToArray();
        using var idsT = Tensor.FromArray(ids, 1, ids.Length);
        using var pixels = Tensor.RandN([1, 3, InternVLPresets.Demo.ImageSize, InternVLPresets.Demo.ImageSize], 3);
        using var _ = GradMode.NoGrad();
        using var logits = model.Forward(idsT, pixels);
        Assert.Equal(new[] { 1, ids.Length, 300 }, logits.Shape);
        Assert.All(logits.ToFloatArray(), v => Assert.True(float.IsFinite(v)));
        // same seed, same weights
        using var dir2 = new IO.TempDir();
        InternVLPresets.WriteRandomModel(dir2.Path, InternVLPresets.Demo, 300, 298, 299, seed: 7);
        Assert.Equal(File.ReadAllBytes(dir.File("model.safetensors")), File.ReadAllBytes(dir2.File("model.safetensors")));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Export_ThenLoad_GivesTheSameLogits(bool lora)
    {
        using var outDir = new IO.TempDir();
        using var hf = new IO.TempDir();
        var spec = new FinetuneModelSpec(InternVLFixtures.Dir("vit300m"), LoraLlm: lora ? 4 : 0, LoraVision: lora ? 2 : 0, LoraDropout: 0f);
        using var model = spec.Build(seed: 3);
        if (lora) InternVLTraining.Freeze(model, true, true, true); // adapters stay trainable
        else InternVLTraining.Freeze(model, true, false, false);
        using var ids = InternVLFixtures.Ref("vit300m", "input_ids");
        using var pixels = InternVLFixtures.Ref("vit300m", "pixel_values");
        using var batch = new InternVLBatch { InputIds = ids.Alias(), Labels = ids.Alias(), PixelValues = pixels.Alias() };
        var trainer = new Trainer<InternVLBatch>(new InternVLTrainable(model, LossReduction.Token), new ListBatchSource<InternVLBatch>([batch], 1),
            new TrainerOptions { OutputDirectory = outDir.Path, MaxSteps = 3, Lr = 1e-2, ShowProgress = false, TensorBoard = false },
            runConfig: spec.ToJson()) { Log = TextWriter.Null };
        trainer.Run();
        model.Eval();
        using var _ = GradMode.NoGrad();
        using var expected = model.Forward(ids, pixels);

        var files = InternVLExport.Export(Path.Combine(outDir.Path, "iter_0000003"), hf.Path, mergeLora: lora, DType.F32, maxShardBytes: 40_000, log: new StringWriter());
        Assert.Contains(files, f => f.EndsWith("model.safetensors.index.json"));
        Assert.True(File.Exists(hf.File("added_tokens.json")));
        Assert.True(File.Exists(hf.File("generation_config.json")));
        using var loaded = InternVLChatModel.FromPretrained(hf.Path);
        using var actual = loaded.Forward(ids, pixels);
        double e = InternVLFixtures.RelErr(actual, expected);
        output.WriteLine($"lora={lora}: exported vs in-memory logits rel err {e:E2}");
        Assert.True(e <= 1e-5, $"rel err {e}");
    }
}
