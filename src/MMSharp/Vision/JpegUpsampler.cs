using MMSharp.Engine.Kernels;

namespace MMSharp.Vision;

/// <summary>
/// Chroma upsampling and colour conversion exactly as libjpeg-turbo 2.x decodes for Pillow
/// (<c>do_fancy_upsampling = TRUE</c>, so the merged upsampler is never used):
/// h2v1 and h2v2 "fancy" triangle filters (jdsample.c) when the component is more than 2 samples wide,
/// h1v2 fancy (4:4:0), box replication otherwise; edges replicate the last real sample row/column
/// (jdmainct.c context rows). YCbCr->RGB uses jdcolor.c's 16-bit fixed-point tables.
/// </summary>
internal static class JpegUpsampler
{
    const int ScaleBits = 16;
    const int OneHalf = 1 << (ScaleBits - 1);
    static int Fix(double x) => (int)(x * (1L << ScaleBits) + 0.5);

    static readonly int[] CrR = new int[256], CbB = new int[256], CrG = new int[256], CbG = new int[256];

    static JpegUpsampler()
    {
        for (int i = 0, x = -128; i < 256; i++, x++)
        {
            CrR[i] = (Fix(1.40200) * x + OneHalf) >> ScaleBits;
            CbB[i] = (Fix(1.77200) * x + OneHalf) >> ScaleBits;
            CrG[i] = -Fix(0.71414) * x;
            CbG[i] = -Fix(0.34414) * x + OneHalf;
        }
    }

    static byte Clamp(int v) => (byte)(v < 0 ? 0 : v > 255 ? 255 : v);

    /// <summary>YCbCr -> RGB for one pixel (jdcolor.c ycc_rgb_convert).</summary>
    public static void YccToRgb(int y, int cb, int cr, out byte r, out byte g, out byte b)
    {
        r = Clamp(y + CrR[cr]);
        g = Clamp(y + ((CbG[cb] + CrG[cr]) >> ScaleBits));
        b = Clamp(y + CbB[cb]);
    }

    /// <summary>
    /// Upsamples one component plane (row pitch <paramref name="pitch"/>, real size
    /// <paramref name="dw"/> x <paramref name="dh"/> = the component's downsampled_width/height) by
    /// (<paramref name="hx"/>, <paramref name="vx"/>) into a <paramref name="width"/> x <paramref name="height"/> plane.
    /// </summary>
    public static byte[] Upsample(byte[] plane, int pitch, int dw, int dh, int hx, int vx, int width, int height)
    {
        var outp = new byte[width * height];
        // every output row depends only on the source plane, so row ranges run in parallel
        Par.ForChunks(height, 64, (y0, y1) => UpsampleRows(plane, pitch, dw, dh, hx, vx, width, outp, (int)y0, (int)y1));
        return outp;
    }

    static void UpsampleRows(byte[] plane, int pitch, int dw, int dh, int hx, int vx, int width, byte[] outp, int y0, int y1)
    {
        if (hx == 1 && vx == 1)
        {
            for (int y = y0; y < y1; y++) Buffer.BlockCopy(plane, y * pitch, outp, y * width, width);
            return;
        }
        var row = new byte[Math.Max(2 * dw, width) + 8];
        if (hx == 2 && vx == 1 && dw > 2)
        {
            for (int y = y0; y < y1; y++)
            {
                H2V1Fancy(plane, y * pitch, dw, row);
                Buffer.BlockCopy(row, 0, outp, y * width, width);
            }
        }
        else if (hx == 1 && vx == 2)
        {
            // h1v2 fancy: 3/4 nearer row + 1/4 further row, bias 1 above / 2 below
            for (int y = y0; y < y1; y++)
            {
                int near = y >> 1;
                int far = (y & 1) == 0 ? Math.Max(near - 1, 0) : Math.Min(near + 1, dh - 1);
                int bias = (y & 1) == 0 ? 1 : 2;
                int n0 = near * pitch, n1 = far * pitch, o = y * width;
                for (int x = 0; x < width; x++) outp[o + x] = (byte)((plane[n0 + x] * 3 + plane[n1 + x] + bias) >> 2);
            }
        }
        else if (hx == 2 && vx == 2 && dw > 2)
        {
            var sums = new int[dw];
            for (int y = y0; y < y1; y++)
            {
                int near = y >> 1;
                int far = (y & 1) == 0 ? Math.Max(near - 1, 0) : Math.Min(near + 1, dh - 1);
                int n0 = near * pitch, n1 = far * pitch;
                for (int x = 0; x < dw; x++) sums[x] = plane[n0 + x] * 3 + plane[n1 + x];
                H2V2FancyRow(sums, dw, row);
                Buffer.BlockCopy(row, 0, outp, y * width, width);
            }
        }
        else
        {
            // box replication (h2v1/h2v2 when <= 2 samples wide, and libjpeg's int_upsample for 4:1:1 etc.)
            for (int y = y0; y < y1; y++)
            {
                int s = (y / vx) * pitch, o = y * width;
                for (int x = 0; x < width; x++) outp[o + x] = plane[s + x / hx];
            }
        }
    }

    static void H2V1Fancy(byte[] p, int s, int dw, byte[] o)
    {
        int k = 0;
        int v = p[s];
        o[k++] = (byte)v;
        o[k++] = (byte)((v * 3 + p[s + 1] + 2) >> 2);
        for (int x = 1; x < dw - 1; x++)
        {
            v = p[s + x] * 3;
            o[k++] = (byte)((v + p[s + x - 1] + 1) >> 2);
            o[k++] = (byte)((v + p[s + x + 1] + 2) >> 2);
        }
        v = p[s + dw - 1];
        o[k++] = (byte)((v * 3 + p[s + dw - 2] + 1) >> 2);
        o[k] = (byte)v;
    }

    static void H2V2FancyRow(int[] sum, int dw, byte[] o)
    {
        int k = 0;
        o[k++] = (byte)((sum[0] * 4 + 8) >> 4);
        o[k++] = (byte)((sum[0] * 3 + sum[1] + 7) >> 4);
        for (int x = 1; x < dw - 1; x++)
        {
            o[k++] = (byte)((sum[x] * 3 + sum[x - 1] + 8) >> 4);
            o[k++] = (byte)((sum[x] * 3 + sum[x + 1] + 7) >> 4);
        }
        o[k++] = (byte)((sum[dw - 1] * 3 + sum[dw - 2] + 8) >> 4);
        o[k] = (byte)((sum[dw - 1] * 4 + 7) >> 4);
    }
}
