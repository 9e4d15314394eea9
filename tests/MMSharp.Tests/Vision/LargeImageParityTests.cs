using System.Diagnostics;
using System.Text.Json;
using MMSharp.Vision;
using Xunit.Abstractions;

namespace MMSharp.Tests.Vision;

/// <summary>
/// Opt-in parity on photo-sized images: set MMSHARP_VISION_LARGE to the folder written by
/// tests/fixtures/images/make_large_check.py (too big to check in). Without it the test returns at once.
/// </summary>
public sealed class LargeImageParityTests(ITestOutputHelper output)
{
    [Fact]
    public void LargeImages_DecodeAndTile_MatchPillow()
    {
        var dir = Environment.GetEnvironmentVariable("MMSHARP_VISION_LARGE");
        if (string.IsNullOrEmpty(dir)) return;
        var m = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "expected.json"))).RootElement;
        foreach (var c in m.GetProperty("cases").EnumerateArray())
        {
            string file = c.GetProperty("file").GetString()!;
            RgbImage.Load(Path.Combine(dir, file)); // warm-up (JIT), so the timings below are steady state
            var sw = Stopwatch.StartNew();
            var img = RgbImage.Load(Path.Combine(dir, file));
            double tDecode = sw.Elapsed.TotalMilliseconds;
            Assert.True(VisionFixtures.Sha256(img.Pixels) == c.GetProperty("sha256").GetString(), $"{file}: decode differs from Pillow");
            sw.Restart();
            var tiles = InternVLImagePreprocessor.Tiles(img, 448, 12);
            double tTile = sw.Elapsed.TotalMilliseconds;
            sw.Restart();
            var norm = ImageNormalizer.ToChwBatch(tiles);
            double tNorm = sw.Elapsed.TotalMilliseconds;
            var expected = c.GetProperty("tiles").EnumerateArray().Select(t => t.GetString()).ToArray();
            Assert.Equal(expected.Length, tiles.Count);
            for (int i = 0; i < tiles.Count; i++)
                Assert.True(expected[i] == VisionFixtures.Sha256(tiles[i].Pixels), $"{file}: tile {i} differs from Pillow");
            var bytes = new byte[norm.Length * 4];
            Buffer.BlockCopy(norm, 0, bytes, 0, bytes.Length);
            Assert.Equal(c.GetProperty("normalized_sha256").GetString(), VisionFixtures.Sha256(bytes));
            output.WriteLine($"{file} {img.Width}x{img.Height}: decode {tDecode:F0} ms, tile+resize {tTile:F0} ms ({tiles.Count} tiles), normalise {tNorm:F0} ms");
        }
    }
}
