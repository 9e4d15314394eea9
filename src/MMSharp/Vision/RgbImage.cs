namespace MMSharp.Vision;

/// <summary>
/// An 8-bit RGB image, row-major, channels interleaved (HWC): the pixel (x, y) is at
/// <c>Pixels[(y * Width + x) * 3 + c]</c>. This is what Pillow's <c>Image.open(p).convert('RGB')</c> holds.
/// </summary>
public sealed class RgbImage
{
    /// <summary>
    /// Largest pixel count a decoder accepts: Pillow's DecompressionBombError threshold
    /// (2 x <c>Image.MAX_IMAGE_PIXELS</c> = 2 x 89,478,485).
    /// </summary>
    public const long MaxPixels = 178_956_970;

    /// <summary>Width in pixels.</summary>
    public int Width { get; }
    /// <summary>Height in pixels.</summary>
    public int Height { get; }
    /// <summary>Interleaved RGB bytes, length Width * Height * 3.</summary>
    public byte[] Pixels { get; }

    /// <summary>Wraps <paramref name="pixels"/> (not copied).</summary>
    public RgbImage(int width, int height, byte[] pixels)
    {
        if (width <= 0 || height <= 0) throw new ArgumentException($"RgbImage: size must be positive, got {width}x{height}");
        if (pixels.Length != (long)width * height * 3)
            throw new ArgumentException($"RgbImage: {pixels.Length} bytes do not hold {width}x{height}x3");
        Width = width; Height = height; Pixels = pixels;
    }

    /// <summary>
    /// Reads and decodes a PNG or JPEG file, converted to RGB exactly as Pillow's
    /// <c>Image.open(path).convert('RGB')</c> (no EXIF rotation, alpha dropped without compositing).
    /// </summary>
    /// <exception cref="ImageDecodeException">The file is corrupt, truncated or of an unsupported kind.</exception>
    public static RgbImage Load(string path)
    {
        byte[] data = File.ReadAllBytes(path);
        return Decode(data, Path.GetFileName(path));
    }

    /// <summary>Decodes PNG or JPEG bytes; <paramref name="source"/> names the data in error messages.</summary>
    public static RgbImage Decode(byte[] data, string source = "<memory>")
    {
        if (PngDecoder.HasSignature(data)) return PngDecoder.Decode(data, source);
        if (data.Length >= 2 && data[0] == 0xFF && data[1] == 0xD8) return JpegDecoder.Decode(data, source);
        throw new ImageDecodeException(source, "not a PNG or JPEG file (unrecognised signature)");
    }

    /// <summary>
    /// Pillow <c>Image.crop((left, top, right, bottom))</c>: an exact copy of the box; parts of the box
    /// outside the image are black (as in Pillow).
    /// </summary>
    public RgbImage Crop(int left, int top, int right, int bottom)
    {
        int w = right - left, h = bottom - top;
        if (w <= 0 || h <= 0) throw new ArgumentException($"Crop: empty box ({left}, {top}, {right}, {bottom}) on a {Width}x{Height} image");
        var dst = new byte[w * h * 3];
        int x0 = Math.Max(left, 0), x1 = Math.Min(right, Width);
        for (int y = Math.Max(top, 0); y < Math.Min(bottom, Height); y++)
        {
            if (x1 <= x0) break;
            Buffer.BlockCopy(Pixels, (y * Width + x0) * 3, dst, ((y - top) * w + (x0 - left)) * 3, (x1 - x0) * 3);
        }
        return new RgbImage(w, h, dst);
    }

    /// <summary>Pillow <c>Image.resize((width, height))</c> with its default BICUBIC filter; see <see cref="PillowResize"/>.</summary>
    public RgbImage Resize(int width, int height) => PillowResize.Bicubic(this, width, height);
}
