using System.Buffers.Binary;

namespace MMSharp.Vision;

/// <summary>
/// Arithmetic-coded JPEG (SOF9 sequential, SOF10 progressive): the QM-coder of ITU-T T.81 Annex D/F as
/// implemented in libjpeg's jdarith.c (which libjpeg-turbo, and therefore Pillow, decodes with).
/// Coefficients land in the same arrays as the Huffman path; everything after is shared.
/// </summary>
internal sealed partial class JpegDecoder
{
    /// <summary>Table D.2 packed as in jaricom.c: Qe &lt;&lt; 16 | NextMPS &lt;&lt; 8 | SwitchMPS &lt;&lt; 7 | NextLPS.</summary>
    static readonly int[] AriTab = BuildAriTab();

    static int[] BuildAriTab()
    {
        // (Qe, NextLPS, NextMPS, SwitchMPS) for states 0..112, plus 113 = fixed probability 0.5
        ReadOnlySpan<int> t =
        [
            0x5a1d, 1, 1, 1, 0x2586, 14, 2, 0, 0x1114, 16, 3, 0, 0x080b, 18, 4, 0, 0x03d8, 20, 5, 0,
            0x01da, 23, 6, 0, 0x00e5, 25, 7, 0, 0x006f, 28, 8, 0, 0x0036, 30, 9, 0, 0x001a, 33, 10, 0,
            0x000d, 35, 11, 0, 0x0006, 9, 12, 0, 0x0003, 10, 13, 0, 0x0001, 12, 13, 0, 0x5a7f, 15, 15, 1,
            0x3f25, 36, 16, 0, 0x2cf2, 38, 17, 0, 0x207c, 39, 18, 0, 0x17b9, 40, 19, 0, 0x1182, 42, 20, 0,
            0x0cef, 43, 21, 0, 0x09a1, 45, 22, 0, 0x072f, 46, 23, 0, 0x055c, 48, 24, 0, 0x0406, 49, 25, 0,
            0x0303, 51, 26, 0, 0x0240, 52, 27, 0, 0x01b1, 54, 28, 0, 0x0144, 56, 29, 0, 0x00f5, 57, 30, 0,
            0x00b7, 59, 31, 0, 0x008a, 60, 32, 0, 0x0068, 62, 33, 0, 0x004e, 63, 34, 0, 0x003b, 32, 35, 0,
            0x002c, 33, 9, 0, 0x5ae1, 37, 37, 1, 0x484c, 64, 38, 0, 0x3a0d, 65, 39, 0, 0x2ef1, 67, 40, 0,
            0x261f, 68, 41, 0, 0x1f33, 69, 42, 0, 0x19a8, 70, 43, 0, 0x1518, 72, 44, 0, 0x1177, 73, 45, 0,
            0x0e74, 74, 46, 0, 0x0bfb, 75, 47, 0, 0x09f8, 77, 48, 0, 0x0861, 78, 49, 0, 0x0706, 79, 50, 0,
            0x05cd, 48, 51, 0, 0x04de, 50, 52, 0, 0x040f, 50, 53, 0, 0x0363, 51, 54, 0, 0x02d4, 52, 55, 0,
            0x025c, 53, 56, 0, 0x01f8, 54, 57, 0, 0x01a4, 55, 58, 0, 0x0160, 56, 59, 0, 0x0125, 57, 60, 0,
            0x00f6, 58, 61, 0, 0x00cb, 59, 62, 0, 0x00ab, 61, 63, 0, 0x008f, 61, 32, 0, 0x5b12, 65, 65, 1,
            0x4d04, 80, 66, 0, 0x412c, 81, 67, 0, 0x37d8, 82, 68, 0, 0x2fe8, 83, 69, 0, 0x293c, 84, 70, 0,
            0x2379, 86, 71, 0, 0x1edf, 87, 72, 0, 0x1aa9, 87, 73, 0, 0x174e, 72, 74, 0, 0x1424, 72, 75, 0,
            0x119c, 74, 76, 0, 0x0f6b, 74, 77, 0, 0x0d51, 75, 78, 0, 0x0bb6, 77, 79, 0, 0x0a40, 77, 48, 0,
            0x5832, 80, 81, 1, 0x4d1c, 88, 82, 0, 0x438e, 89, 83, 0, 0x3bdd, 90, 84, 0, 0x34ee, 91, 85, 0,
            0x2eae, 92, 86, 0, 0x299a, 93, 87, 0, 0x2516, 86, 71, 0, 0x5570, 88, 89, 1, 0x4ca9, 95, 90, 0,
            0x44d9, 96, 91, 0, 0x3e22, 97, 92, 0, 0x3824, 99, 93, 0, 0x32b4, 99, 94, 0, 0x2e17, 93, 86, 0,
            0x56a8, 95, 96, 1, 0x4f46, 101, 97, 0, 0x47e5, 102, 98, 0, 0x41cf, 103, 99, 0, 0x3c3d, 104, 100, 0,
            0x375e, 99, 93, 0, 0x5231, 105, 102, 0, 0x4c0f, 106, 103, 0, 0x4639, 107, 104, 0, 0x415e, 103, 99, 0,
            0x5627, 105, 106, 1, 0x50e7, 108, 107, 0, 0x4b85, 109, 103, 0, 0x5597, 110, 109, 0, 0x504f, 111, 107, 0,
            0x5a10, 110, 111, 1, 0x5522, 112, 109, 0, 0x59eb, 112, 111, 1, 0x5a1d, 113, 113, 0,
        ];
        var tab = new int[114];
        for (int i = 0; i < 114; i++)
            tab[i] = t[4 * i] << 16 | t[4 * i + 2] << 8 | t[4 * i + 3] << 7 | t[4 * i + 1];
        return tab;
    }

