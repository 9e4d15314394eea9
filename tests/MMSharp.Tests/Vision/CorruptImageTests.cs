using MMSharp.Vision;

namespace MMSharp.Tests.Vision;

public sealed class CorruptImageTests
{
    static readonly string[] Samples =
    [
        "q75_s2_37x23.jpg", "prog_s2_37x23.jpg", "prog_s1_130x97.jpg", "cj_restart1.jpg", "cj_restart_prog.jpg", "cmyk_prog_37x23.jpg",
        "grey_prog_64x48.jpg", "cj_arith_prog_restart.jpg", "cj_arith.jpg", "cj_prog_dconly.jpg", "rgb8_37x23.png", "p4_37x23_i.png", "g16_37x23_i.png", "rgba16_8x3.png",
    ];

    static string Copy(string name, byte[] data)
    {
        var path = Path.Combine(Path.GetTempPath(), "mmsharp-vision-" + Guid.NewGuid().ToString("N")[..8] + "-" + name);
        File.WriteAllBytes(path, data);
        return path;
    }

    [Fact]
    public void Load_ThrowsNamingFile_WhenJpegTruncated()
    {
        foreach (var name in Samples.Where(s => s.EndsWith(".jpg")))
        {
            var data = File.ReadAllBytes(VisionFixtures.Src(name));
            foreach (int cut in new[] { 1, 2, 3, 10, data.Length / 2, data.Length - 4, data.Length - 2 })
            {
                var path = Copy(name, data[..(data.Length - cut)]);
                try
                {
                    var ex = Assert.Throws<ImageDecodeException>(() => RgbImage.Load(path));
                    Assert.Contains(Path.GetFileName(path), ex.Message);
                    Assert.Contains("truncated", ex.Message, StringComparison.OrdinalIgnoreCase);
                }
                finally { File.Delete(path); }
            }
        }
    }

    [Fact]
    public void Load_ThrowsNamingFile_WhenPngImageDataTruncated()
    {
        foreach (var name in Samples.Where(s => s.EndsWith(".png")))
        {
            var data = File.ReadAllBytes(VisionFixtures.Src(name));
            foreach (int keep in new[] { 8, 20, 40, data.Length / 2 })
            {
                var path = Copy(name, data[..keep]);
                try
                {
                    var ex = Assert.Throws<ImageDecodeException>(() => RgbImage.Load(path));
                    Assert.Contains(Path.GetFileName(path), ex.Message);
                }
                finally { File.Delete(path); }
            }
        }
    }

    [Fact]
    public void Load_AcceptsPngMissingIend_LikePillow()
    {
        var data = File.ReadAllBytes(VisionFixtures.Src("rgb8_37x23.png"));
        var full = RgbImage.Decode(data);
        foreach (int cut in new[] { 1, 4, 12 })
            Assert.Equal(full.Pixels, RgbImage.Decode(data[..(data.Length - cut)]).Pixels);
    }

    [Fact]
    public void Load_ThrowsCrcMismatch_WhenPngChunkCorrupted()
    {
        var data = File.ReadAllBytes(VisionFixtures.Src("rgb8_37x23.png"));
        data[50] ^= 0x10; // inside the first IDAT
        var ex = Assert.Throws<ImageDecodeException>(() => RgbImage.Decode(data, "broken.png"));
        Assert.StartsWith("broken.png: CRC mismatch in PNG chunk 'IDAT'", ex.Message);
    }

    [Fact]
    public void Decode_Throws_WhenSignatureUnknown()
    {
        var ex = Assert.Throws<ImageDecodeException>(() => RgbImage.Decode("GIF89a......"u8.ToArray(), "x.gif"));
        Assert.Contains("x.gif", ex.Message);
    }

    /// <summary>Seeded byte corruption: every outcome is a decoded image or an ImageDecodeException, never another exception or a hang.</summary>
    [Fact]
    public void Decode_NeverThrowsOtherExceptions_OnRandomCorruption()
    {
        var rng = new Random(12345);
        foreach (var name in Samples)
        {
            var orig = File.ReadAllBytes(VisionFixtures.Src(name));
            for (int trial = 0; trial < 60; trial++)
            {
                var data = (byte[])orig.Clone();
                int flips = 1 + rng.Next(4);
                for (int f = 0; f < flips; f++) data[rng.Next(2, data.Length)] = (byte)rng.Next(256);
                if (name.EndsWith(".png")) FixCrcs(data); // get past the CRC check into the decoder proper
                try { RgbImage.Decode(data, name); }
                catch (ImageDecodeException) { }
                catch (Exception e) { Assert.Fail($"{name} trial {trial}: {e.GetType().Name}: {e.Message}\n{e.StackTrace}"); }
            }
        }
    }

    static void FixCrcs(byte[] d)
    {
        int pos = 8;
        while (pos + 12 <= d.Length)
        {
            long len = (uint)(d[pos] << 24 | d[pos + 1] << 16 | d[pos + 2] << 8 | d[pos + 3]);
            if (pos + 12 + len > d.Length) break;
            uint c = 0xFFFFFFFF;
            for (long i = pos + 4; i < pos + 8 + len; i++)
            {
                c ^= d[i];
                for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
            }
            c ^= 0xFFFFFFFF;
            int o = pos + 8 + (int)len;
            d[o] = (byte)(c >> 24); d[o + 1] = (byte)(c >> 16); d[o + 2] = (byte)(c >> 8); d[o + 3] = (byte)c;
            pos = o + 4;
        }
    }
}
