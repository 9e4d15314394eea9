using System.Buffers.Binary;
using MMSharp.Engine.Kernels;

namespace MMSharp.Vision;

/// <summary>
/// Baseline / extended-sequential / progressive JPEG decoder (Huffman or arithmetic coded) that reproduces Pillow's
/// <c>convert('RGB')</c> output bit for bit: Pillow decodes through libjpeg-turbo with its defaults
/// (islow IDCT, fancy upsampling, jdcolor.c tables), reads 4-component files as Adobe-inverted CMYK and
/// converts CMYK->RGB with its own formula.
/// </summary>
/// <remarks>
/// All scans are decoded into per-component coefficient arrays first (so sequential multi-scan and
/// progressive files share one path), then each component is inverse-transformed, upsampled and
/// colour-converted. Progressive files whose scans leave low-frequency coefficients unrefined get
/// libjpeg-turbo's block smoothing (<see cref="JpegBlockSmoothing"/>), as in Pillow.
/// Truncated or corrupt entropy data throws (libjpeg would pad with zeros and warn; Pillow raises
/// "image file is truncated" for files that end early).
/// Arithmetic-coded files (SOF9/SOF10) go through <c>JpegArithmetic.cs</c> (libjpeg's jdarith.c).
/// Not supported (clear error): lossless/hierarchical, 12-bit, 2-component files.
/// </remarks>
internal sealed partial class JpegDecoder
{
    static readonly int[] ZigZag =
    [
        0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
        28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61,
        54, 47, 55, 62, 63,
    ];

    sealed class Component
    {
        public int Id, H, V, QuantIndex;
        public ushort[]? Quant;          // latched when the component first appears in a scan (as libjpeg does)
        public int BlocksW, BlocksH;     // allocated blocks (whole MCUs)
        public int UsedBlocksW, UsedBlocksH; // blocks covering the component's real samples
        public int DownW, DownH;         // libjpeg's downsampled_width / downsampled_height
        public short[] Coef = [];
        public int DcPred;
        public int DcContext; // arithmetic coding: DC conditioning category
        public int DcTable, AcTable;
        // libjpeg coef_bits for zigzag positions 0..9: Al of the last progressive scan that covered it, -1 if none
        public readonly int[] CoefBits = [-1, -1, -1, -1, -1, -1, -1, -1, -1, -1];
    }

    sealed class Huffman
    {
        public readonly ushort[] Fast = new ushort[1 << FastBits]; // (length << 8) | value, 0 = slow path
        public readonly int[] MaxCode = new int[18];
        public readonly int[] ValOffset = new int[17];
        public byte[] Values = [];
        public const int FastBits = 9;
    }

    readonly byte[] _d;
    readonly string _src;
    int _pos;
    readonly ushort[][] _quant = new ushort[4][];
    readonly Huffman?[] _dc = new Huffman?[4], _ac = new Huffman?[4];
    Component[] _comps = [];
    int _width, _height, _hmax, _vmax, _mcusX, _mcusY;
    bool _progressive, _sawFrame, _jfif, _adobe;
    int _adobeTransform, _restartInterval;

    // bit reader
    uint _bits; int _nbits; bool _hitMarker; int _eobrun;

    JpegDecoder(byte[] data, string source) { _d = data; _src = source; }

    public static RgbImage Decode(byte[] data, string source) => new JpegDecoder(data, source).Run();

    ImageDecodeException Err(string problem) => new(_src, problem);