    bool _arithmetic;
    long _ac_c, _ac_a; // C and A registers
    int _ac_ct;        // bit shift counter (-16 at the start of a segment)
    readonly byte[][] _dcStats = [new byte[64], new byte[64], new byte[64], new byte[64]];
    readonly byte[][] _acStats = [new byte[256], new byte[256], new byte[256], new byte[256]];
    readonly byte[] _fixedBin = [113];
    readonly int[] _dcL = [0, 0, 0, 0], _dcU = [1, 1, 1, 1], _acK = [5, 5, 5, 5];

    /// <summary>DAC marker: conditioning parameters (DC: L, U; AC: Kx).</summary>
    void ReadArithmeticConditioning()
    {
        var s = Segment();
        if (s.Length % 2 != 0) throw Err("corrupt DAC segment");
        for (int p = 0; p < s.Length; p += 2)
        {
            int tc = s[p] >> 4, tb = s[p] & 15, v = s[p + 1];
            if (tb > 3 || tc > 1) throw Err($"corrupt DAC: class {tc}, table {tb}");
            if (tc == 0)
            {
                _dcL[tb] = v & 15; _dcU[tb] = v >> 4;
                if (_dcL[tb] > _dcU[tb]) throw Err("corrupt DAC: L > U");
            }
            else
            {
                if (v < 1 || v > 63) throw Err($"corrupt DAC: Kx = {v}");
                _acK[tb] = v;
            }
        }
    }

    /// <summary>Start of scan / restart: statistics of the tables this scan uses are cleared (per table, shared by components).</summary>
    void ArithmeticResetStatistics(Component[] scomp, int ss, int ah)
    {
        foreach (var c in scomp)
        {
            if (!_progressive || (ss == 0 && ah == 0))
            {
                Array.Clear(_dcStats[c.DcTable]);
                c.DcPred = 0; c.DcContext = 0;
            }
            if (!_progressive || ss != 0) Array.Clear(_acStats[c.AcTable]);
        }
        _ac_c = 0; _ac_a = 0; _ac_ct = -16;
    }

    int ArithmeticByte()
    {
        if (_hitMarker) return 0;
        if (_pos >= _d.Length) throw Err("truncated JPEG: file ends inside the arithmetic-coded data");
        int data = _d[_pos++];
        if (data != 0xFF) return data;
        int ffAt = _pos - 1;
        do
        {
            if (_pos >= _d.Length) throw Err("truncated JPEG: file ends inside the arithmetic-coded data");
            ffAt = _pos - 1;
            data = _d[_pos++];
        } while (data == 0xFF);
        if (data == 0) return 0xFF;
        // a marker ends the segment; arithmetic decoding legally continues on zero bits
        _hitMarker = true;
        _pos = ffAt;
        return 0;
    }

    /// <summary>libjpeg's arith_decode: one binary decision with the adaptive state <paramref name="st"/>[<paramref name="i"/>].</summary>
    int ArithmeticDecode(byte[] st, int i)
    {
        while (_ac_a < 0x8000)
        {
            if (--_ac_ct < 0)
            {
                int data = ArithmeticByte();
                _ac_c = (_ac_c << 8) | (long)data;
                if ((_ac_ct += 8) < 0)
                    if (++_ac_ct == 0) _ac_a = 0x8000; // got the 2 initial bytes
            }
            _ac_a <<= 1;
        }
        int sv = st[i];
        int qe = AriTab[sv & 0x7F];
        int nl = qe & 0xFF; qe >>= 8;
        int nm = qe & 0xFF; qe >>= 8;
        long temp = _ac_a - qe;
        _ac_a = temp;
        temp <<= _ac_ct;
        if (_ac_c >= temp)
        {
            _ac_c -= temp;
            if (_ac_a < qe) { _ac_a = qe; st[i] = (byte)((sv & 0x80) ^ nm); }
            else { _ac_a = qe; st[i] = (byte)((sv & 0x80) ^ nl); sv ^= 0x80; }
        }
        else if (_ac_a < 0x8000)
        {
            if (_ac_a < qe) { st[i] = (byte)((sv & 0x80) ^ nl); sv ^= 0x80; }
            else st[i] = (byte)((sv & 0x80) ^ nm);
        }
        return sv >> 7;
    }

