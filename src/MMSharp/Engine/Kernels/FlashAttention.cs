using System.Numerics.Tensors;

namespace MMSharp.Engine.Kernels;

/// <summary>
/// Shapes, scale and masks of one attention call, as raw pointers into contiguous buffers.
/// B batch, Hq query heads, Hkv key/value heads (query head h reads kv head h / (Hq / Hkv)), Tq queries,
/// Tk keys, D head dim. Masks combine: score = (scale·q)·k + Mask[b, h, i, j] + KeyBias[b, j], and the score is
/// −∞ where j ≥ KeyLen[b], where causal and j &gt; i + Tk − Tq, or where QSeg[b, i] ≠ KSeg[b, j].
/// </summary>
internal sealed unsafe class AttentionProblem
{
    public int B, Hq, Hkv, Tq, Tk, D;
    public float Scale;
    public bool Causal;
    /// <summary>Additive mask read through broadcast strides (0 on broadcast dims); null if none.</summary>
    public float* Mask;
    public long MaskB, MaskH, MaskI, MaskJ;
    /// <summary>Additive per-key bias [B, Tk] (0 or −∞ from a key-valid mask); null if none.</summary>
    public float* KeyBias;
    /// <summary>Valid key count per batch [B]; null if none.</summary>
    public int* KeyLen;
    /// <summary>Segment id per position [B, Tq] and [B, Tk] (packed sequences); null if none.</summary>
    public int* QSeg, KSeg;

    public int Group => Hq / Hkv;
    /// <summary>Head dim rounded up to 16 floats: tile rows are padded so the tile kernels have no column tails.</summary>
    public int DPad => (D + 15) & ~15;
    public int TkPad => (Tk + 15) & ~15;

    /// <summary>One past the last key any of the query rows ≤ <paramref name="iLast"/> of batch b may see.</summary>
    public int KeyEnd(int b, int iLast)
    {
        int end = Tk;
        if (KeyLen != null) end = Math.Min(end, KeyLen[b]);
        if (Causal) end = Math.Min(end, iLast + Tk - Tq + 1);
        return Math.Max(end, 0);
    }

    /// <summary>False when no query of rows [i0, i0+rows) shares a segment with a key of [j0, j0+cols) (tile skipped).</summary>
    public bool SegmentsMayOverlap(int b, int i0, int rows, int j0, int cols)
    {
        if (QSeg == null) return true;
        int* qs = QSeg + (long)b * Tq + i0, ks = KSeg + (long)b * Tk + j0;
        int qmin = int.MaxValue, qmax = int.MinValue, kmin = int.MaxValue, kmax = int.MinValue;
        for (int r = 0; r < rows; r++) { qmin = Math.Min(qmin, qs[r]); qmax = Math.Max(qmax, qs[r]); }
        for (int c = 0; c < cols; c++) { kmin = Math.Min(kmin, ks[c]); kmax = Math.Max(kmax, ks[c]); }
        return qmin <= kmax && kmin <= qmax;
    }

    bool HasMasks => Mask != null || KeyBias != null || QSeg != null;

    /// <summary>Whether a tile of query rows from i0 against keys [j0, j0+cols) needs <see cref="ScoreRow"/> at all
    /// (unmasked tiles below the causal diagonal skip it).</summary>
    public bool TileNeedsMasks(int i0, int j0, int cols) => HasMasks || (Causal && i0 + Tk - Tq - j0 + 1 < cols);

    /// <summary>Applies the masks to the scores s[0..cols) of query i against keys j0.. (the scale is already in q).</summary>
    public void ScoreRow(float* s, int b, int h, int i, int j0, int cols)
    {
        var row = new Span<float>(s, cols);
        if (Mask != null)
        {
            float* m = Mask + b * MaskB + h * MaskH + i * MaskI + j0 * MaskJ;
            if (MaskJ == 1) TensorPrimitives.Add(row, new ReadOnlySpan<float>(m, cols), row);
            else if (MaskJ == 0) TensorPrimitives.Add(row, m[0], row);
            else for (int j = 0; j < cols; j++) s[j] += m[j * MaskJ];
        }
        if (KeyBias != null) TensorPrimitives.Add(row, new ReadOnlySpan<float>(KeyBias + (long)b * Tk + j0, cols), row);
        if (Causal)
        {
            int visible = i + Tk - Tq - j0 + 1; // keys j0 .. j0+visible-1 are allowed
            for (int j = Math.Max(visible, 0); j < cols; j++) s[j] = float.NegativeInfinity;
        }
        if (QSeg != null)
        {
            int qs = QSeg[(long)b * Tq + i];
            int* ks = KSeg + (long)b * Tk + j0;
            for (int j = 0; j < cols; j++) if (ks[j] != qs) s[j] = float.NegativeInfinity;
        }
    }
}

