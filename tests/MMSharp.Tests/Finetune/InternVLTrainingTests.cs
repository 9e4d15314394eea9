using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.Models.InternVL;
using MMSharp.Tests.Models;
using MMSharp.Training;
using Xunit.Abstractions;

namespace MMSharp.Tests.Finetune;

/// <summary>InternVL training loss (three reductions) against float64, freezing, recompute.</summary>
[Collection(nameof(MMSharp.Tests.Training.TrainerCollection))]
public sealed class InternVLTrainingTests(ITestOutputHelper output)
{
    static InternVLChatModel Load()
    {
        var m = InternVLChatModel.FromPretrained(InternVLFixtures.Dir("vit300m"));
        m.PrepareTrainableParameters(DType.F32);
        return m;
    }

    /// <summary>The fixture's image sample (labels masked on the first half) — B = 1, with pixels.</summary>
    static InternVLBatch ImageBatch()
    {
        var ids = InternVLFixtures.Ref("vit300m", "input_ids");
        var l = ids.ToLongArray();
        for (int i = 0; i < l.Length / 2; i++) l[i] = -100;
        return new InternVLBatch { InputIds = ids, Labels = Tensor.FromArray(l, 1, l.Length), PixelValues = InternVLFixtures.Ref("vit300m", "pixel_values") };
    }

    /// <summary>Two text rows with different numbers of supervised tokens (padding labelled −100).</summary>
    static InternVLBatch TextBatch()
    {
        long[] ids = [5, 17, 33, 2, 91, 40, 7, 8, 9, 10, 11, 12, 13, 14, 0, 0, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31];
        long[] lab = (long[])ids.Clone();
        for (int i = 0; i < 4; i++) lab[i] = -100;      // row 0: prompt
        lab[12] = lab[13] = -100;                        // row 0: padding
        for (int i = 14; i < 25; i++) lab[i] = -100;     // row 1: long prompt, 3 supervised
        return new InternVLBatch { InputIds = Tensor.FromArray(ids, 2, 14), Labels = Tensor.FromArray(lab, 2, 14) };
    }

    static double Reference(Tensor logits, long[] labels, int B, int T, LossReduction red)
    {
        int V = logits.Shape[2];
        var lg = logits.ToFloatArray();
        double num = 0, den = 0;
        for (int b = 0; b < B; b++)
        {
            int nEff = 0;
            for (int t = 0; t < T; t++) if (labels[b * T + t] != -100) nEff++;
            double w = LossWeighting.Len2Weight(nEff, red);
            if (red == LossReduction.Token) w = 1;
            for (int t = 0; t < T - 1; t++)
            {
                long y = labels[b * T + t + 1];
                if (y == -100) continue;
                int o = (b * T + t) * V;
                double max = double.NegativeInfinity;
                for (int v = 0; v < V; v++) max = Math.Max(max, lg[o + v]);
                double s = 0;
                for (int v = 0; v < V; v++) s += Math.Exp(lg[o + v] - max);
                double ce = max + Math.Log(s) - lg[o + y];
                double wf = (float)w;
                num += ce * wf; den += wf;
            }
        }
        return num / den;
    }

    [Theory]
    [InlineData(LossReduction.Token)]
    [InlineData(LossReduction.Sample)]
    [InlineData(LossReduction.Square)]
    public void Loss_EqualsFloat64Reference_ForEachReduction(LossReduction red)
    {
        using var model = Load();
        model.Eval();
        using var _ = GradMode.NoGrad();
        foreach (var batch in new[] { ImageBatch(), TextBatch() })
            using (batch)
            {
                using var loss = InternVLTraining.Loss(model, batch, red);
                using var logits = model.Forward(batch.InputIds, batch.PixelValues);
                double exp = Reference(logits, batch.Labels.ToLongArray(), batch.BatchSize, batch.Length, red);
                output.WriteLine($"{red} B={batch.BatchSize}: {loss.Item():F7} vs {exp:F7}");
                Assert.True(Math.Abs(loss.Item() - exp) <= 1e-5 * Math.Abs(exp), $"{loss.Item()} vs {exp}");
            }
    }

