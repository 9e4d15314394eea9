namespace MMSharp.Vision;

/// <summary>
/// libjpeg(-turbo)'s "islow" inverse DCT (jidctint.c, 8-bit samples): dequantisation, 13-bit
/// fixed-point constants, PASS1_BITS = 2, and the post-IDCT range-limit table that Pillow's JPEG
/// decoding goes through. Bit-exact with libjpeg-turbo's C and SIMD islow paths.
/// </summary>
internal static class JpegIdct
{
    const int ConstBits = 13, Pass1Bits = 2;
    const int Fix0_298631336 = 2446, Fix0_390180644 = 3196, Fix0_541196100 = 4433, Fix0_765366865 = 6270,
              Fix0_899976223 = 7373, Fix1_175875602 = 9633, Fix1_501321110 = 12299, Fix1_847759065 = 15137,
              Fix1_961570560 = 16069, Fix2_053119869 = 16819, Fix2_562915447 = 20995, Fix3_072711026 = 25172;

    /// <summary>
    /// libjpeg's post-IDCT range-limit table indexed by <c>value &amp; 1023</c> (value centred at 0):
    /// [0,128) -> v+128, [128,512) -> 255, [512,896) -> 0, [896,1024) -> v-896. This is a clamp for
    /// |value| &lt;= 512 and wraps beyond it (corrupt data), exactly like libjpeg.
    /// </summary>
    static readonly byte[] RangeLimit = MakeRangeLimit();

    static byte[] MakeRangeLimit()
    {
        var t = new byte[1024];
        for (int i = 0; i < 1024; i++)
            t[i] = (byte)(i < 128 ? i + 128 : i < 512 ? 255 : i < 896 ? 0 : i - 896);
        return t;
    }

    static long Descale(long x, int n) => (x + (1L << (n - 1))) >> n;

