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
    internal static JsonElement Fixture(string file = "adamw_torch.json")
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
        {
            var p = Path.Combine(d.FullName, "tests", "fixtures", "training", file);
            if (File.Exists(p)) return JsonDocument.Parse(File.ReadAllText(p)).RootElement;
        }
        throw new FileNotFoundException($"tests/fixtures/training/{file} not found above " + AppContext.BaseDirectory);
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

/// <summary>
/// HF-style schedules driven as HF Trainer drives them (torch LambdaLR, optimizer.step() then scheduler.step()) and
/// torch.nn.utils.clip_grad_norm_; fixture made by <c>tests/fixtures/training/make_schedule_clip_fixture.py</c>.
/// </summary>
public class ScheduleAndClipTorchFixtureTests
{
    static readonly JsonElement F = AdamWTorchFixtureTests.Fixture("schedule_clip_torch.json");

    [Theory]
    [InlineData("cosine", LrDecay.Cosine, 0.0)]
    [InlineData("cosine_min_lr_1e-4", LrDecay.Cosine, 1e-4)]
    [InlineData("linear", LrDecay.Linear, 0.0)]
    [InlineData("constant", LrDecay.Constant, 0.0)]
    public void LrOfEachUpdate_MatchesTorchLambdaLR(string key, LrDecay decay, double minLr)
    {
        var s = new LrSchedule(F.GetProperty("peak").GetDouble(), F.GetProperty("total").GetInt32(), F.GetProperty("warmup").GetInt32(), decay, minLr);
        var want = F.GetProperty(key).EnumerateArray().Select(x => x.GetDouble()).ToArray();
        for (int i = 0; i < want.Length; i++)
            Assert.True(Math.Abs(want[i] - s.LrAt(i)) <= 1e-18 + 1e-15 * want[i], $"{key} update {i + 1}: torch {want[i]:R}, ours {s.LrAt(i):R}");
    }

    static float[] F32(JsonElement e)
    {
        var bytes = Convert.FromBase64String(e.GetString()!);
        var r = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, r, 0, bytes.Length);
        return r;
    }

    sealed class Two : Module
    {
        public Two()
        {
            RegisterParameter("a", Tensor.Zeros(3, 37));
            RegisterParameter("b", Tensor.Zeros(17000));
        }
    }

    [Fact]
    public void ClipGradNorm_MatchesTorch()
    {
        using var m = new Two();
        foreach (var (name, p) in m.NamedParameters())
            p.Data.Grad = Tensor.FromArray(F32(F.GetProperty("clip_grads_before").GetProperty(name)), p.Shape);
        var r = GradientClipping.ClipGlobalNorm(m.Parameters().ToList(), F.GetProperty("clip_max_norm").GetDouble());
        double torchNorm = F.GetProperty("clip_norm").GetDouble(); // torch reduces in fp32
        Assert.True(Math.Abs(r.Norm - torchNorm) <= 2e-6 * torchNorm, $"norm {r.Norm:R} vs torch {torchNorm:R}");
        Assert.True(r.Clipped);
        foreach (var (name, p) in m.NamedParameters())
        {
            var want = F32(F.GetProperty("clip_grads_after").GetProperty(name));
            var got = p.Grad!.ToFloatArray();
            for (int i = 0; i < want.Length; i++)
                Assert.True(Math.Abs(want[i] - got[i]) <= 4e-6 * Math.Abs(want[i]) + 1e-30, $"{name}[{i}]: torch {want[i]:R}, ours {got[i]:R}");
        }
    }
}
