using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.Models.InternVL;
using MMSharp.NN;
using MMSharp.Tests.Models;
using Xunit.Abstractions;

namespace MMSharp.Tests.Finetune;

/// <summary>LoRA adapters: gradients of A and B, base frozen, merge equals the unmerged model.</summary>
public sealed class LoRATests(ITestOutputHelper output)
{
    sealed class One : Module
    {
        public readonly Linear L;
        public One(int i, int o) { L = RegisterModule("proj", new Linear(i, o)); }
    }

    static void Fill(Parameter p, ulong seed)
    {
        using var t = Tensor.RandN(p.Shape, seed, 0.5f);
        p.Set(t);
        p.RequiresGrad = true;
    }

    [Fact]
    public void LoraLinear_GradientsOfAAndB_MatchFloat64Formula()
    {
        const int N = 5, In = 17, Out = 7, R = 3;
        const float alpha = 6;
        var m = new One(In, Out);
        Fill(m.L.Weight, 1); Fill(m.L.Bias!, 2);
        var names = LoraLinear.Apply(m, "", ["proj"], R, alpha, dropout: 0f, seed: 3);
        Assert.Equal(["proj"], names);
        Assert.False(m.L.Weight.RequiresGrad);
        Assert.False(m.L.Bias!.RequiresGrad);
        Fill(m.L.Lora!.B.Weight, 4);   // B = 0 at init would make dA vanish
        Assert.Equal(["proj.lora_A.weight", "proj.lora_B.weight"], m.TrainableParameters().Select(p => m.NamedParameters().First(x => x.Parameter == p).Name));

        using var x = Tensor.RandN([N, In], 5);
        using var g = Tensor.RandN([N, Out], 6);
        using var y = m.L.Forward(x);
        using var prod = Ops.Mul(y, g);
        using var loss = Ops.Sum(prod);
        loss.Backward();

        double s = alpha / R;
        var X = x.ToFloatArray(); var G = g.ToFloatArray();
        var A = m.L.Lora.A.Weight.Data.ToFloatArray(); var B = m.L.Lora.B.Weight.Data.ToFloatArray();
        var W = m.L.Weight.Data.ToFloatArray(); var bias = m.L.Bias.Data.ToFloatArray();
        // forward: y = x Wᵀ + b + s (x Aᵀ) Bᵀ
        var H = new double[N * R];
        for (int n = 0; n < N; n++) for (int r = 0; r < R; r++) { double a = 0; for (int i = 0; i < In; i++) a += X[n * In + i] * (double)A[r * In + i]; H[n * R + r] = a; }
        var yRef = new double[N * Out];
        for (int n = 0; n < N; n++) for (int o = 0; o < Out; o++)
        {
            double v = bias[o];
            for (int i = 0; i < In; i++) v += X[n * In + i] * (double)W[o * In + i];
            for (int r = 0; r < R; r++) v += s * H[n * R + r] * B[o * R + r];
            yRef[n * Out + o] = v;
        }
        AssertClose(yRef, y.ToFloatArray(), 1e-5, "y");
        // dB[o, r] = s Σn G[n,o] H[n,r];  dA[r, i] = s Σn (G B)[n,r] X[n,i]
        var dB = new double[Out * R];
        for (int o = 0; o < Out; o++) for (int r = 0; r < R; r++) { double v = 0; for (int n = 0; n < N; n++) v += G[n * Out + o] * H[n * R + r]; dB[o * R + r] = s * v; }
        var dA = new double[R * In];
        for (int r = 0; r < R; r++) for (int i = 0; i < In; i++)
        {
            double v = 0;
            for (int n = 0; n < N; n++) { double gb = 0; for (int o = 0; o < Out; o++) gb += G[n * Out + o] * (double)B[o * R + r]; v += gb * X[n * In + i]; }
            dA[r * In + i] = s * v;
        }
        AssertClose(dB, m.L.Lora.B.Weight.Grad!.ToFloatArray(), 1e-5, "dB");
        AssertClose(dA, m.L.Lora.A.Weight.Grad!.ToFloatArray(), 1e-5, "dA");
        Assert.Null(m.L.Weight.Grad);
    }