    RgbImage Run()
    {
        _pos = 2;
        while (true)
        {
            int marker = NextMarker();
            switch (marker)
            {
                case 0xD8: throw Err("unexpected second SOI marker");
                case 0xD9:
                    if (!_sawFrame) throw Err("JPEG has no frame (SOF) before EOI");
                    return Reconstruct();
                case 0xC0: case 0xC1: case 0xC2: ReadFrame(marker == 0xC2, arithmetic: false); break;
                case 0xC9: case 0xCA: ReadFrame(marker == 0xCA, arithmetic: true); break;
                case 0xC3: case 0xC5: case 0xC6: case 0xC7: case 0xCB: case 0xCD: case 0xCE: case 0xCF:
                    throw Err($"unsupported JPEG process (SOF{marker - 0xC0}: lossless or hierarchical)");
                case 0xCC: ReadArithmeticConditioning(); break;
                case 0xC4: ReadHuffmanTables(); break;
                case 0xDB: ReadQuantTables(); break;
                case 0xDD:
                    {
                        var seg = Segment();
                        if (seg.Length < 2) throw Err("DRI segment too short");
                        _restartInterval = BinaryPrimitives.ReadUInt16BigEndian(seg);
                        break;
                    }
                case 0xDA: ReadScan(); break;
                case 0xE0: { var s = Segment(); if (s.Length >= 14 && s[..5].SequenceEqual("JFIF\0"u8)) _jfif = true; break; }
                case 0xEE: { var s = Segment(); if (s.Length >= 12 && s[..5].SequenceEqual("Adobe"u8)) { _adobe = true; _adobeTransform = s[11]; } break; }
                case 0xDC: throw Err("DNL marker is not supported");
                default:
                    if (marker >= 0xD0 && marker <= 0xD7) throw Err($"unexpected restart marker RST{marker - 0xD0} outside a scan");
                    Segment(); // APPn, COM, ...: skip
                    break;
            }
        }
    }

    /// <summary>Finds the next marker (skipping 0xFF fill bytes); returns its code.</summary>
    int NextMarker()
    {
        // tolerate garbage between segments the way libjpeg does (it warns and resyncs) only for fill bytes
        if (_pos >= _d.Length) throw Err(_sawFrame ? "truncated JPEG: missing EOI (file ends early)" : "truncated JPEG: file ends before any frame");
        if (_d[_pos] != 0xFF) throw Err($"corrupt JPEG: expected a marker at byte {_pos}, found 0x{_d[_pos]:X2}");
        while (_pos < _d.Length && _d[_pos] == 0xFF) _pos++;
        if (_pos >= _d.Length) throw Err("truncated JPEG: file ends inside a marker");
        int m = _d[_pos++];
        if (m == 0) throw Err($"corrupt JPEG: stray 0xFF00 at byte {_pos - 2}");
        return m;
    }

    ReadOnlySpan<byte> Segment()
    {
        if (_pos + 2 > _d.Length) throw Err("truncated JPEG: segment length cut off");
        int len = BinaryPrimitives.ReadUInt16BigEndian(_d.AsSpan(_pos));
        if (len < 2) throw Err($"corrupt JPEG: segment length {len} at byte {_pos}");
        if (_pos + len > _d.Length) throw Err($"truncated JPEG: segment at byte {_pos} needs {len} bytes, file has {_d.Length - _pos}");
        var s = _d.AsSpan(_pos + 2, len - 2);
        _pos += len;
        return s;
    }

    void ReadQuantTables()
    {
        var s = Segment();
        int p = 0;
        while (p < s.Length)
        {
            int pq = s[p] >> 4, tq = s[p] & 15;
            p++;
            if (tq > 3 || pq > 1) throw Err($"corrupt DQT: table {tq}, precision {pq}");
            int need = pq == 0 ? 64 : 128;
            if (p + need > s.Length) throw Err("truncated DQT segment");
            var q = new ushort[64];
            for (int i = 0; i < 64; i++)
                q[ZigZag[i]] = pq == 0 ? s[p + i] : BinaryPrimitives.ReadUInt16BigEndian(s[(p + 2 * i)..]);
            _quant[tq] = q;
            p += need;
        }
    }

