using MMSharp.Cli;
using MMSharp.Engine;
using MMSharp.Models.InternVL;
using MMSharp.Vision;

namespace MMSharp.Tests.Cli;

public class FeatureCacheTests
{
    [Fact]
    public void Get_EncodesOnAMiss_ReusesOnAHit_AndTrimDropsTheLeastRecentlyUsed()
    {
        using var dir = CliFixtures.ModelDir();
        using var model = InternVLChatModel.FromPretrained(dir.Path);
        int size = model.Config.ImageSize;
        (Tensor, int[]) Load(string image)
        {
            var t = InternVLImagePreprocessor.LoadImage(CliFixtures.Image(image), size, 1);
            return (t, [t.Shape[0]]);
        }
        // room for two one-tile entries
        using var probe = InternVLImagePreprocessor.LoadImage(CliFixtures.Image("opt_64x48.jpg"), size, 1);
        long entryBytes;
        using (var f = model.ExtractFeature(probe)) entryBytes = f.NumEl * f.DType.SizeOf();
        using var cache = new FeatureCache(model, 2 * entryBytes);

        var (a, _) = cache.Get("a", () => Load("opt_64x48.jpg"));
        // the model's own features of the pixels rounded to its dtype (bf16 here), as chat feeds them
        Assert.Equal(DType.BF16, model.Config.TorchDType);
        using (var low = Ops.To(probe, DType.BF16))
        using (var rounded = Ops.To(low, DType.F32))
        using (var direct = model.ExtractFeature(rounded))
            Assert.Equal(direct.ToFloatArray(), a.ToFloatArray());
        cache.Get("b", () => Load("opt_37x23.jpg"));
        Assert.Same(a, cache.Get("a", () => throw new InvalidOperationException("a is cached")).Features);
        cache.Get("c", () => Load("opt_130x97.jpg"));                            // three entries until the trim
        Assert.Equal((3, 1), (cache.TilesEncoded, cache.TilesReused));
        cache.Trim();                                                             // b is the least recently used
        cache.Get("a", () => throw new InvalidOperationException("a is cached"));
        cache.Get("c", () => throw new InvalidOperationException("c is cached"));
        cache.Get("b", () => Load("opt_37x23.jpg"));
        Assert.Equal((4, 3), (cache.TilesEncoded, cache.TilesReused));
    }
}
