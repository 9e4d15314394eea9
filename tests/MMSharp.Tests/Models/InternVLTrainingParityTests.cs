using MMSharp.Engine;
using MMSharp.Models.InternVL;
using Xunit.Abstractions;

namespace MMSharp.Tests.Models;

/// <summary>
/// Loss and parameter gradients of a shifted cross-entropy through the whole model (ViT, pixel shuffle, mlp1,
/// masked scatter, Qwen2) against the PyTorch reference of make_fixtures.py, with F32 master copies of the weights.
/// </summary>
public sealed class InternVLTrainingParityTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData("vit300m")]
    [InlineData("vit6b")]
    public void Backward_MatchesPyTorchGradients(string fixture)
    {
        using var model = InternVLChatModel.FromPretrained(InternVLFixtures.Dir(fixture));
        model.PrepareTrainableParameters(DType.F32);
        using var ids = InternVLFixtures.Ref(fixture, "input_ids");
        using var pixels = InternVLFixtures.Ref(fixture, "pixel_values");
        using var expLoss = InternVLFixtures.Ref(fixture, "loss");
        int T = ids.Shape[1];

        using var logits = model.Forward(ids, pixels);                           // [1, T, V]
        using var pred = Ops.Narrow(logits, 1, 0, T - 1);
        using var target = Ops.Narrow(ids, 1, 1, T - 1);
        using var loss = Ops.CrossEntropy(pred, target);
        loss.Backward();

        double lossErr = Math.Abs(loss.Item() - expLoss.Item()) / Math.Abs(expLoss.Item());
        output.WriteLine($"{fixture}: loss {loss.Item():F6} vs {expLoss.Item():F6} (rel {lossErr:E2})");
        Assert.True(lossErr <= 1e-5, $"loss rel err {lossErr}");
        var files = Directory.GetFiles(Path.Combine(InternVLFixtures.Dir(fixture), "reference"), "grad.*.npy");
        Assert.NotEmpty(files);
        var failures = new List<string>();
        foreach (var f in files.Order(StringComparer.Ordinal))
        {
            string name = Path.GetFileName(f)["grad.".Length..^".npy".Length];
            using var exp = MMSharp.Engine.IO.Npy.Read(f);
            var grad = model.GetParameter(name).Grad;
            if (grad == null) { failures.Add($"{name} has no gradient"); continue; }
            double e = InternVLFixtures.RelErr(grad, exp);
            output.WriteLine($"  grad {name}: max rel err {e:E2}");
            if (!(e <= 1e-4)) failures.Add($"{name}: rel err {e}");
        }
        Assert.Empty(failures);
    }
}