    void ReadHuffmanTables()
    {
        var s = Segment();
        int p = 0;
        Span<int> counts = stackalloc int[17];
        while (p < s.Length)
        {
            if (p + 17 > s.Length) throw Err("truncated DHT segment");
            int tc = s[p] >> 4, th = s[p] & 15;
            if (tc > 1 || th > 3) throw Err($"corrupt DHT: class {tc}, table {th}");
            int total = 0;
            for (int l = 1; l <= 16; l++) { counts[l] = s[p + l]; total += counts[l]; }
            p += 17;
            if (total > 256 || p + total > s.Length) throw Err("corrupt DHT: bad symbol count");
            var h = new Huffman { Values = s.Slice(p, total).ToArray() };
            p += total;
            int code = 0, k = 0;
            for (int l = 1; l <= 16; l++)
            {
                h.ValOffset[l] = k - code;
                for (int i = 0; i < counts[l]; i++, k++, code++)
                {
                    if (code >= 1 << l) throw Err("corrupt DHT: code lengths overflow");
                    if (l <= Huffman.FastBits)
                    {
                        int shift = Huffman.FastBits - l;
                        for (int j = 0; j < 1 << shift; j++) h.Fast[(code << shift) | j] = (ushort)(l << 8 | h.Values[k]);
                    }
                }
                if (code >= 1 << l) throw Err("corrupt DHT: code lengths overflow (all-ones code, rejected by libjpeg too)");
                h.MaxCode[l] = counts[l] > 0 ? code - 1 : -1;
                code <<= 1;
            }
            h.MaxCode[17] = int.MaxValue;
            (tc == 0 ? _dc : _ac)[th] = h;
        }
    }

    void ReadFrame(bool progressive, bool arithmetic)
    {
        if (_sawFrame) throw Err("more than one frame (SOF) in JPEG");
        var s = Segment();
        if (s.Length < 6) throw Err("truncated SOF segment");
        if (s[0] != 8) throw Err($"unsupported JPEG sample precision {s[0]} bits (only 8)");
        _height = BinaryPrimitives.ReadUInt16BigEndian(s[1..]);
        _width = BinaryPrimitives.ReadUInt16BigEndian(s[3..]);
        int n = s[5];
        if (_height == 0) throw Err("JPEG height 0 (DNL) is not supported");
        if (_width == 0) throw Err("JPEG width is 0");
        if ((long)_width * _height > RgbImage.MaxPixels) throw Err($"JPEG size {_width}x{_height} exceeds {RgbImage.MaxPixels} pixels (Pillow's decompression-bomb limit)");
        if (n != 1 && n != 3 && n != 4) throw Err($"unsupported JPEG with {n} components (Pillow reads 1, 3 or 4)");
        if (s.Length < 6 + 3 * n) throw Err("truncated SOF segment");
        _comps = new Component[n];
        for (int i = 0; i < n; i++)
        {
            var c = new Component { Id = s[6 + 3 * i], H = s[7 + 3 * i] >> 4, V = s[7 + 3 * i] & 15, QuantIndex = s[8 + 3 * i] };
            if (c.H < 1 || c.H > 4 || c.V < 1 || c.V > 4 || c.QuantIndex > 3) throw Err($"corrupt SOF: component {i} sampling {c.H}x{c.V}, table {c.QuantIndex}");
            _comps[i] = c;
        }
        _hmax = _comps.Max(c => c.H); _vmax = _comps.Max(c => c.V);
        _mcusX = (_width + 8 * _hmax - 1) / (8 * _hmax);
        _mcusY = (_height + 8 * _vmax - 1) / (8 * _vmax);
        foreach (var c in _comps)
        {
            c.DownW = (int)(((long)_width * c.H + _hmax - 1) / _hmax);
            c.DownH = (int)(((long)_height * c.V + _vmax - 1) / _vmax);
            c.UsedBlocksW = (c.DownW + 7) / 8; c.UsedBlocksH = (c.DownH + 7) / 8;
            c.BlocksW = _mcusX * c.H; c.BlocksH = _mcusY * c.V;
            long size = (long)c.BlocksW * c.BlocksH * 64;
            if (size > 1L << 31) throw Err($"JPEG {_width}x{_height} is too large");
            c.Coef = new short[size];
        }
        _progressive = progressive;
        _arithmetic = arithmetic;
        _sawFrame = true;
    }

