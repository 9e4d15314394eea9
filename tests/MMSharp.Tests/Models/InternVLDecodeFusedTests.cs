using MMSharp.Engine;
using MMSharp.Engine.Kernels;
using MMSharp.Models.InternVL;
using MMSharp.NN;

namespace MMSharp.Tests.Models;

/// <summary>
/// Decode steps read q/k/v and gate/up in one fused pass each (<see cref="Linear.ForwardFused"/>); the logits must be
/// bit-identical to the separate projections, for 1 and 2 threads.
/// </summary>
[Collection("BufferPoolCounters")]
public sealed class InternVLDecodeFusedTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void DecodeSteps_WithFusedProjections_GiveTheSameLogits(int threads)
    {
        int saved = Par.Threads;
        try
        {
            Par.Threads = threads;
            using var model = InternVLChatModel.FromPretrained(InternVLFixtures.Dir("vit300m"));
            using var ids = InternVLFixtures.Ref("vit300m", "input_ids");
            using var pixels = InternVLFixtures.Ref("vit300m", "pixel_values");
            var attn = model.LanguageModel.Model.Layers[0].SelfAttn;
            using (MMSharp.Engine.Autograd.GradMode.NoGrad())
            using (var row = Tensor.RandN([1, 1, attn.QProj.InFeatures], 1))
            using (var probe = Linear.ForwardFused(row, attn.QProj, attn.KProj, attn.VProj))
                Assert.Equal(Gemm.ActivePath == Gemm.Path.Avx512, probe != null); // the fused path is the one under test
            var runs = new List<float[]>();
            foreach (bool fused in new[] { true, false })
            {
                Linear.FusedInference = fused;
                runs.Add(DecodeLogits.PrefillAndSixSteps(model, ids, pixels));
            }
            Assert.Equal(runs[1], runs[0]);
        }
        finally
        {
            Linear.FusedInference = true;
            Par.Threads = saved;
        }
    }
}
