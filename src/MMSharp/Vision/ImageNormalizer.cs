using MMSharp.Engine;

namespace MMSharp.Vision;

/// <summary>
/// torchvision <c>ToTensor()</c> + <c>Normalize(mean, std)</c> on CPU, bit for bit:
/// v = (float)x / 255f (true float32 division, as torch's CPU div), then (v - mean_f32) / std_f32,
/// with mean/std rounded from double to float32 like <c>torch.as_tensor(mean, dtype=float32)</c>.
/// Output layout is CHW.
/// </summary>
public static class ImageNormalizer
{
    /// <summary>IMAGENET_MEAN used by every InternVL checkpoint.</summary>
    public static readonly double[] ImageNetMean = [0.485, 0.456, 0.406];
    /// <summary>IMAGENET_STD.</summary>
    public static readonly double[] ImageNetStd = [0.229, 0.224, 0.225];
    /// <summary>CLIP mean (InternVL training option <c>normalize_type=clip</c>).</summary>
    public static readonly double[] ClipMean = [0.4814546, 0.4578275, 0.40821073];
    /// <summary>CLIP std.</summary>
    public static readonly double[] ClipStd = [0.2686295, 0.2613025, 0.2757711];

    /// <summary>Per-channel lookup of the 256 possible outputs (the op is elementwise, so a table is exact).</summary>
    public static float[] Table(double[]? mean = null, double[]? std = null)
    {
        mean ??= ImageNetMean; std ??= ImageNetStd;
        if (mean.Length != 3 || std.Length != 3) throw new ArgumentException("ImageNormalizer: mean and std need 3 values");
        var t = new float[3 * 256];
        for (int c = 0; c < 3; c++)
        {
            float m = (float)mean[c], s = (float)std[c];
            for (int x = 0; x < 256; x++) t[c * 256 + x] = ((float)x / 255f - m) / s;
        }
        return t;
    }

    /// <summary>Writes the normalised CHW planes of <paramref name="image"/> into <paramref name="dst"/> (3·H·W floats).</summary>
    public static void ToChw(RgbImage image, Span<float> dst, float[] table)
    {
        int n = image.Width * image.Height;
        if (dst.Length < 3 * n) throw new ArgumentException($"ImageNormalizer.ToChw: destination holds {dst.Length} floats, need {3 * n}");
        var px = image.Pixels;
        for (int c = 0; c < 3; c++)
        {
            var plane = dst.Slice(c * n, n);
            int tb = c * 256;
            for (int i = 0; i < n; i++) plane[i] = table[tb + px[3 * i + c]];
        }
    }

    /// <summary>
    /// Stacks equally sized images into a float32 [N, 3, H, W] array
    /// (<c>torch.stack([transform(t) for t in tiles])</c>).
    /// </summary>
    public static float[] ToChwBatch(IReadOnlyList<RgbImage> images, double[]? mean = null, double[]? std = null)
    {
        if (images.Count == 0) throw new ArgumentException("ImageNormalizer: no images");
        int w = images[0].Width, h = images[0].Height;
        var table = Table(mean, std);
        var data = new float[(long)images.Count * 3 * w * h];
        for (int i = 0; i < images.Count; i++)
        {
            if (images[i].Width != w || images[i].Height != h)
                throw new ArgumentException($"ImageNormalizer: image {i} is {images[i].Width}x{images[i].Height}, expected {w}x{h}");
            ToChw(images[i], data.AsSpan(i * 3 * w * h, 3 * w * h), table);
        }
        return data;
    }

    /// <summary>As <see cref="ToChwBatch"/>, returned as an F32 <see cref="Tensor"/> [N, 3, H, W] (caller disposes).</summary>
    public static Tensor ToTensor(IReadOnlyList<RgbImage> images, double[]? mean = null, double[]? std = null)
        => Tensor.FromArray(ToChwBatch(images, mean, std), images.Count, 3, images[0].Height, images[0].Width);
}