/// <summary>
/// Exact attention without a T×T matrix (FlashAttention-2 schedule, on the CPU): the forward walks key tiles
/// with an online softmax and keeps per row only the output and the log-sum-exp; the backward recomputes the
/// probabilities tile by tile from that log-sum-exp. Memory is O(T·D) per head plus a few tiles per thread.
/// The backward runs two passes so that every output element is written by one work item in a fixed order
/// (deterministic without atomics): dK/dV per key tile (summing the query heads of a GQA group), then dQ per
/// query tile. That costs two extra tile products (S and dP are recomputed), 7 instead of 5.
/// Operand layouts (all contiguous, fp32): qS = scale·q [B, Hq, Tq, DPad] (scaling q once saves a pass over every
/// score tile, and makes dK = dSᵀ·qS without a further scale); kT [B, Hkv, D, TkPad] (keys transposed, zero
/// columns after Tk); vP and kP [B, Hkv, Tk, DPad] (rows padded with zeros); dOP [B, Hq, Tq, DPad].
/// </summary>
internal static unsafe class FlashAttention
{
    /// <summary>Query rows per tile.</summary>
    public const int BQ = 64;
    /// <summary>Keys per tile (a multiple of 16).</summary>
    public const int BK = 64;

    /// <summary>o = softmax(scores) · v, lse = log Σ_j exp(score_j) per row (+∞ for a fully masked row, whose output is 0).</summary>
    public static void Forward(AttentionProblem p, float* qS, float* kT, float* vP, float* o, float* lse)
    {
        int nqb = (p.Tq + BQ - 1) / BQ;
        int D = p.D, DPad = p.DPad, TkPad = p.TkPad;
        Par.For(p.B * p.Hq * nqb, item =>
        {
            int qb = item % nqb, bh = item / nqb, h = bh % p.Hq, b = bh / p.Hq;
            int kvh = b * p.Hkv + h / p.Group;
            int i0 = qb * BQ, rows = Math.Min(BQ, p.Tq - i0);
            float* S = ThreadScratch.Floats(BQ * BK + BQ * DPad + 2 * BQ);
            float* acc = S + BQ * BK, m = acc + BQ * DPad, l = m + BQ;
            float* qBlk = qS + ((long)bh * p.Tq + i0) * DPad;
            float* kTh = kT + (long)kvh * D * TkPad;
            float* vh = vP + (long)kvh * p.Tk * DPad;
            new Span<float>(acc, rows * DPad).Clear();
            new Span<float>(m, rows).Fill(float.NegativeInfinity);
            new Span<float>(l, rows).Clear();

            int jEnd = p.KeyEnd(b, i0 + rows - 1);
            for (int j0 = 0; j0 < jEnd; j0 += BK)
            {
                int cols = Math.Min(BK, jEnd - j0), nPad = (cols + 15) & ~15;
                if (!p.SegmentsMayOverlap(b, i0, rows, j0, cols)) continue;
                TileGemm.MulAdd(rows, nPad, D, qBlk, DPad, 1, kTh + j0, TkPad, S, BK, false);
                bool masked = p.TileNeedsMasks(i0, j0, cols);
                for (int r = 0; r < rows; r++)
                {
                    float* s = S + r * BK;
                    if (masked) p.ScoreRow(s, b, h, i0 + r, j0, cols);
                    float mOld = m[r], mNew = Math.Max(mOld, SoftmaxRow.Max(s, cols));
                    if (float.IsNegativeInfinity(mNew)) { new Span<float>(s, nPad).Clear(); continue; }
                    float sum = SoftmaxRow.ExpShiftSum(s, cols, mNew);
                    new Span<float>(s + cols, nPad - cols).Clear();
                    if (mOld != mNew)
                    {
                        float alpha = MathF.Exp(mOld - mNew); // 0 while the row had no visible key yet
                        var a = new Span<float>(acc + r * DPad, DPad);
                        TensorPrimitives.Multiply(a, alpha, a);
                        l[r] *= alpha;
                    }
                    l[r] += sum;
                    m[r] = mNew;
                }
                TileGemm.MulAdd(rows, DPad, cols, S, BK, 1, vh + (long)j0 * DPad, DPad, acc, DPad, true);
            }

            for (int r = 0; r < rows; r++)
            {
                long i = (long)bh * p.Tq + i0 + r;
                var dst = new Span<float>(o + i * D, D);
                if (l[r] == 0f) { dst.Clear(); lse[i] = float.PositiveInfinity; continue; }
                TensorPrimitives.Multiply(new ReadOnlySpan<float>(acc + r * DPad, D), 1f / l[r], dst);
                lse[i] = m[r] + MathF.Log(l[r]);
            }
        });
    }