    void ReadScan()
    {
        if (!_sawFrame) throw Err("SOS before SOF");
        var s = Segment();
        int ns = s.Length > 0 ? s[0] : 0;
        if (ns < 1 || ns > 4 || s.Length < 1 + 2 * ns + 3) throw Err("corrupt SOS segment");
        var scomp = new Component[ns];
        for (int i = 0; i < ns; i++)
        {
            int id = s[1 + 2 * i];
            var c = _comps.FirstOrDefault(x => x.Id == id) ?? throw Err($"SOS names unknown component id {id}");
            c.DcTable = s[2 + 2 * i] >> 4; c.AcTable = s[2 + 2 * i] & 15;
            if (c.DcTable > 3 || c.AcTable > 3) throw Err("corrupt SOS table selector");
            if (c.Quant == null)
            {
                var q = _quant[c.QuantIndex] ?? throw Err($"component {c.Id} uses quantisation table {c.QuantIndex}, which is not defined");
                c.Quant = (ushort[])q.Clone();
            }
            scomp[i] = c;
        }
        int ss = s[1 + 2 * ns], se = s[2 + 2 * ns], ah = s[3 + 2 * ns] >> 4, al = s[3 + 2 * ns] & 15;
        if (_progressive)
        {
            if (ss > se || se > 63 || (ss == 0 && se != 0) || (ss > 0 && ns != 1) || al > 13)
                throw Err($"corrupt progressive scan parameters Ss={ss} Se={se} Ah={ah} Al={al}");
        }
        else if (ss != 0 || se != 63 || ah != 0 || al != 0)
            throw Err($"corrupt sequential scan parameters Ss={ss} Se={se}");
        foreach (var c in scomp)
        {
            bool needDc = !_progressive || (ss == 0 && ah == 0), needAc = !_progressive || ss > 0;
            if (!_arithmetic && needDc && _dc[c.DcTable] == null) throw Err($"scan uses undefined DC Huffman table {c.DcTable}");
            if (!_arithmetic && needAc && _ac[c.AcTable] == null) throw Err($"scan uses undefined AC Huffman table {c.AcTable}");
            c.DcPred = 0;
        }
        if (_arithmetic) ArithmeticResetStatistics(scomp, ss, ah);

        if (_progressive)
            foreach (var c in scomp)
                for (int k = ss; k <= Math.Min(se, 9); k++) c.CoefBits[k] = al;
        _bits = 0; _nbits = 0; _hitMarker = false; _eobrun = 0; _fakeBits = 0;
        int mcuCount;
        int blocksW = 0;
        bool single = ns == 1;
        if (single)
        {
            blocksW = scomp[0].UsedBlocksW;
            mcuCount = scomp[0].UsedBlocksW * scomp[0].UsedBlocksH;
        }
        else mcuCount = _mcusX * _mcusY;

        int restartsSeen = 0;
        for (int m = 0; m < mcuCount; m++)
        {
            if (_restartInterval > 0 && m > 0 && m % _restartInterval == 0)
            {
                ExpectRestart(restartsSeen++ & 7);
                foreach (var c in scomp) c.DcPred = 0;
                _eobrun = 0;
                if (_arithmetic) ArithmeticResetStatistics(scomp, ss, ah);
            }
            if (single)
            {
                var c = scomp[0];
                int by = m / blocksW, bx = m - by * blocksW;
                if (_arithmetic) DecodeBlockArithmetic(c, (by * c.BlocksW + bx) * 64, ss, se, ah, al);
                else DecodeBlock(c, (by * c.BlocksW + bx) * 64, ss, se, ah, al);
            }
            else
            {
                int my = m / _mcusX, mx = m - my * _mcusX;
                foreach (var c in scomp)
                    for (int v = 0; v < c.V; v++)
                        for (int h = 0; h < c.H; h++)
                        {
                            int off = ((my * c.V + v) * c.BlocksW + mx * c.H + h) * 64;
                            if (_arithmetic) DecodeBlockArithmetic(c, off, ss, se, ah, al);
                            else DecodeBlock(c, off, ss, se, ah, al);
                        }
            }
        }
        ResetBitReader();
        // position at the next marker: skip remaining entropy bytes (e.g. trailing padding)
        while (_pos < _d.Length && !(_d[_pos] == 0xFF && _pos + 1 < _d.Length && _d[_pos + 1] != 0 && _d[_pos + 1] != 0xFF))
            _pos++;
    }

