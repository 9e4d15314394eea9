using System.Text.Json.Nodes;
using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.Models.InternVL;

namespace MMSharp.Tests.Models;

/// <summary>Config options other than the released values, batching, and the pixel-shuffle layout.</summary>
public sealed class InternVLOptionsTests
{
    [Fact]
    public void SelectLayerMinus2_TakesFeaturesAfterTheSecondToLastLayer()
    {
        using var dir = InternVLFixtures.Copy("vit300m");
        string cfgPath = Path.Combine(dir.Path, "config.json");
        var json = JsonNode.Parse(File.ReadAllText(cfgPath))!.AsObject();
        json["select_layer"] = -2;
        File.WriteAllText(cfgPath, json.ToJsonString());

        using var model = InternVLChatModel.FromPretrained(dir.Path);
        Assert.Equal(1, model.Config.VisionLayersUsed);
        Assert.Contains(model.LoadNotes, n => n.Contains("select_layer -2"));
        using var pixels = InternVLFixtures.Ref("vit300m", "pixel_values");
        using var _ = GradMode.NoGrad();
        using var feat = model.ExtractFeature(pixels);

        // hidden_states[-2] = output of layer 0 of 2; then drop CLS, shuffle, project
        using var vit = model.VisionModel.Forward(pixels, numLayers: 1);
        using var patches = Ops.Narrow(vit, 1, 1, 16);
        using var grid = Ops.Reshape(patches, 2, 4, 4, 32);
        using var shuffled = PixelShuffle.Apply(grid, 0.5, "v2");
        using var tokens = Ops.Reshape(shuffled, 2, 4, 128);
        using var expected = model.Mlp1.Forward(tokens);
        Assert.Equal(expected.ToFloatArray(), feat.ToFloatArray());
        using var full = InternVLFixtures.Ref("vit300m", "vision_features");
        Assert.True(InternVLFixtures.RelErr(feat, full) > 1e-2); // really a different layer
    }

    [Fact]
    public void PixelShuffleV2_PutsTheFourNeighboursOfEach2x2BlockSideBySide_RowMajor()
    {
        // x[n, y, x, d] = 1000·y + 10·x + d  ->  out[n, i, j, m·2C + k·C + d] = x[n, 2i+m, 2j+k, d]
        int S = 4, C = 3;
        var data = new float[S * S * C];
        for (int y = 0; y < S; y++) for (int x = 0; x < S; x++) for (int d = 0; d < C; d++) data[(y * S + x) * C + d] = 1000 * y + 10 * x + d;
        using var t = Tensor.FromArray(data, 1, S, S, C);
        using var v2 = PixelShuffle.Apply(t, 0.5, "v2");
        using var v1 = PixelShuffle.Apply(t, 0.5, "v1");
        Assert.Equal([1, 2, 2, 4 * C], v2.Shape);
        var o2 = v2.ToFloatArray();
        var o1 = v1.ToFloatArray();
        for (int i = 0; i < 2; i++) for (int j = 0; j < 2; j++)
            for (int m = 0; m < 2; m++) for (int k = 0; k < 2; k++) for (int d = 0; d < C; d++)
            {
                float want = 1000 * (2 * i + m) + 10 * (2 * j + k) + d;
                Assert.Equal(want, o2[(i * 2 + j) * 4 * C + m * 2 * C + k * C + d]);
                Assert.Equal(want, o1[(j * 2 + i) * 4 * C + m * 2 * C + k * C + d]); // v1: tokens column-major
            }
    }

    [Fact]
    public void Forward_Batch2_GivesEachRowTheSingleSequenceLogits()
    {
        using var model = InternVLChatModel.FromPretrained(InternVLFixtures.Dir("vit300m"));
        using var ids = InternVLFixtures.Ref("vit300m", "input_ids");
        using var pixels = InternVLFixtures.Ref("vit300m", "pixel_values");
        using var expLogits = InternVLFixtures.Ref("vit300m", "logits");
        using var _ = GradMode.NoGrad();
        using var ids2 = Ops.Concat([ids, ids], 0);                               // [2, T]
        using var pixels2 = Ops.Concat([pixels, pixels], 0);                      // tiles of row 0, then row 1
        using var logits = model.Forward(ids2, pixels2);
        for (int b = 0; b < 2; b++)
        {
            using var row = Ops.Narrow(logits, 0, b, 1);
            Assert.True(InternVLFixtures.RelErr(row, expLogits) <= 1e-4);
        }

        // batched KV-cache decoding agrees with the batched full forward
        using var cache = model.NewCache(2, ids.Shape[1]);
        int T = ids.Shape[1];
        using var prompt = Ops.Narrow(ids2, 1, 0, T - 1);
        using var first = model.Prefill(prompt, pixels2, cache);
        using var lastTok = Ops.Narrow(ids2, 1, T - 1, 1);
        using var step = Ops.Contiguous(lastTok);
        using var next = model.DecodeStep(step, cache);
        using var expLast = Ops.Narrow(logits, 1, T - 1, 1);
        using var expLast2 = Ops.Reshape(expLast, 2, expLogits.Shape[2]);
        Assert.True(InternVLFixtures.RelErr(next, expLast2) <= 1e-4);
    }

    [Fact]
    public void FindAddedTokenId_ReadsTokenizerConfigDecoder_WhenNoAddedTokensJson()
    {
        using var dir = new MMSharp.Tests.IO.TempDir();
        File.WriteAllText(dir.File("tokenizer_config.json"),
            """{"added_tokens_decoder": {"151665": {"content": "<img>"}, "151667": {"content": "<IMG_CONTEXT>", "special": true}}}""");
        Assert.Equal(151667, InternVLChatModel.FindAddedTokenId(dir.Path, "<IMG_CONTEXT>"));
        Assert.Null(InternVLChatModel.FindAddedTokenId(dir.Path, "<quad>"));
    }
}