    /// <summary>P = exp(score − lse) for one tile (rows × nPad, zero beyond cols), in place on the raw dot products.</summary>
    static void Probabilities(AttentionProblem p, float* S, int b, int h, int i0, int rows, int j0, int cols, int nPad, float* lseRows)
    {
        bool masked = p.TileNeedsMasks(i0, j0, cols);
        for (int r = 0; r < rows; r++)
        {
            float* s = S + r * BK;
            if (masked) p.ScoreRow(s, b, h, i0 + r, j0, cols);
            float lse = lseRows[r];
            if (float.IsPositiveInfinity(lse)) new Span<float>(s, cols).Clear();
            else SoftmaxRow.ExpShiftSum(s, cols, lse);
            new Span<float>(s + cols, nPad - cols).Clear();
        }
    }

    /// <summary>dS = P ∘ (dP − Δ_i) in place on dP, with Δ_i = Σ_d dO[i, d]·O[i, d].</summary>
    static void ScoreGrad(float* P, float* dP, int rows, int nPad, float* deltaRows)
    {
        for (int r = 0; r < rows; r++) SoftmaxRow.SubMul(dP + r * BK, deltaRows[r], P + r * BK, nPad);
    }

    /// <summary>Gradients of <see cref="Forward"/>. dq [B, Hq, Tq, D]; dk, dv [B, Hkv, Tk, D] must be zeroed by the caller.</summary>
    public static void Backward(AttentionProblem p, float* qS, float* kT, float* kP, float* vT, float* dOP, float* lse, float* delta,
        float* dq, float* dk, float* dv)
    {
        int D = p.D, DPad = p.DPad, TkPad = p.TkPad, G = p.Group;
        int nkb = (p.Tk + BK - 1) / BK, nqb = (p.Tq + BQ - 1) / BQ;

        // pass 1: dK, dV per (batch, kv head, key tile), summed over the query heads of the group in order.
        Par.For(p.B * p.Hkv * nkb, item =>
        {
            int kb = item % nkb, bkv = item / nkb, b = bkv / p.Hkv, kvh = bkv % p.Hkv;
            int j0 = kb * BK, cols = Math.Min(BK, p.Tk - j0);
            if (p.KeyLen != null) cols = Math.Min(cols, p.KeyLen[b] - j0);
            if (cols <= 0) return;
            int nPad = (cols + 15) & ~15;
            float* S = ThreadScratch.Floats(2 * BQ * BK + 2 * BK * DPad);
            float* dP = S + BQ * BK, dKacc = dP + BQ * BK, dVacc = dKacc + BK * DPad;
            new Span<float>(dKacc, 2 * BK * DPad).Clear();
            float* kTt = kT + (long)bkv * D * TkPad + j0, vTt = vT + (long)bkv * D * TkPad + j0;
            // causal: query i sees key j0 only if i ≥ j0 − (Tk − Tq)
            int iStart = p.Causal ? Math.Max(0, j0 - (p.Tk - p.Tq)) : 0;
            for (int g = 0; g < G; g++)
            {
                int h = kvh * G + g;
                long bh = (long)b * p.Hq + h;
                for (int i0 = iStart / BQ * BQ; i0 < p.Tq; i0 += BQ)
                {
                    int rows = Math.Min(BQ, p.Tq - i0);
                    if (!p.SegmentsMayOverlap(b, i0, rows, j0, cols)) continue;
                    float* qBlk = qS + (bh * p.Tq + i0) * DPad, dOBlk = dOP + (bh * p.Tq + i0) * DPad;
                    TileGemm.MulAdd(rows, nPad, D, qBlk, DPad, 1, kTt, TkPad, S, BK, false);
                    Probabilities(p, S, b, h, i0, rows, j0, cols, nPad, lse + bh * p.Tq + i0);
                    TileGemm.MulAdd(cols, DPad, rows, S, 1, BK, dOBlk, DPad, dVacc, DPad, true);          // dV += Pᵀ dO
                    TileGemm.MulAdd(rows, nPad, D, dOBlk, DPad, 1, vTt, TkPad, dP, BK, false);           // dP = dO Vᵀ
                    ScoreGrad(S, dP, rows, nPad, delta + bh * p.Tq + i0);
                    TileGemm.MulAdd(cols, DPad, rows, dP, 1, BK, qBlk, DPad, dKacc, DPad, true);          // dK += dSᵀ (scale·Q)
                }
            }
            for (int c = 0; c < cols; c++)
            {
                long j = (long)bkv * p.Tk + j0 + c;
                new ReadOnlySpan<float>(dKacc + c * DPad, D).CopyTo(new Span<float>(dk + j * D, D));
                new ReadOnlySpan<float>(dVacc + c * DPad, D).CopyTo(new Span<float>(dv + j * D, D));
            }
        });

        // pass 2: dQ per (batch, query head, query tile).
        Par.For(p.B * p.Hq * nqb, item =>
        {
            int qb = item % nqb, bh = item / nqb, h = bh % p.Hq, b = bh / p.Hq;
            int bkv = b * p.Hkv + h / G;
            int i0 = qb * BQ, rows = Math.Min(BQ, p.Tq - i0);
            float* S = ThreadScratch.Floats(2 * BQ * BK + BQ * DPad);
            float* dP = S + BQ * BK, dQacc = dP + BQ * BK;
            new Span<float>(dQacc, rows * DPad).Clear();
            float* qBlk = qS + ((long)bh * p.Tq + i0) * DPad, dOBlk = dOP + ((long)bh * p.Tq + i0) * DPad;
            float* lseRows = lse + (long)bh * p.Tq + i0, deltaRows = delta + (long)bh * p.Tq + i0;
            int jEnd = p.KeyEnd(b, i0 + rows - 1);
            for (int j0 = 0; j0 < jEnd; j0 += BK)
            {
                int cols = Math.Min(BK, jEnd - j0), nPad = (cols + 15) & ~15;
                if (!p.SegmentsMayOverlap(b, i0, rows, j0, cols)) continue;
                TileGemm.MulAdd(rows, nPad, D, qBlk, DPad, 1, kT + (long)bkv * D * TkPad + j0, TkPad, S, BK, false);
                Probabilities(p, S, b, h, i0, rows, j0, cols, nPad, lseRows);
                TileGemm.MulAdd(rows, nPad, D, dOBlk, DPad, 1, vT + (long)bkv * D * TkPad + j0, TkPad, dP, BK, false);
                ScoreGrad(S, dP, rows, nPad, deltaRows);
                TileGemm.MulAdd(rows, DPad, cols, dP, BK, 1, kP + ((long)bkv * p.Tk + j0) * DPad, DPad, dQacc, DPad, true); // dQ += dS K
            }
            for (int r = 0; r < rows; r++)
                TensorPrimitives.Multiply(new ReadOnlySpan<float>(dQacc + r * DPad, D), p.Scale,
                    new Span<float>(dq + ((long)bh * p.Tq + i0 + r) * D, D));
        });
    }
}
