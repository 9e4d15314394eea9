using MMSharp.Vision;

namespace MMSharp.Tests.Vision;

public sealed class PillowResizeTests
{
    public static TheoryData<int, int> Sizes()
    {
        var d = new TheoryData<int, int>();
        foreach (var e in VisionFixtures.Items("resize")) d.Add(e.GetProperty("width").GetInt32(), e.GetProperty("height").GetInt32());
        return d;
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    public void Resize_MatchesPillowBicubic_Exactly(int width, int height)
    {
        var e = VisionFixtures.Items("resize").First(x => x.GetProperty("width").GetInt32() == width && x.GetProperty("height").GetInt32() == height);
        var src = RgbImage.Load(VisionFixtures.Src(e.GetProperty("src").GetString()!));
        var got = src.Resize(width, height);
        Assert.Equal((width, height), (got.Width, got.Height));
        if (VisionFixtures.Sha256(got.Pixels) == e.GetProperty("sha256").GetString()) return;
        string detail = e.GetProperty("raw").ValueKind == System.Text.Json.JsonValueKind.String
            ? VisionFixtures.DiffReport(File.ReadAllBytes(VisionFixtures.Expected(e.GetProperty("raw").GetString()!)), got.Pixels, width)
            : "hash differs";
        Assert.Fail($"resize to {width}x{height} differs from Pillow: {detail}");
    }

    [Fact]
    public void Resize_ToSameSize_ReturnsIndependentCopy()
    {
        var src = new RgbImage(2, 1, [1, 2, 3, 4, 5, 6]);
        var got = src.Resize(2, 1);
        Assert.Equal(src.Pixels, got.Pixels);
        Assert.NotSame(src.Pixels, got.Pixels);
    }

    [Fact]
    public void Resize_Throws_WhenSizeNotPositive()
    {
        var src = new RgbImage(2, 1, [1, 2, 3, 4, 5, 6]);
        Assert.Throws<ArgumentException>(() => src.Resize(0, 3));
    }

    [Fact]
    public void Crop_CopiesBox_AndFillsOutsideWithBlack()
    {
        var px = new byte[4 * 3 * 3];
        for (int i = 0; i < px.Length; i++) px[i] = (byte)(i + 1);
        var img = new RgbImage(4, 3, px);
        var c = img.Crop(1, 1, 3, 3);
        Assert.Equal(new byte[] { 16, 17, 18, 19, 20, 21, 28, 29, 30, 31, 32, 33 }, c.Pixels);
        var o = img.Crop(3, 2, 5, 3);           // half outside: Pillow pads with zeros
        Assert.Equal(new byte[] { 34, 35, 36, 0, 0, 0 }, o.Pixels);
    }
}