    [Fact]
    public void Reductions_Differ_WhenSamplesHaveDifferentLengths()
    {
        using var model = Load();
        model.Eval();
        using var _ = GradMode.NoGrad();
        using var batch = TextBatch();
        var v = Enum.GetValues<LossReduction>().Select(r => { using var l = InternVLTraining.Loss(model, batch, r); return l.Item(); }).ToArray();
        Assert.Equal(3, v.Distinct().Count());
    }

    [Fact]
    public void FrozenParts_GetNoGradients()
    {
        using var model = Load();
        InternVLTraining.Freeze(model, vision: true, mlp: true, llm: false);
        using var batch = ImageBatch();
        model.Train();
        using (var loss = InternVLTraining.Loss(model, batch, LossReduction.Token)) loss.Backward();
        foreach (var (name, p) in model.NamedParameters())
        {
            bool frozen = name.StartsWith("vision_model.") || name.StartsWith("mlp1.");
            Assert.Equal(!frozen, p.RequiresGrad);
            if (frozen) Assert.True(p.Grad == null, $"{name} got a gradient");
            else Assert.True(p.Grad != null, $"{name} got no gradient");
        }
    }

    [Fact]
    public void Recompute_GivesTheSameGradients_WithDropPath()
    {
        var plain = Grads(recompute: false);
        var re = Grads(recompute: true);
        Assert.Equal(plain.Keys.Order(), re.Keys.Order());
        foreach (var (name, g) in plain)
        {
            double err = 0, scale = 1e-30;
            for (int i = 0; i < g.Length; i++) { err = Math.Max(err, Math.Abs(g[i] - re[name][i])); scale = Math.Max(scale, Math.Abs(g[i])); }
            Assert.True(err / scale <= 1e-6, $"{name}: rel err {err / scale:E2}");
        }
    }

    static Dictionary<string, float[]> Grads(bool recompute)
    {
        using var model = Load();
        InternVLTraining.SetRecompute(model, recompute);
        model.Train();  // drop_path_rate 0.1 in the fixture: the replay must draw the same masks
        using var one = ImageBatch();
        Rng.Default.Reseed(1234);
        using (var loss = InternVLTraining.Loss(model, one, LossReduction.Square)) loss.Backward();
        return model.NamedParameters().Where(x => x.Parameter.Grad != null).ToDictionary(x => x.Name, x => x.Parameter.Grad!.ToFloatArray());
    }

    [Fact]
    public void Trainer_TrainsLoRA_OnFrozenModel_AndLossFalls()
    {
        using var model = Load();
        InternVLTraining.Freeze(model, true, true, true);
        InternVLTraining.ApplyLora(model, 4, 0, null, 0f, 1);
        using var batch = TextBatch();
        using var dir = new IO.TempDir();
        var trainer = new Trainer<InternVLBatch>(new InternVLTrainable(model, LossReduction.Token), new ListBatchSource<InternVLBatch>([batch], 1),
            new TrainerOptions { OutputDirectory = dir.Path, MaxSteps = 15, Lr = 1e-2, Schedule = LrDecay.Constant, ShowProgress = false, TensorBoard = false })
        { Log = TextWriter.Null };
        trainer.Run();
        var lines = File.ReadAllLines(Path.Combine(dir.Path, "metrics.jsonl"));
        double first = System.Text.Json.JsonDocument.Parse(lines[0]).RootElement.GetProperty("loss").GetDouble();
        double last = System.Text.Json.JsonDocument.Parse(lines[^1]).RootElement.GetProperty("loss").GetDouble();
        output.WriteLine($"loss {first} -> {last}");
        Assert.True(last < first * 0.7, $"{first} -> {last}");
    }
}