    void ExpectRestart(int n)
    {
        ResetBitReader();
        while (_pos < _d.Length && !(_d[_pos] == 0xFF && _pos + 1 < _d.Length && _d[_pos + 1] != 0 && _d[_pos + 1] != 0xFF))
            _pos++;
        if (_pos + 1 >= _d.Length) throw Err("truncated JPEG: file ends inside a scan (restart marker missing)");
        int m = _d[_pos + 1];
        if (m != 0xD0 + n) throw Err($"corrupt JPEG: expected restart marker RST{n}, found marker 0x{m:X2} at byte {_pos}");
        _pos += 2;
        _bits = 0; _nbits = 0; _hitMarker = false;
    }

    void ResetBitReader()
    {
        _bits = 0; _nbits = 0; _fakeBits = 0;
    }

    // Zero bits appended after the next marker (or the end of the file). They sit at the bottom of the
    // bit buffer; a valid stream never consumes them (the encoder pads each segment with 1-bits).
    int _fakeBits;

    void Fill()
    {
        while (_nbits <= 24)
        {
            int b = 0;
            if (!_hitMarker)
            {
                if (_pos >= _d.Length) _hitMarker = true;
                else
                {
                    b = _d[_pos];
                    if (b == 0xFF)
                    {
                        int b2 = _pos + 1 < _d.Length ? _d[_pos + 1] : -1;
                        if (b2 == 0) _pos += 2;
                        else if (b2 < 0) { _hitMarker = true; b = 0; _pos = _d.Length; } // a lone 0xFF at the end: truncated
                        else { _hitMarker = true; b = 0; }
                    }
                    else _pos++;
                }
            }
            if (_hitMarker) _fakeBits += 8;
            _bits |= (uint)b << (24 - _nbits);
            _nbits += 8;
        }
    }

    void Consume(int n)
    {
        _bits <<= n; _nbits -= n;
        if (_nbits < _fakeBits)
            throw Err(_pos >= _d.Length ? "truncated JPEG: file ends inside the entropy-coded data"
                                        : $"corrupt JPEG: entropy-coded data runs into marker at byte {_pos}");
    }

    int GetBits(int n)
    {
        if (n == 0) return 0;
        if (_nbits < n) Fill();
        int v = (int)(_bits >> (32 - n));
        Consume(n);
        return v;
    }

    int GetBit() => GetBits(1);

    static int Extend(int v, int t) => v < 1 << (t - 1) ? v - (1 << t) + 1 : v;

    int DecodeHuffman(Huffman h)
    {
        if (_nbits < 16) Fill();
        int look = (int)(_bits >> (32 - Huffman.FastBits));
        int e = h.Fast[look];
        if (e != 0)
        {
            Consume(e >> 8);
            return e & 0xFF;
        }
        int code = (int)(_bits >> (32 - Huffman.FastBits));
        int l = Huffman.FastBits;
        while (l < 16)
        {
            l++;
            code = (int)(_bits >> (32 - l));
            if (code <= h.MaxCode[l]) break;
        }
        if (code > h.MaxCode[l] || l > 16) throw Err("corrupt JPEG: invalid Huffman code");
        Consume(l);
        int idx = code + h.ValOffset[l];
        if ((uint)idx >= (uint)h.Values.Length) throw Err("corrupt JPEG: invalid Huffman code");
        return h.Values[idx];
    }