    /// <summary>
    /// Dequantises and inverse-transforms one block. <paramref name="coef"/> and <paramref name="quant"/>
    /// are in natural (row-major) order; the 8x8 output goes to <paramref name="output"/> at
    /// <paramref name="offset"/> with row pitch <paramref name="stride"/>.
    /// </summary>
    public static void Islow(ReadOnlySpan<short> coef, ReadOnlySpan<ushort> quant, Span<byte> output, int offset, int stride)
    {
        Span<int> ws = stackalloc int[64];
        // Pass 1: columns from input, results scaled up by PASS1_BITS into the work array.
        for (int col = 0; col < 8; col++)
        {
            if (coef[8 + col] == 0 && coef[16 + col] == 0 && coef[24 + col] == 0 && coef[32 + col] == 0 &&
                coef[40 + col] == 0 && coef[48 + col] == 0 && coef[56 + col] == 0)
            {
                int dc = coef[col] * quant[col] << Pass1Bits;
                for (int r = 0; r < 8; r++) ws[r * 8 + col] = dc;
                continue;
            }
            long z2 = coef[16 + col] * quant[16 + col], z3 = coef[48 + col] * quant[48 + col];
            long z1 = (z2 + z3) * Fix0_541196100;
            long tmp2 = z1 + z3 * -Fix1_847759065;
            long tmp3 = z1 + z2 * Fix0_765366865;
            z2 = coef[col] * quant[col]; z3 = coef[32 + col] * quant[32 + col];
            long tmp0 = (z2 + z3) << ConstBits;
            long tmp1 = (z2 - z3) << ConstBits;
            long tmp10 = tmp0 + tmp3, tmp13 = tmp0 - tmp3, tmp11 = tmp1 + tmp2, tmp12 = tmp1 - tmp2;

            tmp0 = coef[56 + col] * quant[56 + col]; tmp1 = coef[40 + col] * quant[40 + col];
            tmp2 = coef[24 + col] * quant[24 + col]; tmp3 = coef[8 + col] * quant[8 + col];
            Odd(ref tmp0, ref tmp1, ref tmp2, ref tmp3);

            const int s = ConstBits - Pass1Bits;
            ws[0 * 8 + col] = (int)Descale(tmp10 + tmp3, s);
            ws[7 * 8 + col] = (int)Descale(tmp10 - tmp3, s);
            ws[1 * 8 + col] = (int)Descale(tmp11 + tmp2, s);
            ws[6 * 8 + col] = (int)Descale(tmp11 - tmp2, s);
            ws[2 * 8 + col] = (int)Descale(tmp12 + tmp1, s);
            ws[5 * 8 + col] = (int)Descale(tmp12 - tmp1, s);
            ws[3 * 8 + col] = (int)Descale(tmp13 + tmp0, s);
            ws[4 * 8 + col] = (int)Descale(tmp13 - tmp0, s);
        }
        // Pass 2: rows from the work array, descaled by 3 more bits for the 8-point normalisation.
        for (int row = 0; row < 8; row++)
        {
            var w = ws.Slice(row * 8, 8);
            int o = offset + row * stride;
            if (w[1] == 0 && w[2] == 0 && w[3] == 0 && w[4] == 0 && w[5] == 0 && w[6] == 0 && w[7] == 0)
            {
                byte dc = RangeLimit[(int)Descale(w[0], Pass1Bits + 3) & 1023];
                output.Slice(o, 8).Fill(dc);
                continue;
            }
            long z2 = w[2], z3 = w[6];
            long z1 = (z2 + z3) * Fix0_541196100;
            long tmp2 = z1 + z3 * -Fix1_847759065;
            long tmp3 = z1 + z2 * Fix0_765366865;
            long tmp0 = ((long)w[0] + w[4]) << ConstBits;
            long tmp1 = ((long)w[0] - w[4]) << ConstBits;
            long tmp10 = tmp0 + tmp3, tmp13 = tmp0 - tmp3, tmp11 = tmp1 + tmp2, tmp12 = tmp1 - tmp2;
            tmp0 = w[7]; tmp1 = w[5]; tmp2 = w[3]; tmp3 = w[1];
            Odd(ref tmp0, ref tmp1, ref tmp2, ref tmp3);

            const int s = ConstBits + Pass1Bits + 3;
            output[o + 0] = RangeLimit[(int)Descale(tmp10 + tmp3, s) & 1023];
            output[o + 7] = RangeLimit[(int)Descale(tmp10 - tmp3, s) & 1023];
            output[o + 1] = RangeLimit[(int)Descale(tmp11 + tmp2, s) & 1023];
            output[o + 6] = RangeLimit[(int)Descale(tmp11 - tmp2, s) & 1023];
            output[o + 2] = RangeLimit[(int)Descale(tmp12 + tmp1, s) & 1023];
            output[o + 5] = RangeLimit[(int)Descale(tmp12 - tmp1, s) & 1023];
            output[o + 3] = RangeLimit[(int)Descale(tmp13 + tmp0, s) & 1023];
            output[o + 4] = RangeLimit[(int)Descale(tmp13 - tmp0, s) & 1023];
        }
    }

    /// <summary>Odd part (Loeffler et al. with 12 multiplies); inputs are the 7,5,3,1 terms.</summary>
    static void Odd(ref long tmp0, ref long tmp1, ref long tmp2, ref long tmp3)
    {
        long z1 = tmp0 + tmp3, z2 = tmp1 + tmp2, z3 = tmp0 + tmp2, z4 = tmp1 + tmp3;
        long z5 = (z3 + z4) * Fix1_175875602;
        tmp0 *= Fix0_298631336; tmp1 *= Fix2_053119869; tmp2 *= Fix3_072711026; tmp3 *= Fix1_501321110;
        z1 *= -Fix0_899976223; z2 *= -Fix2_562915447;
        z3 = z3 * -Fix1_961570560 + z5;
        z4 = z4 * -Fix0_390180644 + z5;
        tmp0 += z1 + z3; tmp1 += z2 + z4; tmp2 += z2 + z3; tmp3 += z1 + z4;
    }
}
