using MMSharp.Engine.Kernels;

namespace MMSharp.Vision;

/// <summary>
/// Pillow's <c>Image.resize(size, Image.BICUBIC)</c> for 8-bit RGB, bit for bit (libImaging/Resample.c).
/// </summary>
/// <remarks>
/// Keys cubic with a = -0.5: k(x) = ((a+2)|x| - (a+3))x² + 1 for |x| &lt; 1, (((|x|-5)|x| + 8)|x| - 4)·a for |x| &lt; 2.
/// On downscale the support widens by scale = in/out (antialiasing). Per output sample:
/// center = (i + 0.5)·scale, xmin = max(0, (int)(center - support + 0.5)), xmax = min(in, (int)(center + support + 0.5)),
/// w_j = k((j + xmin - center + 0.5)/filterscale) normalised to sum 1, then rounded to 22-bit fixed point
/// (away from zero). out = clamp((2^21 + Σ src·w_int) >> 22, 0, 255).
/// Horizontal pass first over only the source rows the vertical pass reads, stored as uint8, then the
/// vertical pass; a pass is skipped when its dimension is unchanged; same size returns a copy.
/// </remarks>
public static class PillowResize
{
    const int PrecisionBits = 32 - 8 - 2;

    static double Bicubic(double x)
    {
        const double a = -0.5;
        if (x < 0.0) x = -x;
        if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
        if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
        return 0.0;
    }

    /// <summary>Fixed-point coefficients for one axis: <paramref name="bounds"/> holds (xmin, count) pairs.</summary>
    static int[] Coefficients(int inSize, int outSize, out int ksize, out int[] bounds)
    {
        double scale = (double)inSize / outSize, filterscale = Math.Max(scale, 1.0);
        double support = 2.0 * filterscale;
        ksize = (int)Math.Ceiling(support) * 2 + 1;
        var kk = new int[outSize * ksize];
        bounds = new int[outSize * 2];
        var w = new double[ksize];
        for (int xx = 0; xx < outSize; xx++)
        {
            double center = (xx + 0.5) * scale;
            double ww = 0.0, ss = 1.0 / filterscale;
            int xmin = (int)(center - support + 0.5);
            if (xmin < 0) xmin = 0;
            int xmax = (int)(center + support + 0.5);
            if (xmax > inSize) xmax = inSize;
            xmax -= xmin;
            for (int x = 0; x < xmax; x++)
            {
                w[x] = Bicubic((x + xmin - center + 0.5) * ss);
                ww += w[x];
            }
            for (int x = 0; x < xmax; x++)
            {
                double k = ww != 0.0 ? w[x] / ww : w[x];
                kk[xx * ksize + x] = k < 0 ? (int)(-0.5 + k * (1 << PrecisionBits)) : (int)(0.5 + k * (1 << PrecisionBits));
            }
            bounds[xx * 2] = xmin;
            bounds[xx * 2 + 1] = xmax;
        }
        return kk;
    }

    static byte Clip8(int acc)
    {
        int v = acc >> PrecisionBits;
        return (byte)(v < 0 ? 0 : v > 255 ? 255 : v);
    }

    /// <summary>Resizes <paramref name="src"/> to <paramref name="width"/> x <paramref name="height"/> exactly as Pillow's BICUBIC.</summary>
    public static RgbImage Bicubic(RgbImage src, int width, int height)
    {
        if (width <= 0 || height <= 0) throw new ArgumentException($"Resize: target size must be positive, got {width}x{height}");
        if (width == src.Width && height == src.Height) return new RgbImage(width, height, (byte[])src.Pixels.Clone());

        var kv = Coefficients(src.Height, height, out int ksizeV, out var boundsV);
        int yFirst = boundsV[0], yLast = boundsV[height * 2 - 2] + boundsV[height * 2 - 1];

        byte[] cur = src.Pixels;
        int curW = src.Width, curRows = src.Height, rowOffset = 0;
        if (width != src.Width)
        {
            var kh = Coefficients(src.Width, width, out int ksizeH, out var boundsH);
            int rows = yLast - yFirst;
            var tmp = new byte[width * rows * 3];
            var input = src.Pixels;
            int inW = src.Width;
            Par.ForChunks(rows, 16, (r0, r1) =>
            {
                for (int r = (int)r0; r < (int)r1; r++)
                {
                    int inRow = (r + yFirst) * inW * 3, outRow = r * width * 3;
                    for (int xx = 0; xx < width; xx++)
                    {
                        int xmin = boundsH[xx * 2], n = boundsH[xx * 2 + 1], k0 = xx * ksizeH;
                        int s0 = 1 << (PrecisionBits - 1), s1 = s0, s2 = s0;
                        int p = inRow + xmin * 3;
                        for (int x = 0; x < n; x++, p += 3)
                        {
                            int k = kh[k0 + x];
                            s0 += input[p] * k; s1 += input[p + 1] * k; s2 += input[p + 2] * k;
                        }
                        tmp[outRow + xx * 3] = Clip8(s0); tmp[outRow + xx * 3 + 1] = Clip8(s1); tmp[outRow + xx * 3 + 2] = Clip8(s2);
                    }
                }
            });
            cur = tmp; curW = width; curRows = rows; rowOffset = yFirst;
        }
        if (height == src.Height)
        {
            if (rowOffset != 0 || curRows != height) throw new InvalidOperationException("Resize: internal row window mismatch");
            return new RgbImage(width, height, cur);
        }
        var outp = new byte[curW * height * 3];
        var inp = cur;
        int w3 = curW * 3;
        Par.ForChunks(height, 8, (y0, y1) =>
        {
            for (int yy = (int)y0; yy < (int)y1; yy++)
            {
                int ymin = boundsV[yy * 2] - rowOffset, n = boundsV[yy * 2 + 1], k0 = yy * ksizeV;
                int o = yy * w3;
                for (int x = 0; x < w3; x++)
                {
                    int s = 1 << (PrecisionBits - 1);
                    int p = ymin * w3 + x;
                    for (int y = 0; y < n; y++, p += w3) s += inp[p] * kv[k0 + y];
                    outp[o + x] = Clip8(s);
                }
            }
        });
        return new RgbImage(curW, height, outp);
    }
}
