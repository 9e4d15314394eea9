using MMSharp.Vision;

namespace MMSharp.Tests.Vision;

public sealed class DynamicTilerTests
{
    [Fact]
    public void ChooseGrid_MatchesPython_ForAllRecordedSizes()
    {
        int n = 0;
        foreach (var e in VisionFixtures.Items("aspect"))
        {
            var a = e.EnumerateArray().Select(v => v.GetInt32()).ToArray();
            var got = DynamicTiler.ChooseGrid(a[0], a[1], a[2], a[3], a[4]);
            Assert.True(got == (a[5], a[6]), $"{a[0]}x{a[1]} min {a[2]} max {a[3]} size {a[4]}: got {got}, Python ({a[5]}, {a[6]})");
            n++;
        }
        Assert.True(n > 1000);
    }

    [Theory]
    [InlineData(448, 448, 1, 1, 1)]
    [InlineData(800, 600, 4, 3, 13)]
    [InlineData(640, 480, 4, 3, 13)]
    [InlineData(1920, 1080, 4, 2, 9)]
    [InlineData(1000, 200, 5, 1, 6)]
    [InlineData(300, 3000, 1, 10, 11)]
    [InlineData(896, 448, 2, 1, 3)]
    [InlineData(1000, 1000, 3, 3, 10)]
    [InlineData(500, 500, 1, 1, 1)]
    public void ChooseGrid_MatchesSpecExamples_MaxNum12(int w, int h, int cols, int rows, int tiles)
    {
        Assert.Equal((cols, rows), DynamicTiler.ChooseGrid(w, h, 1, 12, 448));
        Assert.Equal(tiles, DynamicTiler.TileCount(w, h, 1, 12, 448, useThumbnail: true));
    }

    [Fact]
    public void TargetRatios_MaxNum12_Has35Candidates_InAscendingArea()
    {
        var r = DynamicTiler.TargetRatios(1, 12);
        Assert.Equal(35, r.Count);
        for (int i = 1; i < r.Count; i++) Assert.True(r[i - 1].Cols * r[i - 1].Rows <= r[i].Cols * r[i].Rows);
    }

    public static TheoryData<int> TilingCases()
    {
        var d = new TheoryData<int>();
        for (int i = 0; i < VisionFixtures.Items("tiling").Count(); i++) d.Add(i);
        return d;
    }

    [Theory]
    [MemberData(nameof(TilingCases))]
    public void Tile_MatchesPythonDynamicPreprocess_TileByTile(int index)
    {
        var e = VisionFixtures.Items("tiling").ElementAt(index);
        var img = RgbImage.Load(VisionFixtures.Src(e.GetProperty("src").GetString()!));
        int maxNum = e.GetProperty("max_num").GetInt32(), size = e.GetProperty("image_size").GetInt32();
        var tiles = DynamicTiler.Tile(img, 1, maxNum, size, useThumbnail: true);
        var expected = e.GetProperty("tiles").EnumerateArray().Select(t => t.GetString()).ToArray();
        Assert.Equal(expected.Length, tiles.Count);
        for (int i = 0; i < tiles.Count; i++)
        {
            Assert.Equal((size, size), (tiles[i].Width, tiles[i].Height));
            Assert.True(expected[i] == VisionFixtures.Sha256(tiles[i].Pixels), $"tile {i} of {tiles.Count} differs from Python");
        }
        var norm = ImageNormalizer.ToChwBatch(tiles);
        var bytes = new byte[norm.Length * 4];
        Buffer.BlockCopy(norm, 0, bytes, 0, bytes.Length);
        var first = e.GetProperty("normalized_first").EnumerateArray().Select(v => (float)v.GetDouble()).ToArray();
        for (int i = 0; i < first.Length; i++) Assert.Equal(first[i], norm[i]);
        Assert.Equal(e.GetProperty("normalized_sha256").GetString(), VisionFixtures.Sha256(bytes));
    }

    [Fact]
    public void Tile_SingleTile_HasNoThumbnail()
    {
        var img = new RgbImage(40, 40, new byte[40 * 40 * 3]);
        Assert.Single(DynamicTiler.Tile(img, 1, 12, 64, useThumbnail: true)); // 40x40 < 0.5*64²*4: (1,1) keeps the tie
    }
}
