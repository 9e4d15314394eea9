namespace MMSharp.Vision;

/// <summary>
/// libjpeg-turbo 2.1+ block smoothing for progressive JPEGs (jdcoefct.c <c>decompress_smooth_data</c>):
/// when some of the first nine AC coefficients (zigzag 1..9) were never fully refined, libjpeg estimates
/// those still-zero coefficients from the 5x5 neighbourhood of DC values before the IDCT (and, when no AC
/// data at all arrived for a component, also re-estimates DC). Complete files never take this path.
/// </summary>
internal static class JpegBlockSmoothing
{
    // natural-order positions of zigzag 0..9
    const int Q01 = 1, Q10 = 8, Q20 = 16, Q11 = 9, Q02 = 2, Q03 = 3, Q12 = 10, Q21 = 17, Q30 = 24;

    /// <summary>libjpeg's <c>smoothing_ok</c>: DC known everywhere, quantisers non-zero, some AC 1..9 not exact.</summary>
    public static bool Useful(IEnumerable<(ushort[] Quant, int[] CoefBits)> comps)
    {
        bool useful = false;
        foreach (var (q, bits) in comps)
        {
            if (q[0] == 0 || q[Q01] == 0 || q[Q10] == 0 || q[Q20] == 0 || q[Q11] == 0 || q[Q02] == 0 ||
                q[Q03] == 0 || q[Q12] == 0 || q[Q21] == 0 || q[Q30] == 0) return false;
            if (bits[0] < 0) return false;
            for (int k = 1; k < 10; k++) if (bits[k] != 0) useful = true;
        }
        return useful;
    }

    static int Estimate(long q00, long qxx, long sum, int al)
    {
        long num = q00 * sum;
        int pred;
        if (num >= 0)
        {
            pred = (int)(((qxx << 7) + num) / (qxx << 8));
            if (al > 0 && pred >= 1 << al) pred = (1 << al) - 1;
        }
        else
        {
            pred = (int)(((qxx << 7) - num) / (qxx << 8));
            if (al > 0 && pred >= 1 << al) pred = (1 << al) - 1;
            pred = -pred;
        }
        return pred;
    }

