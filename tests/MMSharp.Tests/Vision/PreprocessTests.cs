using MMSharp.Vision;

namespace MMSharp.Tests.Vision;

public sealed class PreprocessTests
{
    [Fact]
    public void Normalize_MatchesTorchvisionFloat32_ForEveryByteAndChannel()
    {
        var table = ImageNormalizer.Table();
        var expected = VisionFixtures.Manifest.GetProperty("normalize_table_bits").EnumerateArray().ToArray();
        for (int c = 0; c < 3; c++)
        {
            var bits = expected[c].EnumerateArray().Select(b => b.GetUInt32()).ToArray();
            for (int x = 0; x < 256; x++)
                Assert.True(bits[x] == BitConverter.SingleToUInt32Bits(table[c * 256 + x]),
                    $"channel {c} value {x}: got {table[c * 256 + x]:R}, numpy float32 {BitConverter.UInt32BitsToSingle(bits[x]):R}");
        }
    }

    [Fact]
    public void LoadImage_ReturnsTilesBy3By448Tensor()
    {
        using var t = InternVLImagePreprocessor.LoadImage(VisionFixtures.Src("tile_src.jpg"), 448, 6);
        Assert.Equal(new[] { 7, 3, 448, 448 }, t.Shape);
    }

    public static TheoryData<int> GetIndexCases()
    {
        var d = new TheoryData<int>();
        for (int i = 0; i < VisionFixtures.Items("get_index").Count(); i++) d.Add(i);
        return d;
    }

    [Theory]
    [MemberData(nameof(GetIndexCases))]
    public void GetIndex_MatchesPython(int index)
    {
        var e = VisionFixtures.Items("get_index").ElementAt(index);
        (double, double)? bound = null;
        if (e.GetProperty("bound").ValueKind == System.Text.Json.JsonValueKind.Array)
        {
            var b = e.GetProperty("bound").EnumerateArray().Select(v => v.GetDouble()).ToArray();
            bound = (b[0], b[1]);
        }
        var got = VideoFrameSampler.GetIndex(bound, e.GetProperty("fps").GetDouble(), e.GetProperty("max_frame").GetInt32(),
                                             e.GetProperty("first_idx").GetInt32(), e.GetProperty("num_segments").GetInt32());
        Assert.Equal(e.GetProperty("indices").EnumerateArray().Select(v => v.GetInt32()).ToArray(), got);
    }

    [Fact]
    public void GetIndex_MatchesSpecExamples()
    {
        Assert.Equal(new[] { 18, 55, 93, 130, 168, 205, 242, 280 }, VideoFrameSampler.GetIndex(null, 30, 299, 0, 8));
        Assert.Equal(new[] { 37, 62, 87, 112 }, VideoFrameSampler.GetIndex((1.0, 5.0), 25, 1000, 0, 4));
    }
}

public sealed class MultiImageTests
{
    [Fact]
    public void LoadImages_ConcatenatesTiles_AndReportsPatchesPerImage()
    {
        using var t = InternVLImagePreprocessor.LoadImages([VisionFixtures.Src("tile_src.jpg"), VisionFixtures.Src("pil_rgb.png")], out var n, 448, 6);
        // 900x610 -> (3,2) grid + thumbnail; 64x48 is upscaled to a (3,2) grid too (aspect 1.33, max 6)
        Assert.Equal(new[] { 7, DynamicTiler.TileCount(64, 48, 1, 6, 448, true) }, n);
        Assert.Equal(new[] { 7 + n[1], 3, 448, 448 }, t.Shape);
    }

    [Theory]
    [InlineData(12, 1, 12)]
    [InlineData(12, 5, 2)]
    [InlineData(6, 8, 1)]
    public void MaxNumPerImage_FollowsTrainingRule(int maxPatch, int images, int expected)
        => Assert.Equal(expected, InternVLImagePreprocessor.MaxNumPerImage(maxPatch, images));
}
