using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.Models.InternVL;
using Xunit.Abstractions;

namespace MMSharp.Tests.Finetune;

/// <summary>Vision features of a batch of tiles equal those of each tile alone (training batches hold many tiles).</summary>
public sealed class FinetuneBatchedVisionTests(ITestOutputHelper output)
{
    [Fact]
    public void ExtractFeature_OfABatch_EqualsEachTileAlone()
    {
        using var dir = new IO.TempDir();
        InternVLPresets.WriteRandomModel(dir.Path, InternVLPresets.Demo, 300, 298, 299, seed: 7);
        File.WriteAllText(dir.File("added_tokens.json"), "{\"<IMG_CONTEXT>\": 297}");
        using var model = InternVLChatModel.FromPretrained(dir.Path);
        using var _ = GradMode.NoGrad();
        using var px = Tensor.RandN([3, 3, InternVLPresets.Demo.ImageSize, InternVLPresets.Demo.ImageSize], 11);
        using var all = model.ExtractFeature(px);
        for (int i = 0; i < 3; i++)
        {
            using var one = Ops.Narrow(px, 0, i, 1);
            using var oneC = Ops.Contiguous(one);
            using var f = model.ExtractFeature(oneC);
            using var fAll = Ops.Narrow(all, 0, i, 1);
            using var fAllC = Ops.Contiguous(fAll);
            double e = Models.InternVLFixtures.RelErr(fAllC, f);
            output.WriteLine($"tile {i}: rel err {e:E2}");
            Assert.True(e <= 1e-5, $"tile {i}: rel err {e}");
        }
    }

    [Fact]
    public void Forward_OfTwoRowsWithImages_EqualsEachRowAlone()
    {
        using var dir = new IO.TempDir();
        InternVLPresets.WriteRandomModel(dir.Path, InternVLPresets.Demo, 300, 298, 299, seed: 7);
        File.WriteAllText(dir.File("added_tokens.json"), "{\"<IMG_CONTEXT>\": 297}");
        using var model = InternVLChatModel.FromPretrained(dir.Path);
        using var _ = GradMode.NoGrad();
        int tokens = (int)Math.Pow(InternVLPresets.Demo.ImageSize / InternVLPresets.Demo.PatchSize / 2, 2);   // per tile after pixel shuffle
        long[] row0 = [5, 6, .. Enumerable.Repeat(297L, tokens), 7, 8, 9];
        long[] row1 = [15, 16, .. Enumerable.Repeat(297L, tokens), 17, 18, 19];
        int T = row0.Length;
        using var px = Tensor.RandN([2, 3, InternVLPresets.Demo.ImageSize, InternVLPresets.Demo.ImageSize], 11);
        using var ids = Tensor.FromArray([.. row0, .. row1], 2, T);
        using var both = model.Forward(ids, px);
        for (int r = 0; r < 2; r++)
        {
            using var idsR = Tensor.FromArray(r == 0 ? row0 : row1, 1, T);
            using var pxR = Ops.Narrow(px, 0, r, 1);
            using var pxC = Ops.Contiguous(pxR);
            using var alone = model.Forward(idsR, pxC);
            using var fromBoth = Ops.Narrow(both, 0, r, 1);
            using var fromBothC = Ops.Contiguous(fromBoth);
            double e = Models.InternVLFixtures.RelErr(fromBothC, alone);
            output.WriteLine($"row {r}: rel err {e:E2}");
            Assert.True(e <= 1e-5, $"row {r}: rel err {e}");
        }
    }
}