    /// <summary>
    /// Smoothed IDCT of one component. <paramref name="v"/> is its vertical sampling factor and
    /// <paramref name="totalImcuRows"/> the frame's iMCU row count: libjpeg's neighbour selection is
    /// expressed in those terms (including its quirks at the last iMCU row), so we keep them.
    /// </summary>
    public static void IdctSmoothed(short[] coef, int blocksW, int widthInBlocks, int heightInBlocks, int v, int totalImcuRows,
                                    int[] coefBits, ushort[] quant, byte[] plane, int pitch)
    {
        bool changeDc = true;
        for (int k = 1; k < 10; k++) if (coefBits[k] != -1) changeDc = false;
        long q00 = quant[0], q01 = quant[Q01], q10 = quant[Q10], q20 = quant[Q20], q11 = quant[Q11], q02 = quant[Q02];
        long q03 = quant[Q03], q12 = quant[Q12], q21 = quant[Q21], q30 = quant[Q30];
        int lastImcu = totalImcuRows - 1;
        int last = widthInBlocks - 1;
        Span<short> ws = stackalloc short[64];
        for (int by = 0; by < heightInBlocks; by++)
        {
            int imcu = by / v, blockRow = by % v;
            int blockRows = v;
            if (imcu == lastImcu) { blockRows = heightInBlocks % v; if (blockRows == 0) blockRows = v; }
            // libjpeg-turbo 2.1.x neighbour rule, in iMCU-row terms (3.x rewrote it with image-wide row
            // numbers, which changes rows near iMCU boundaries; Pillow 9.4 on Debian links 2.1.5).
            int cur = by;
            int prev = blockRow > 0 || imcu > 0 ? by - 1 : cur;
            int prev2 = blockRow > 1 || imcu > 1 ? by - 2 : prev;
            int next = blockRow < blockRows - 1 || imcu < lastImcu ? by + 1 : cur;
            int next2 = blockRow < blockRows - 2 || imcu + 1 < lastImcu ? by + 2 : next;
            int DC(int row, int col) => coef[(row * blocksW + col) * 64];

            int dc01, dc02, dc03, dc04, dc05, dc06, dc07, dc08, dc09, dc10, dc11, dc12, dc13, dc14, dc15,
                dc16, dc17, dc18, dc19, dc20, dc21, dc22, dc23, dc24, dc25;
            dc01 = dc02 = dc03 = dc04 = dc05 = DC(prev2, 0);
            dc06 = dc07 = dc08 = dc09 = dc10 = DC(prev, 0);
            dc11 = dc12 = dc13 = dc14 = dc15 = DC(cur, 0);
            dc16 = dc17 = dc18 = dc19 = dc20 = DC(next, 0);
            dc21 = dc22 = dc23 = dc24 = dc25 = DC(next2, 0);
            for (int bx = 0; bx <= last; bx++)
            {
                coef.AsSpan((cur * blocksW + bx) * 64, 64).CopyTo(ws);
                if (bx == 0 && bx < last)
                {
                    dc04 = dc05 = DC(prev2, 1); dc09 = dc10 = DC(prev, 1); dc14 = dc15 = DC(cur, 1);
                    dc19 = dc20 = DC(next, 1); dc24 = dc25 = DC(next2, 1);
                }
                if (bx + 1 < last)
                {
                    dc05 = DC(prev2, bx + 2); dc10 = DC(prev, bx + 2); dc15 = DC(cur, bx + 2);
                    dc20 = DC(next, bx + 2); dc25 = DC(next2, bx + 2);
                }
                int al;
                if ((al = coefBits[1]) != 0 && ws[1] == 0)
                    ws[1] = (short)Estimate(q00, q01, changeDc
                        ? -dc01 - dc02 + dc04 + dc05 - 3 * dc06 + 13 * dc07 - 13 * dc09 + 3 * dc10 - 3 * dc11 + 38 * dc12 - 38 * dc14 +
                          3 * dc15 - 3 * dc16 + 13 * dc17 - 13 * dc19 + 3 * dc20 - dc21 - dc22 + dc24 + dc25
                        : -7 * dc11 + 50 * dc12 - 50 * dc14 + 7 * dc15, al);
                if ((al = coefBits[2]) != 0 && ws[8] == 0)
                    ws[8] = (short)Estimate(q00, q10, changeDc
                        ? -dc01 - 3 * dc02 - 3 * dc03 - 3 * dc04 - dc05 - dc06 + 13 * dc07 + 38 * dc08 + 13 * dc09 - dc10 + dc16 -
                          13 * dc17 - 38 * dc18 - 13 * dc19 + dc20 + dc21 + 3 * dc22 + 3 * dc23 + 3 * dc24 + dc25
                        : -7 * dc03 + 50 * dc08 - 50 * dc18 + 7 * dc23, al);
                if ((al = coefBits[3]) != 0 && ws[16] == 0)
                    ws[16] = (short)Estimate(q00, q20, changeDc
                        ? dc03 + 2 * dc07 + 7 * dc08 + 2 * dc09 - 5 * dc12 - 14 * dc13 - 5 * dc14 + 2 * dc17 + 7 * dc18 + 2 * dc19 + dc23
                        : -dc03 + 13 * dc08 - 24 * dc13 + 13 * dc18 - dc23, al);
                if ((al = coefBits[4]) != 0 && ws[9] == 0)
                    ws[9] = (short)Estimate(q00, q11, changeDc
                        ? -dc01 + dc05 + 9 * dc07 - 9 * dc09 - 9 * dc17 + 9 * dc19 + dc21 - dc25
                        : dc10 + dc16 - 10 * dc17 + 10 * dc19 - dc02 - dc20 + dc22 - dc24 + dc04 - dc06 + 10 * dc07 - 10 * dc09, al);
                if ((al = coefBits[5]) != 0 && ws[2] == 0)
                    ws[2] = (short)Estimate(q00, q02, changeDc
                        ? 2 * dc07 - 5 * dc08 + 2 * dc09 + dc11 + 7 * dc12 - 14 * dc13 + 7 * dc14 + dc15 + 2 * dc17 - 5 * dc18 + 2 * dc19
                        : -dc11 + 13 * dc12 - 24 * dc13 + 13 * dc14 - dc15, al);
                if (changeDc)
                {
                    if ((al = coefBits[6]) != 0 && ws[3] == 0)
                        ws[3] = (short)Estimate(q00, q03, dc07 - dc09 + 2 * dc12 - 2 * dc14 + dc17 - dc19, al);
                    if ((al = coefBits[7]) != 0 && ws[10] == 0)
                        ws[10] = (short)Estimate(q00, q12, dc07 - 3 * dc08 + dc09 - dc17 + 3 * dc18 - dc19, al);
                    if ((al = coefBits[8]) != 0 && ws[17] == 0)
                        ws[17] = (short)Estimate(q00, q21, dc07 - dc09 - 3 * dc12 + 3 * dc14 + dc17 - dc19, al);
                    if ((al = coefBits[9]) != 0 && ws[24] == 0)
                        ws[24] = (short)Estimate(q00, q30, dc07 + 2 * dc08 + dc09 - dc17 - 2 * dc18 - dc19, al);
                    long num = q00 * (-2 * dc01 - 6 * dc02 - 8 * dc03 - 6 * dc04 - 2 * dc05 - 6 * dc06 + 6 * dc07 + 42 * dc08 +
                                      6 * dc09 - 6 * dc10 - 8 * dc11 + 42 * dc12 + 152 * dc13 + 42 * dc14 - 8 * dc15 - 6 * dc16 +
                                      6 * dc17 + 42 * dc18 + 6 * dc19 - 6 * dc20 - 2 * dc21 - 6 * dc22 - 8 * dc23 - 6 * dc24 - 2 * dc25);
                    int pred = num >= 0 ? (int)(((q00 << 7) + num) / (q00 << 8)) : -(int)(((q00 << 7) - num) / (q00 << 8));
                    ws[0] = (short)pred;
                }
                JpegIdct.Islow(ws, quant, plane, by * 8 * pitch + bx * 8, pitch);
                dc01 = dc02; dc02 = dc03; dc03 = dc04; dc04 = dc05;
                dc06 = dc07; dc07 = dc08; dc08 = dc09; dc09 = dc10;
                dc11 = dc12; dc12 = dc13; dc13 = dc14; dc14 = dc15;
                dc16 = dc17; dc17 = dc18; dc18 = dc19; dc19 = dc20;
                dc21 = dc22; dc22 = dc23; dc23 = dc24; dc24 = dc25;
            }
        }
    }
}
