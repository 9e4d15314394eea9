using MMSharp.Engine;
using MMSharp.Models.InternVL;
using Xunit.Abstractions;

namespace MMSharp.Tests.Models;

[CollectionDefinition("BufferPoolCounters", DisableParallelization = true)]
public sealed class BufferPoolCountersCollection;

/// <summary>Steady-state decoding takes every buffer from the pool (no fresh native allocations) and never grows the cache.</summary>
[Collection("BufferPoolCounters")]
public sealed class InternVLDecodeAllocationTests(ITestOutputHelper output)
{
    [Fact]
    public void DecodeSteps_AllocateNoFreshBuffers_AfterWarmUp()
    {
        using var model = InternVLChatModel.FromPretrained(InternVLFixtures.Dir("vit300m"));
        using var ids = InternVLFixtures.Ref("vit300m", "input_ids");
        using var pixels = InternVLFixtures.Ref("vit300m", "pixel_values");
        using var cache = model.NewCache(1, 64);
        model.Prefill(ids, pixels, cache).Dispose();
        using var tok = Tensor.FromArray(new long[] { 17 }, 1);
        for (int i = 0; i < 4; i++) model.DecodeStep(tok, cache).Dispose(); // warm the pool's size classes
        long fresh = Interlocked.Read(ref BufferPool.FreshAllocations);
        long managed = GC.GetAllocatedBytesForCurrentThread();
        const int steps = 20;
        for (int i = 0; i < steps; i++) model.DecodeStep(tok, cache).Dispose();
        long freshAfter = Interlocked.Read(ref BufferPool.FreshAllocations) - fresh;
        long managedPerStep = (GC.GetAllocatedBytesForCurrentThread() - managed) / steps;
        output.WriteLine($"{steps} decode steps: {freshAfter} fresh pool allocations; {managedPerStep} managed bytes/step (tensor objects, small arrays)");
        Assert.Equal(0, freshAfter);
    }
}