    void DecodeBlock(Component c, int off, int ss, int se, int ah, int al)
    {
        var coef = c.Coef.AsSpan(off, 64);
        if (!_progressive)
        {
            int t = DecodeHuffman(_dc[c.DcTable]!);
            if (t > 11) throw Err("corrupt JPEG: DC magnitude category > 11");
            int diff = t == 0 ? 0 : Extend(GetBits(t), t);
            c.DcPred += diff;
            coef[0] = (short)c.DcPred;
            var ac = _ac[c.AcTable]!;
            for (int k = 1; k < 64;)
            {
                int rs = DecodeHuffman(ac);
                int r = rs >> 4, s = rs & 15;
                if (s != 0)
                {
                    k += r;
                    if (k > 63) throw Err("corrupt JPEG: AC coefficient index past 63");
                    coef[ZigZag[k]] = (short)Extend(GetBits(s), s);
                    k++;
                }
                else if (r == 15) k += 16;
                else break;
            }
            return;
        }
        if (ss == 0)
        {
            if (ah == 0)
            {
                int t = DecodeHuffman(_dc[c.DcTable]!);
                if (t > 11) throw Err("corrupt JPEG: DC magnitude category > 11");
                int diff = t == 0 ? 0 : Extend(GetBits(t), t);
                c.DcPred += diff;
                coef[0] = (short)(c.DcPred << al);
            }
            else if (GetBit() != 0) coef[0] |= (short)(1 << al);
            return;
        }
        var h = _ac[c.AcTable] ?? throw Err($"scan uses undefined AC Huffman table {c.AcTable}");
        if (ah == 0)
        {
            if (_eobrun > 0) { _eobrun--; return; }
            for (int k = ss; k <= se; k++)
            {
                int rs = DecodeHuffman(h);
                int r = rs >> 4, s = rs & 15;
                if (s != 0)
                {
                    k += r;
                    if (k > 63) throw Err("corrupt JPEG: AC coefficient index past 63");
                    coef[ZigZag[k]] = (short)(Extend(GetBits(s), s) << al);
                }
                else if (r == 15) k += 15;
                else
                {
                    _eobrun = 1 << r;
                    if (r != 0) _eobrun += GetBits(r);
                    _eobrun--;
                    break;
                }
            }
            return;
        }
        // AC refinement (jdphuff.c decode_mcu_AC_refine)
        int p1 = 1 << al, m1 = -1 << al;
        int kk = ss;
        if (_eobrun == 0)
        {
            for (; kk <= se; kk++)
            {
                int rs = DecodeHuffman(h);
                int r = rs >> 4, s = rs & 15;
                if (s != 0)
                {
                    if (s != 1) throw Err("corrupt JPEG: refinement coefficient magnitude is not 1");
                    s = GetBit() != 0 ? p1 : m1;
                }
                else if (r != 15)
                {
                    _eobrun = 1 << r;
                    if (r != 0) _eobrun += GetBits(r);
                    break;
                }
                do
                {
                    int z = ZigZag[kk];
                    if (coef[z] != 0)
                    {
                        if (GetBit() != 0 && (coef[z] & p1) == 0)
                            coef[z] = (short)(coef[z] >= 0 ? coef[z] + p1 : coef[z] + m1);
                    }
                    else
                    {
                        if (--r < 0) break;
                    }
                    kk++;
                } while (kk <= se);
                if (s != 0)
                {
                    if (kk > 63) throw Err("corrupt JPEG: AC coefficient index past 63");
                    coef[ZigZag[kk]] = (short)s;
                }
            }
        }
        if (_eobrun > 0)
        {
            for (; kk <= se; kk++)
            {
                int z = ZigZag[kk];
                if (coef[z] != 0 && GetBit() != 0 && (coef[z] & p1) == 0)
                    coef[z] = (short)(coef[z] >= 0 ? coef[z] + p1 : coef[z] + m1);
            }
            _eobrun--;
        }
    }

