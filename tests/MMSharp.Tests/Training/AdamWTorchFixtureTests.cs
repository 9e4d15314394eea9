using System.Text.Json;
using MMSharp.Engine;
using MMSharp.NN;
using MMSharp.Training;

namespace MMSharp.Tests.Training;

/// <summary>
/// Parity with <c>torch.optim.AdamW</c> itself (Debian python3-torch 1.13), fixture made by
/// <c>tests/fixtures/training/make_adamw_fixture.py</c>.
/// </summary>
public class AdamWTorchFixtureTests
{
    static JsonElement Fixture()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
        {
            var p = Path.Combine(d.FullName, "tests", "fixtures", "training", "adamw_torch.json");
            if (File.Exists(p)) return JsonDocument.Parse(File.ReadAllText(p)).RootElement;
        }
        throw new FileNotFoundException("tests/fixtures/training/adamw_torch.json not found above " + AppContext.BaseDirectory);
    }

    static float[] Floats(JsonElement e) => e.EnumerateArray().Select(x => (float)x.GetDouble()).ToArray();
    static int[] Shape(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();

    sealed class Net : Module
    {
        public Net(JsonElement f)
        {
            foreach (var name in new[] { "weight", "bias" })
            {
                using var t = Tensor.FromArray(Floats(f.GetProperty("init").GetProperty(name)), Shape(f.GetProperty("shapes").GetProperty(name)));
                RegisterParameter(name, t);
            }
        }
    }

    [Fact]
    public void SixSteps_MatchTorchAdamW_BitForBit()
    {
        var f = Fixture();
        using var net = new Net(f);
        var opt = new AdamW(net.NamedParameters(), new AdamWOptions { WeightDecay = f.GetProperty("weight_decay").GetDouble() });
        var lrs = f.GetProperty("lrs").EnumerateArray().Select(x => x.GetDouble()).ToArray();
        var grads = f.GetProperty("grads").EnumerateArray().ToArray();
        for (int s = 0; s < lrs.Length; s++)
        {
            foreach (var (name, p) in net.NamedParameters())
            {
                p.ZeroGrad();
                p.Data.Grad = Tensor.FromArray(Floats(grads[s].GetProperty(name)), p.Shape);
            }
            opt.Step(lrs[s]);
        }
        var report = new List<string>();
        foreach (var (name, p) in net.NamedParameters())
        {
            var slot = opt.Slots.Single(x => x.Name == name);
            Compare(report, name, Floats(f.GetProperty("final").GetProperty(name)), p.Data.ToFloatArray());
            Compare(report, "exp_avg." + name, Floats(f.GetProperty("state").GetProperty(name).GetProperty("exp_avg")), slot.ExpAvg.ToFloatArray());
            Compare(report, "exp_avg_sq." + name, Floats(f.GetProperty("state").GetProperty(name).GetProperty("exp_avg_sq")), slot.ExpAvgSq.ToFloatArray());
        }
        Assert.True(report.Count == 0, string.Join("\n", report));
    }

    static void Compare(List<string> report, string name, float[] want, float[] got)
    {
        int diff = 0; long maxUlp = 0;
        for (int i = 0; i < want.Length; i++)
        {
            long ulp = Math.Abs((long)BitConverter.SingleToInt32Bits(want[i]) - BitConverter.SingleToInt32Bits(got[i]));
            if (ulp != 0) { diff++; maxUlp = Math.Max(maxUlp, ulp); }
        }
        if (diff > 0) report.Add($"{name}: {diff}/{want.Length} elements differ, max {maxUlp} ulp");
    }
}