    static void AssertClose(double[] e, float[] a, double tol, string what)
    {
        Assert.Equal(e.Length, a.Length);
        double scale = Math.Max(1e-30, e.Max(Math.Abs)), err = 0;
        for (int i = 0; i < e.Length; i++) err = Math.Max(err, Math.Abs(e[i] - a[i]));
        Assert.True(err / scale <= tol, $"{what}: rel err {err / scale:E2}");
    }

    [Fact]
    public void FreshAdapter_IsTheIdentity_AndNamesKeepTheBaseKeys()
    {
        var m = new One(4, 3);
        Fill(m.L.Weight, 1); Fill(m.L.Bias!, 2);
        LoraLinear.Apply(m, "", ["proj"], 2, 4, 0f);
        Assert.Equal(["proj.weight", "proj.bias", "proj.lora_A.weight", "proj.lora_B.weight"], m.NamedParameters().Select(x => x.Name));
        Assert.Equal(new[] { 2, 4 }, m.L.Lora!.A.Weight.Shape);
        Assert.Equal(new[] { 3, 2 }, m.L.Lora.B.Weight.Shape);
        Assert.All(m.L.Lora.B.Weight.Data.ToFloatArray(), v => Assert.Equal(0f, v));
        Assert.All(m.L.Lora.A.Weight.Data.ToFloatArray(), v => Assert.InRange(v, -0.5f, 0.5f)); // U(-1/√in, 1/√in)
    }

    [Fact]
    public void Apply_Throws_WhenNoLayerMatches()
    {
        var m = new One(4, 3);
        Assert.Throws<ArgumentException>(() => LoraLinear.Apply(m, "", ["q_proj"], 2, 4, 0f));
    }

    [Fact]
    public void Merge_GivesTheSameLogits_OnTheTinyModel()
    {
        using var model = InternVLChatModel.FromPretrained(InternVLFixtures.Dir("vit300m"));
        model.PrepareTrainableParameters(DType.F32);
        var llm = LoraLinear.Apply(model, "language_model", LoraLinear.LlmTargets, 4, 8, 0.05f, seed: 1);
        var vit = LoraLinear.Apply(model, "vision_model", LoraLinear.VisionTargets, 4, 8, 0.05f, seed: 2);
        output.WriteLine($"adapted {llm.Count} LLM and {vit.Count} ViT layers");
        Assert.Contains("language_model.model.layers.0.self_attn.q_proj", llm);
        Assert.Contains("vision_model.encoder.layers.0.attn.qkv", vit);
        // non-zero B so the merge matters
        ulong seed = 10;
        foreach (var (name, p) in model.NamedParameters().ToList())
            if (name.EndsWith("lora_B.weight")) { using var t = Tensor.RandN(p.Shape, seed++, 0.05f); p.Set(t); }
        model.Eval();
        using var ids = InternVLFixtures.Ref("vit300m", "input_ids");
        using var pixels = InternVLFixtures.Ref("vit300m", "pixel_values");
        using var _ = GradMode.NoGrad();
        using var unmerged = model.Forward(ids, pixels);
        using var noLora = ForwardWithoutAdapters(model, ids, pixels);
        Assert.True(InternVLFixtures.RelErr(noLora, unmerged) > 1e-3, "adapters did not change the logits");
        Assert.Equal(llm.Count + vit.Count, LoraLinear.Merge(model));
        Assert.False(LoraLinear.HasAdapters(model));
        Assert.DoesNotContain(model.NamedParameters(), x => x.Name.Contains("lora_"));
        using var merged = model.Forward(ids, pixels);
        double e = InternVLFixtures.RelErr(merged, unmerged);
        output.WriteLine($"merged vs unmerged logits: max rel err {e:E2}");
        Assert.True(e <= 1e-5, $"rel err {e}");
    }

    static Tensor ForwardWithoutAdapters(InternVLChatModel model, Tensor ids, Tensor pixels)
    {
        using var plain = InternVLChatModel.FromPretrained(InternVLFixtures.Dir("vit300m"));
        plain.PrepareTrainableParameters(DType.F32);
        return plain.Forward(ids, pixels);
    }
}