    RgbImage Reconstruct()
    {
        int n = _comps.Length;
        var planes = new byte[n][];
        bool smooth = _progressive && _comps.All(c => c.Quant != null) && JpegBlockSmoothing.Useful(_comps.Select(c => (c.Quant!, c.CoefBits)));
        for (int ci = 0; ci < n; ci++)
        {
            var c = _comps[ci];
            if (c.Quant == null) throw Err($"JPEG component {c.Id} never appears in a scan (truncated file?)");
            if (_hmax % c.H != 0 || _vmax % c.V != 0)
                throw Err($"unsupported JPEG sampling: component {c.Id} {c.H}x{c.V} is not an integral fraction of {_hmax}x{_vmax}");
            int pitch = c.BlocksW * 8;
            var plane = new byte[pitch * c.BlocksH * 8];
            var coef = c.Coef; var quant = c.Quant;
            int usedW = c.UsedBlocksW, blocksW = c.BlocksW;
            if (smooth)
                JpegBlockSmoothing.IdctSmoothed(c.Coef, c.BlocksW, c.UsedBlocksW, c.UsedBlocksH, c.V, _mcusY, c.CoefBits, quant, plane, pitch);
            else
            {
                // blocks are independent: block rows in parallel, each written once
                Par.ForChunks(c.UsedBlocksH, 4, (b0, b1) =>
                {
                    for (int by = (int)b0; by < (int)b1; by++)
                        for (int bx = 0; bx < usedW; bx++)
                            JpegIdct.Islow(coef.AsSpan((by * blocksW + bx) * 64, 64), quant, plane, by * 8 * pitch + bx * 8, pitch);
                });
            }
            c.Coef = [];
            planes[ci] = JpegUpsampler.Upsample(plane, pitch, c.DownW, c.DownH, _hmax / c.H, _vmax / c.V, _width, _height);
        }
        int np = _width * _height;
        var rgb = new byte[np * 3];
        if (n == 1)
        {
            var g = planes[0];
            for (int i = 0; i < np; i++) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = g[i];
        }
        else if (n == 3)
        {
            bool isRgb = ColorSpaceIsRgb();
            var p0 = planes[0]; var p1 = planes[1]; var p2 = planes[2];
            Par.ForChunks(np, 1 << 16, (i0, i1) =>
            {
                for (int i = (int)i0; i < (int)i1; i++)
                {
                    if (isRgb) { rgb[3 * i] = p0[i]; rgb[3 * i + 1] = p1[i]; rgb[3 * i + 2] = p2[i]; }
                    else JpegUpsampler.YccToRgb(p0[i], p1[i], p2[i], out rgb[3 * i], out rgb[3 * i + 1], out rgb[3 * i + 2]);
                }
            });
        }
        else
        {
            // libjpeg output: CMYK (Adobe transform 0 / no Adobe marker) or YCCK -> CMYK.
            bool ycck = _adobe && _adobeTransform != 0;
            var p0 = planes[0]; var p1 = planes[1]; var p2 = planes[2]; var p3 = planes[3];
            for (int i = 0; i < np; i++)
            {
                int c0 = p0[i], c1 = p1[i], c2 = p2[i];
                if (ycck)
                {
                    JpegUpsampler.YccToRgb(c0, c1, c2, out byte r, out byte g, out byte b);
                    c0 = 255 - r; c1 = 255 - g; c2 = 255 - b;
                }
                // Pillow reads libjpeg's CMYK as "CMYK;I" (Adobe inverted) and then cmyk2rgb:
                // nk = 255 - K; out = clip(nk - nk*C/255) with Pillow's MULDIV255 rounding.
                int k = 255 - p3[i];
                int nk = 255 - k;
                rgb[3 * i] = CmykChannel(255 - c0, nk);
                rgb[3 * i + 1] = CmykChannel(255 - c1, nk);
                rgb[3 * i + 2] = CmykChannel(255 - c2, nk);
            }
        }
        return new RgbImage(_width, _height, rgb);
    }

    static byte CmykChannel(int c, int nk)
    {
        int tmp = c * nk + 128;
        int v = nk - (((tmp >> 8) + tmp) >> 8);
        return (byte)(v < 0 ? 0 : v > 255 ? 255 : v);
    }

    /// <summary>libjpeg's default_decompress_parms colour-space guess for 3 components.</summary>
    bool ColorSpaceIsRgb()
    {
        if (_jfif) return false;
        if (_adobe) return _adobeTransform == 0;
        return _comps[0].Id == 'R' && _comps[1].Id == 'G' && _comps[2].Id == 'B';
    }
}
