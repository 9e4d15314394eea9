using MMSharp.Data;
using MMSharp.Vision;

namespace MMSharp.Tests.Data;

public class ConvertAndPngTests
{
    [Theory]
    [InlineData(1, 1)]
    [InlineData(7, 3)]
    [InlineData(33, 17)]
    [InlineData(64, 48)]
    public void PngEncoder_RoundTripsThroughPngDecoder(int w, int h)
    {
        var rng = new MMSharp.Engine.Rng((ulong)(w * 1000 + h));
        var px = new byte[w * h * 3];
        for (int i = 0; i < px.Length; i++)
            px[i] = (byte)(i % 5 == 0 ? rng.NextInt(256) : (i / 3 % w) * 255 / Math.Max(1, w - 1));   // noise + gradients exercise all filters
        var image = new RgbImage(w, h, px);
        var bytes = PngEncoder.Encode(image);
        var back = RgbImage.Decode(bytes, "roundtrip.png");
        Assert.Equal((w, h), (back.Width, back.Height));
        Assert.Equal(px, back.Pixels);
    }

    [Fact]
    public void PngEncoder_WritesValidChunkCrcs()
    {
        var bytes = PngEncoder.Encode(new RgbImage(2, 2, new byte[12]));
        // Flip one byte of the IDAT payload: the CRC-checking decoder must refuse it.
        int idat = bytes.AsSpan().IndexOf("IDAT"u8);
        bytes[idat + 5] ^= 0xFF;
        Assert.ThrowsAny<Exception>(() => RgbImage.Decode(bytes, "bad.png"));
    }

    [Fact]
    public void ConvertLlava_WritesInternVLJsonl_ReportsMissingImagesWithLine()
    {
        string dir = DataTestUtil.NewTempDir("llava");
        string images = Path.Combine(dir, "coco");
        Directory.CreateDirectory(images);
        DataTestUtil.SavePng(Path.Combine(images, "000001.png"), 8, 6, 1, 2, 3);
        string input = Path.Combine(dir, "llava.json");
        File.WriteAllText(input, """
            [
              {"id": "a", "image": "000001.png",
               "conversations": [{"from": "human", "value": "<image>\nWhat is in the picture?"}, {"from": "gpt", "value": "A tiny image."},
                                 {"from": "human", "value": "Colour?"}, {"from": "gpt", "value": "Dark."}]},
              {"id": "b", "image": "missing.png",
               "conversations": [{"from": "human", "value": "<image>\nHi"}, {"from": "gpt", "value": "x"}]},
              {"id": "c", "conversations": [{"from": "human", "value": "Just text <tag> é"}, {"from": "gpt", "value": "ok"}]}
            ]
            """);
        string output = Path.Combine(dir, "train.jsonl");
        var report = new DataReport();
        var result = LlavaConverter.Convert(input, images, output, report, readImageSize: true);
        Assert.Equal(new LlavaConverter.Result(2, 1, 1), result);
        Assert.Equal(BadRecordKind.MissingImage, report.Entries.Single().Kind);
        Assert.Equal($"{input}:5", report.Entries.Single().Location.ToString());

        var lines = File.ReadAllLines(output);
        Assert.Equal(2, lines.Length);
        Assert.Contains("\"value\":\"Just text <tag> é\"", lines[1]);
        var rec = DataRecord.Parse(System.Text.Encoding.UTF8.GetBytes(lines[0]), new SourceLocation(output, 1, 0));
        Assert.Equal(["000001.png"], rec.Images);
        Assert.Equal(4, rec.Conversations.Count);
        Assert.Contains("\"width\":8,\"height\":6", lines[0]);

        // The converted file loads as a dataset with the images folder as root.
        var spec = DatasetSpec.FromJsonl(output, images);
        var sample = new SampleBuilder(DataTestUtil.Tokenizer, DataTestUtil.SmallOptions()).Build(rec, spec);
        Assert.Equal([1], sample.TilesPerImage);
    }
}