    /// <summary>Figures F.19-F.24: DC difference with conditioning on the previous difference's category.</summary>
    int ArithmeticDcDiff(Component c)
    {
        int tbl = c.DcTable;
        var st = _dcStats[tbl];
        int s0 = c.DcContext;
        if (ArithmeticDecode(st, s0) == 0) { c.DcContext = 0; return 0; }
        int sign = ArithmeticDecode(st, s0 + 1);
        int p = s0 + 2 + sign;
        int m = ArithmeticDecode(st, p);
        if (m != 0)
        {
            p = 20;
            while (ArithmeticDecode(st, p) != 0)
            {
                if ((m <<= 1) == 0x8000) throw Err("corrupt arithmetic-coded JPEG: DC magnitude overflow");
                p++;
            }
        }
        if (m < (1 << _dcL[tbl]) >> 1) c.DcContext = 0;
        else if (m > (1 << _dcU[tbl]) >> 1) c.DcContext = 12 + sign * 4;
        else c.DcContext = 4 + sign * 4;
        int v = m;
        p += 14;
        while ((m >>= 1) != 0)
            if (ArithmeticDecode(st, p) != 0) v |= m;
        v += 1;
        return sign != 0 ? -v : v;
    }

    /// <summary>Figure F.20 for coefficients ss..se (sequential: 1..63), values shifted left by <paramref name="al"/>.</summary>
    void ArithmeticAcFirst(Component c, Span<short> coef, int ss, int se, int al)
    {
        int tbl = c.AcTable;
        var st = _acStats[tbl];
        for (int k = ss; k <= se; k++)
        {
            int p = 3 * (k - 1);
            if (ArithmeticDecode(st, p) != 0) break; // EOB
            while (ArithmeticDecode(st, p + 1) == 0)
            {
                p += 3; k++;
                if (k > se) throw Err("corrupt arithmetic-coded JPEG: spectral overflow");
            }
            int sign = ArithmeticDecode(_fixedBin, 0);
            p += 2;
            int m = ArithmeticDecode(st, p);
            if (m != 0 && ArithmeticDecode(st, p) != 0)
            {
                m <<= 1;
                p = k <= _acK[tbl] ? 189 : 217;
                while (ArithmeticDecode(st, p) != 0)
                {
                    if ((m <<= 1) == 0x8000) throw Err("corrupt arithmetic-coded JPEG: AC magnitude overflow");
                    p++;
                }
            }
            int v = m;
            p += 14;
            while ((m >>= 1) != 0)
                if (ArithmeticDecode(st, p) != 0) v |= m;
            v += 1;
            if (sign != 0) v = -v;
            coef[ZigZag[k]] = (short)(v << al);
        }
    }

    void DecodeBlockArithmetic(Component c, int off, int ss, int se, int ah, int al)
    {
        var coef = c.Coef.AsSpan(off, 64);
        if (!_progressive)
        {
            c.DcPred += ArithmeticDcDiff(c);
            coef[0] = (short)c.DcPred;
            ArithmeticAcFirst(c, coef, 1, 63, 0);
            return;
        }
        if (ss == 0)
        {
            if (ah == 0)
            {
                c.DcPred += ArithmeticDcDiff(c);
                coef[0] = (short)(c.DcPred << al);
            }
            else if (ArithmeticDecode(_fixedBin, 0) != 0) coef[0] |= (short)(1 << al);
            return;
        }
        if (ah == 0) { ArithmeticAcFirst(c, coef, ss, se, al); return; }
        // AC refinement (decode_mcu_AC_refine)
        var st = _acStats[c.AcTable];
        int p1 = 1 << al, m1 = -1 << al;
        int kex = se;
        for (; kex > 0; kex--) if (coef[ZigZag[kex]] != 0) break;
        for (int k = ss; k <= se; k++)
        {
            int p = 3 * (k - 1);
            if (k > kex && ArithmeticDecode(st, p) != 0) break; // EOB
            while (true)
            {
                int z = ZigZag[k];
                if (coef[z] != 0)
                {
                    if (ArithmeticDecode(st, p + 2) != 0) coef[z] = (short)(coef[z] < 0 ? coef[z] + m1 : coef[z] + p1);
                    break;
                }
                if (ArithmeticDecode(st, p + 1) != 0)
                {
                    coef[z] = (short)(ArithmeticDecode(_fixedBin, 0) != 0 ? m1 : p1);
                    break;
                }
                p += 3; k++;
                if (k > se) throw Err("corrupt arithmetic-coded JPEG: spectral overflow");
            }
        }
    }
}
