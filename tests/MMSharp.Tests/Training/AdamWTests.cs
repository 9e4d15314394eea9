using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.NN;
using MMSharp.Tests.IO;
using MMSharp.Training;

namespace MMSharp.Tests.Training;

public class AdamWTests
{
    /// <summary>torch.optim.AdamW (single-tensor, no amsgrad) in float64, one parameter.</summary>
    sealed class RefAdamW(double[] p, bool decay, double wd, double b1 = 0.9, double b2 = 0.999, double eps = 1e-8)
    {
        public readonly double[] P = p;
        readonly double[] _m = new double[p.Length], _v = new double[p.Length];
        int _t;

        public void Step(double[] g, double lr)
        {
            _t++;
            double bc1 = 1 - Math.Pow(b1, _t), bc2 = 1 - Math.Pow(b2, _t);
            for (int i = 0; i < P.Length; i++)
            {
                P[i] *= 1 - lr * (decay ? wd : 0);
                _m[i] = b1 * _m[i] + (1 - b1) * g[i];
                _v[i] = b2 * _v[i] + (1 - b2) * g[i] * g[i];
                double denom = Math.Sqrt(_v[i]) / Math.Sqrt(bc2) + eps;
                P[i] -= lr / bc1 * _m[i] / denom;
            }
        }
    }

    sealed class Net : Module
    {
        public Net(int rows, int cols, ulong seed)
        {
            RegisterParameter("weight", Tensor.RandN([rows, cols], seed));
            RegisterParameter("bias", Tensor.RandN([cols], seed + 1));
            RegisterParameter("embed", Tensor.RandN([3, cols], seed + 2));
        }
    }

    static void SetGrads(Net net, ulong seed)
    {
        foreach (var (_, p) in net.NamedParameters())
        {
            p.ZeroGrad();
            p.Data.Grad = Tensor.RandN(p.Shape, seed++, std: 0.5f);
        }
    }

    [Fact]
    public void Step_MatchesFloat64ReferenceOfTorchFormulas_WithDecayGroups()
    {
        // 6*16+7 columns: the vector body and the scalar tail
        using var net = new Net(5, 6 * 16 + 7, 11);
        var opt = new AdamW(net.NamedParameters(), new AdamWOptions { WeightDecay = 0.05, NoDecayPatterns = ["embed"] });
        Assert.True(opt.Slots.Single(s => s.Name == "weight").Decay);
        Assert.False(opt.Slots.Single(s => s.Name == "bias").Decay);   // 1-D
        Assert.False(opt.Slots.Single(s => s.Name == "embed").Decay);  // pattern
        var refs = net.NamedParameters().ToDictionary(x => x.Name,
            x => new RefAdamW(x.Parameter.Data.ToFloatArray().Select(v => (double)v).ToArray(), x.Name == "weight", 0.05));
        double[] lrs = [1e-3, 5e-3, 2e-2, 1e-2, 3e-3, 1e-3];
        for (int s = 0; s < lrs.Length; s++)
        {
            SetGrads(net, 100 + (ulong)s * 10);
            foreach (var (name, p) in net.NamedParameters())
                refs[name].Step(p.Grad!.ToFloatArray().Select(v => (double)v).ToArray(), lrs[s]);
            opt.Step(lrs[s]);
        }
        Assert.Equal(lrs.Length, opt.StepCount);
        foreach (var (name, p) in net.NamedParameters())
        {
            var got = p.Data.ToFloatArray();
            var want = refs[name].P;
            double maxErr = 0;
            for (int i = 0; i < got.Length; i++) maxErr = Math.Max(maxErr, Math.Abs(got[i] - want[i]) / (1 + Math.Abs(want[i])));
            Assert.True(maxErr < 2e-6, $"{name}: max relative error {maxErr:E3}");
        }
    }

    [Fact]
    public void SaveLoad_ResumesBitIdentically()
    {
        using var dir = new TempDir();
        using var a = new Net(4, 33, 5);
        using var b = new Net(4, 33, 5);
        var optA = new AdamW(a.NamedParameters(), new AdamWOptions { WeightDecay = 0.1 });
        var optB = new AdamW(b.NamedParameters(), new AdamWOptions { WeightDecay = 0.1 });
        for (int s = 0; s < 3; s++) { SetGrads(a, (ulong)s * 7); optA.Step(1e-2); SetGrads(b, (ulong)s * 7); optB.Step(1e-2); }
        optB.Save(dir.File("opt.safetensors"));
        var optC = new AdamW(b.NamedParameters(), new AdamWOptions { WeightDecay = 0.1 });
        optC.Load(dir.File("opt.safetensors"));
        Assert.Equal(3, optC.StepCount);
        for (int s = 3; s < 6; s++) { SetGrads(a, (ulong)s * 7); optA.Step(1e-2); SetGrads(b, (ulong)s * 7); optC.Step(1e-2); }
        foreach (var (name, p) in a.NamedParameters())
            Assert.Equal(p.Data.ToFloatArray(), b.GetParameter(name).Data.ToFloatArray());
    }

    [Fact]
    public void Load_ThrowsNamingEntry_WhenParameterStateMissing()
    {
        using var dir = new TempDir();
        using var a = new Net(2, 3, 1);
        new AdamW(a.NamedParameters().Where(x => x.Name != "embed")).Save(dir.File("opt.safetensors"));
        var full = new AdamW(a.NamedParameters());
        var e = Assert.Throws<InvalidDataException>(() => full.Load(dir.File("opt.safetensors")));
        Assert.Contains("exp_avg.embed", e.Message);
    }

    [Fact]
    public void Constructor_Throws_WhenTrainableParameterIsBF16()
    {
        using var t = Tensor.RandN([2, 2], 1);
        using var bf = t.To(DType.BF16);
        var p = new Parameter(bf);
        var e = Assert.Throws<ArgumentException>(() => new AdamW([("w", p)]));
        Assert.Contains("PrepareTrainableParameters", e.Message);
    }

    [Fact]
    public void Step_SkipsParametersWithoutGradient()
    {
        using var net = new Net(2, 3, 1);
        var before = net.GetParameter("bias").Data.ToFloatArray();
        var opt = new AdamW(net.NamedParameters());
        net.GetParameter("weight").Data.Grad = Tensor.Ones(2, 3);
        opt.Step(0.1);
        Assert.Equal(before, net.GetParameter("bias").Data.ToFloatArray());
        Assert.NotEqual(1f, net.GetParameter("weight").Data.ToFloatArray()[0]);
    }
}
