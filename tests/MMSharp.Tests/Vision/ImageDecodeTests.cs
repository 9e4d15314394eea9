using MMSharp.Vision;

namespace MMSharp.Tests.Vision;

public sealed class ImageDecodeTests
{
    public static TheoryData<string> DecodeFiles()
    {
        var d = new TheoryData<string>();
        foreach (var e in VisionFixtures.Items("decode")) d.Add(e.GetProperty("file").GetString()!);
        return d;
    }

    [Theory]
    [MemberData(nameof(DecodeFiles))]
    public void Decode_MatchesPillowConvertRgb_Exactly(string file)
    {
        var e = VisionFixtures.Items("decode").First(x => x.GetProperty("file").GetString() == file);
        var img = RgbImage.Load(VisionFixtures.Src(file));
        Assert.Equal(e.GetProperty("width").GetInt32(), img.Width);
        Assert.Equal(e.GetProperty("height").GetInt32(), img.Height);
        string sha = VisionFixtures.Sha256(img.Pixels);
        if (sha == e.GetProperty("sha256").GetString()) return;
        string detail = "no raw expected bytes stored";
        if (e.GetProperty("raw").ValueKind == System.Text.Json.JsonValueKind.String)
            detail = VisionFixtures.DiffReport(File.ReadAllBytes(VisionFixtures.Expected(e.GetProperty("raw").GetString()!)), img.Pixels, img.Width);
        Assert.Fail($"{file} ({e.GetProperty("note").GetString()}): differs from Pillow: {detail}");
    }
}
