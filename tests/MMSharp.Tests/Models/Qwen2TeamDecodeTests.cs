using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.Engine.Kernels;
using MMSharp.Models.InternVL;

namespace MMSharp.Tests.Models;

/// <summary>
/// A decode step of one sequence runs as one parallel region (<see cref="Qwen2TeamDecode"/>); its logits and the cache
/// it writes must be bit-identical to the op-by-op path, for 1 and 2 threads (and so across thread counts).
/// </summary>
[Collection("BufferPoolCounters")]
public sealed class Qwen2TeamDecodeTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void DecodeSteps_AsOneTeam_GiveTheSameLogits_OnTheFixtureCheckpoint(int threads)
    {
        int saved = Par.Threads;
        try
        {
            Par.Threads = threads;
            using var model = InternVLChatModel.FromPretrained(InternVLFixtures.Dir("vit300m"));
            using var ids = InternVLFixtures.Ref("vit300m", "input_ids");
            using var pixels = InternVLFixtures.Ref("vit300m", "pixel_values");
            var runs = new List<float[]>();
            long before = Interlocked.Read(ref Qwen2TeamDecode.StepsRun);
            foreach (bool team in new[] { true, false })
            {
                Qwen2ForCausalLM.TeamDecode = team;
                runs.Add(DecodeLogits.PrefillAndSixSteps(model, ids, pixels));
            }
            Assert.Equal(Gemm.ActivePath == Gemm.Path.Avx512 ? 6 : 0, Interlocked.Read(ref Qwen2TeamDecode.StepsRun) - before);
            Assert.Equal(runs[1], runs[0]);
        }
        finally
        {
            Qwen2ForCausalLM.TeamDecode = true;
            Par.Threads = saved;
        }
    }

    /// <summary>Odd sizes (vector tails along k, chunks that do not divide the rows), 3 query heads per kv head,
    /// BF16 and F32 weights, a tied head; 1 and 2 threads against the op-by-op path at 1 thread.</summary>
    [Theory]
    [InlineData(DType.BF16, false)]
    [InlineData(DType.F32, true)]
    public void DecodeSteps_AsOneTeam_GiveTheSameLogitsAndCache_ForOddGeometry(DType dtype, bool tied)
    {
        int saved = Par.Threads;
        var c = new Qwen2Config("Qwen2ForCausalLM", 1013, 72, 203, 3, 6, 2, 12, 4096, 1e-6, 10000.0, null,
            tied, "silu", null, 5);
        using var lm = new Qwen2ForCausalLM(c, dtype, tied);
        ulong seed = 11;
        foreach (var (name, p) in lm.NamedParameters())
        {
            using var f = name.EndsWith("norm.weight") ? Tensor.RandUniform(p.Shape, seed++, 0.5f, 1.5f) : Tensor.RandN(p.Shape, seed++, 0.2f);
            p.Set(Ops.To(f, dtype));
        }
        try
        {
            var reference = Run(lm, c, team: false, threads: 1);
            Assert.Equal(Gemm.ActivePath == Gemm.Path.Avx512, Applies(lm, c)); // the team path is the one under test
            foreach (int threads in new[] { 1, 2 })
            {
                var got = Run(lm, c, team: true, threads);
                Assert.Equal(reference.Logits, got.Logits);
                Assert.Equal(reference.Cache, got.Cache);
            }
        }
        finally
        {
            Qwen2ForCausalLM.TeamDecode = true;
            Par.Threads = saved;
        }
    }

    /// <summary>Every waiting member runs the chunks still unfinished at once (as it does for a descheduled member):
    /// chunks run twice must leave the logits and the cache bit-identical.</summary>
    [Fact]
    public void DecodeSteps_WithChunksRunTwice_GiveTheSameLogitsAndCache()
    {
        int saved = Par.Threads;
        double rescue = DecodeTeam.RescueAfterMicroseconds;
        var c = new Qwen2Config("Qwen2ForCausalLM", 1013, 72, 203, 3, 6, 2, 12, 4096, 1e-6, 10000.0, null,
            false, "silu", null, 5);
        using var lm = new Qwen2ForCausalLM(c, DType.BF16);
        ulong seed = 3;
        foreach (var (name, p) in lm.NamedParameters())
        {
            using var f = Tensor.RandN(p.Shape, seed++, 0.2f);
            p.Set(Ops.To(f, DType.BF16));
        }
        try
        {
            var reference = Run(lm, c, team: false, threads: 1);
            DecodeTeam.RescueAfterMicroseconds = 0;
            long before = Interlocked.Read(ref Qwen2TeamDecode.ChunksRescued);
            // whether a member waits (and so duplicates chunks) depends on timing: repeat until one did, at least 3 times
            for (int rep = 0; rep < 3 || (rep < 100 && Interlocked.Read(ref Qwen2TeamDecode.ChunksRescued) == before); rep++)
            {
                var got = Run(lm, c, team: true, threads: 2);
                Assert.Equal(reference.Logits, got.Logits);
                Assert.Equal(reference.Cache, got.Cache);
            }
            if (Gemm.ActivePath == Gemm.Path.Avx512) Assert.True(Interlocked.Read(ref Qwen2TeamDecode.ChunksRescued) > before, "no chunk was run twice");
        }
        finally
        {
            DecodeTeam.RescueAfterMicroseconds = rescue;
            Qwen2ForCausalLM.TeamDecode = true;
            Par.Threads = saved;
        }
    }

    static bool Applies(Qwen2ForCausalLM lm, Qwen2Config c)
    {
        using var _ = GradMode.NoGrad();
        using var x = Tensor.Zeros(1, 1, c.HiddenSize);
        using var cache = KvCache.For(c, 1, 4);
        return Qwen2TeamDecode.Applies(lm, x, cache);
    }

    static (float[] Logits, float[] Cache) Run(Qwen2ForCausalLM lm, Qwen2Config c, bool team, int threads)
    {
        Par.Threads = threads;
        Qwen2ForCausalLM.TeamDecode = team;
        using var _ = GradMode.NoGrad();
        using var cache = KvCache.For(c, 1, 40);
        var logits = new List<float>();
        using (var ids = Tensor.FromArray(new long[] { 3, 141, 59, 26, 535, 89, 793 }, 1, 7))
        using (var emb = lm.Model.EmbedTokens.Forward(ids))
        using (var l = lm.Forward(emb, cache, lastOnly: true))
            logits.AddRange(l.ToFloatArray());
        for (int i = 0; i < 20; i++)
        {
            using var tok = Tensor.FromArray(new long[] { (17 + 97 * i) % c.VocabSize }, 1, 1);
            using var emb = lm.Model.EmbedTokens.Forward(tok);
            using var l = lm.Forward(emb, cache, lastOnly: true);
            logits.AddRange(l.ToFloatArray());
        }
        var kv = new List<float>();
        for (int layer = 0; layer < c.NumHiddenLayers; layer++)
        {
            kv.AddRange(cache.KeyBuffer(layer).ToFloatArray());
            kv.AddRange(cache.ValueBuffer(layer).ToFloatArray());
        }
        return ([.. logits], [.. kv]);
    }
}
