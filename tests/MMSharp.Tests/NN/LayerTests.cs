using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.NN;

namespace MMSharp.Tests.NN;

/// <summary>The NN layers: HF parameter names and shapes, forward = the op with their parameters, tying.</summary>
public sealed class LayerTests
{
    [Fact]
    public void Linear_DeclaresWeightOutInAndOptionalBias()
    {
        using var a = new Linear(7, 5, bias: true, DType.BF16);
        Assert.Equal(["weight [5, 7]", "bias [5]"], a.StateSlots().Select(s => $"{s.Name} {Tensor.ShapeString(s.Slot.Shape)}"));
        Assert.All(a.Parameters(), p => Assert.Equal(DType.BF16, p.DType));
        using var b = new Linear(7, 5, bias: false);
        Assert.Equal(["weight"], b.StateSlots().Select(s => s.Name));
    }

    [Fact]
    public void Linear_Forward_IsXWTransposePlusB_ForF32AndBF16Weights()
    {
        using var w = Tensor.RandN([5, 7], 1);
        using var bias = Tensor.RandN([5], 2);
        using var x = Tensor.RandN([3, 7], 3);
        using var wb = Ops.Clone(w, DType.BF16);
        using var wbBack = Ops.Clone(wb, DType.F32);
        using var _ = GradMode.NoGrad();
        using var f32 = new Linear(7, 5);
        f32.LoadStateDict(new Dictionary<string, Tensor> { ["weight"] = wbBack, ["bias"] = bias });
        using var bf16 = new Linear(7, 5, dtype: DType.BF16);
        bf16.LoadStateDict(new Dictionary<string, Tensor> { ["weight"] = wb, ["bias"] = bias });
        using var y1 = f32.Forward(x);
        using var y2 = bf16.Forward(x);
        var xs = x.ToFloatArray(); var ws = wbBack.ToFloatArray(); var bs = bias.ToFloatArray();
        var a = y1.ToFloatArray(); var c = y2.ToFloatArray();
        for (int r = 0; r < 3; r++)
            for (int o = 0; o < 5; o++)
            {
                double s = bs[o];
                for (int i = 0; i < 7; i++) s += (double)xs[r * 7 + i] * ws[o * 7 + i];
                Assert.Equal(s, a[r * 5 + o], 4);
                Assert.Equal(s, c[r * 5 + o], 4);
            }
    }

    [Fact]
    public void Linear_OverAnExistingParameter_TiesIt()
    {
        using var emb = new Embedding(11, 4);
        using var head = new Linear(emb.Weight);
        Assert.Same(emb.Weight, head.Weight);
        Assert.Null(head.Bias);
        Assert.Equal(11, head.OutFeatures);
    }

    [Fact]
    public void Norms_UseTheirEpsAndParameterNames()
    {
        using var ln = new LayerNorm(6, 1e-5f);
        using var rms = new RMSNorm(6, 1e-6f);
        Assert.Equal(["weight", "bias"], ln.StateSlots().Select(s => s.Name));
        Assert.Equal(["weight"], rms.StateSlots().Select(s => s.Name));
        using var x = Tensor.FromArray(new float[] { 1, 2, 3, 4, 5, 6e-4f }, 1, 6);
        using var w = Tensor.Full([6], 2f);
        using var b = Tensor.Full([6], 0.5f);
        ln.LoadStateDict(new Dictionary<string, Tensor> { ["weight"] = w, ["bias"] = b });
        rms.LoadStateDict(new Dictionary<string, Tensor> { ["weight"] = w });
        using var _ = GradMode.NoGrad();
        using var y1 = ln.Forward(x);
        using var y2 = rms.Forward(x);
        using var e1 = Ops.LayerNorm(x, w, b, 1e-5f);
        using var e2 = Ops.RmsNorm(x, w, 1e-6f);
        Assert.Equal(e1.ToFloatArray(), y1.ToFloatArray());
        Assert.Equal(e2.ToFloatArray(), y2.ToFloatArray());
    }

    [Fact]
    public void Embedding_LooksUpRows_FromBF16Table()
    {
        using var table = Tensor.RandN([9, 3], 5);
        using var tb = Ops.Clone(table, DType.BF16);
        using var emb = new Embedding(9, 3, DType.BF16);
        emb.LoadStateDict(new Dictionary<string, Tensor> { ["weight"] = tb });
        using var ids = Tensor.FromArray(new long[] { 8, 0, 8 }, 1, 3);
        using var _ = GradMode.NoGrad();
        using var y = emb.Forward(ids);
        Assert.Equal([1, 3, 3], y.Shape);
        using var tf = Ops.Clone(tb, DType.F32);
        var t = tf.ToFloatArray();
        Assert.Equal(t[24..27].Concat(t[0..3]).Concat(t[24..27]), y.ToFloatArray());
    }

    [Fact]
    public void Conv2dPatch_DeclaresConvWeightAndBias()
    {
        using var c = new Conv2dPatch(3, 8, 14, dtype: DType.BF16);
        Assert.Equal(["weight [8, 3, 14, 14]", "bias [8]"], c.StateSlots().Select(s => $"{s.Name} {Tensor.ShapeString(s.Slot.Shape)}"));
    }
}
