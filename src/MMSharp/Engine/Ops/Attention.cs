using System.Numerics.Tensors;
using MMSharp.Engine.Kernels;

namespace MMSharp.Engine;

public static unsafe partial class Ops
{
    /// <summary>
    /// Scaled dot-product attention, exact, in O(T·D) memory per head (tiled, online softmax; see <see cref="FlashAttention"/>).
    /// </summary>
    /// <remarks>
    /// out[b, h, i] = Σ_j softmax_j(s_ij) · v[b, h / (Hq/Hkv), j] with
    /// s_ij = scale · q[b, h, i]·k[b, h / (Hq/Hkv), j] + mask[b, h, i, j], masked scores being −∞.
    /// <list type="bullet">
    /// <item>q [B, Hq, Tq, D]; k, v [B, Hkv, Tk, D] with Hq % Hkv == 0 (GQA; Hkv = 1 is MQA). Views of any strides are accepted.</item>
    /// <item><paramref name="scale"/> defaults to 1/√D.</item>
    /// <item><paramref name="causal"/>: query i sees keys j ≤ i + Tk − Tq (diagonal aligned to the end, as for decoding with a KV cache).</item>
    /// <item><paramref name="mask"/>: F32 additive, or Bool where true means "may attend" (PyTorch SDPA convention);
    /// broadcastable to [B, Hq, Tq, Tk]. Treated as a constant (no gradient).</item>
    /// <item><paramref name="keyLengths"/>: I64/I32 [B], keys j ≥ keyLengths[b] are ignored (right padding).</item>
    /// <item><paramref name="keyValid"/>: Bool [B, Tk], true for real keys (the HF attention_mask convention, not nn.MultiheadAttention's).</item>
    /// <item><paramref name="segmentIds"/>: I64/I32 [B, T] (needs Tq == Tk): attention stays inside equal ids (packed samples).</item>
    /// </list>
    /// A query row that can see no key at all returns zeros (and gets zero gradients), as flash-attention does;
    /// PyTorch's SDPA returns NaN there.
    /// Backward gives dq, dk, dv (dk/dv summed over the query heads sharing a kv head) without materialising T×T.
    /// </remarks>
    public static Tensor ScaledDotProductAttention(Tensor q, Tensor k, Tensor v, bool causal = false, float? scale = null,
        Tensor? mask = null, Tensor? keyLengths = null, Tensor? keyValid = null, Tensor? segmentIds = null)
    {
        const string op = "ScaledDotProductAttention";
        if (q.Rank != 4 || k.Rank != 4 || v.Rank != 4)
            throw new ArgumentException($"{op}: q, k, v must be [B, H, T, D]; got {q.Describe()}, {k.Describe()}, {v.Describe()}");
        int B = q.Shape[0], Hq = q.Shape[1], Tq = q.Shape[2], D = q.Shape[3];
        int Hkv = k.Shape[1], Tk = k.Shape[2];
        if (k.Shape[0] != B || k.Shape[3] != D || !k.Shape.AsSpan().SequenceEqual(v.Shape))
            throw new ArgumentException($"{op}: k and v must be [B={B}, Hkv, Tk, D={D}] and equal; got {k.Describe()}, {v.Describe()}");
        if (Hkv == 0 || Hq % Hkv != 0)
            throw new ArgumentException($"{op}: query heads {Hq} are not a multiple of kv heads {Hkv} ({q.Describe()}, {k.Describe()})");
        foreach (var t in new[] { q, k, v })
            if (!t.DType.IsFloat()) throw new ArgumentException($"{op}: {t.Describe()} is not a float tensor");

        if (DecodeAttention.Enabled && Tq <= DecodeAttention.MaxQueries && mask == null && keyLengths == null && keyValid == null && segmentIds == null
            && k.DType == DType.F32 && v.DType == DType.F32 && k.Strides[3] == 1 && v.Strides[3] == 1
            && !Tensor.AnyRequiresGrad(q, k, v))
            return DecodeAttentionForward(q, k, v, causal, scale ?? 1f / MathF.Sqrt(D));

        using var masks = AttentionMasks.Build(op, B, Hq, Tq, Tk, mask, keyLengths, keyValid, segmentIds);
        using var qc = ContiguousF32(q, op);
        using var kc = ContiguousF32(k, op);
        using var vc = ContiguousF32(v, op);
        var p = masks.Problem(B, Hq, Hkv, Tq, Tk, D, scale ?? 1f / MathF.Sqrt(D), causal);

        var o = Tensor.Empty([B, Hq, Tq, D]);
        var lse = Tensor.Empty([B, Hq, Tq]);
        using (var qS = PadRows(qc, (long)B * Hq * Tq, D, p.DPad, p.Scale))
        using (var kT = TransposePadded(kc, B * Hkv, Tk, D, p.TkPad))
        using (var vP = PadRows(vc, (long)B * Hkv * Tk, D, p.DPad))
            FlashAttention.Forward(p, qS.F32Ptr, kT.F32Ptr, vP.F32Ptr, o.F32Ptr, lse.F32Ptr);

        if (Tensor.AnyRequiresGrad(q, k, v))
        {
            var sq = qc.SaveForBackward(); var sk = kc.SaveForBackward(); var sv = vc.SaveForBackward();
            var so = o.SaveForBackward(); var sl = lse.SaveForBackward();
            var sm = masks.Save();
            float sc = p.Scale;
            bool gq = q.RequiresGrad, gk = k.RequiresGrad, gv = v.RequiresGrad;
            lse.Dispose();
            o.WithGradFn("scaled_dot_product_attention", [q, k, v], [sq, sk, sv, so, sl, .. sm.Saved], g =>
            {
                var bp = sm.Problem(B, Hq, Hkv, Tq, Tk, D, sc, causal);
                var (dq, dk, dv) = AttentionBackward(bp, sq, sk, sv, so, sl, g);
                if (!gq) { dq.Dispose(); dq = null!; }
                if (!gk) { dk.Dispose(); dk = null!; }
                if (!gv) { dv.Dispose(); dv = null!; }
                return [dq, dk, dv];
            });
        }
        else lse.Dispose();
        return o;
    }

    /// <summary>
    /// Inference with a few queries (decoding): K and V are read in place through their strides (a narrowed KV cache
    /// is not copied), see <see cref="DecodeAttention"/>.
    /// </summary>
    static Tensor DecodeAttentionForward(Tensor q, Tensor k, Tensor v, bool causal, float scale)
    {
        int B = q.Shape[0], Hq = q.Shape[1], Tq = q.Shape[2], D = q.Shape[3], Hkv = k.Shape[1], Tk = k.Shape[2];
        using var qc = ContiguousF32(q, "ScaledDotProductAttention");
        var o = Tensor.Empty([B, Hq, Tq, D]);
        DecodeAttention.Forward(B, Hq, Hkv, Tq, Tk, D, scale, causal, qc.F32Ptr,
            k.F32Ptr, k.Strides[0], k.Strides[1], k.Strides[2], v.F32Ptr, v.Strides[0], v.Strides[1], v.Strides[2], o.F32Ptr);
        return o;
    }

    static (Tensor dq, Tensor dk, Tensor dv) AttentionBackward(AttentionProblem p, Tensor q, Tensor k, Tensor v, Tensor o, Tensor lse, Tensor g)
    {
        int B = p.B, Hq = p.Hq, Hkv = p.Hkv, Tq = p.Tq, Tk = p.Tk, D = p.D;
        long qRows = (long)B * Hq * Tq;
        using var gc = ContiguousF32(g, "ScaledDotProductAttention backward");
        // Δ_i = Σ_d dO[i, d]·O[i, d], the row term of the softmax gradient
        using var delta = Tensor.Empty([B, Hq, Tq]);
        float* gp = gc.F32Ptr, op = o.F32Ptr, dp = delta.F32Ptr;
        Par.ForChunks(qRows, 256, (s, e) =>
        {
            for (long i = s; i < e; i++) dp[i] = TensorPrimitives.Dot(new ReadOnlySpan<float>(gp + i * D, D), new ReadOnlySpan<float>(op + i * D, D));
        });
        var dq = Tensor.Empty([B, Hq, Tq, D]);
        var dk = Tensor.Zeros([B, Hkv, Tk, D]);
        var dv = Tensor.Zeros([B, Hkv, Tk, D]);
        using var qS = PadRows(q, qRows, D, p.DPad, p.Scale);
        using var dOP = PadRows(gc, qRows, D, p.DPad);
        using var kP = PadRows(k, (long)B * Hkv * Tk, D, p.DPad);
        using var kT = TransposePadded(k, B * Hkv, Tk, D, p.TkPad);
        using var vT = TransposePadded(v, B * Hkv, Tk, D, p.TkPad);
        FlashAttention.Backward(p, qS.F32Ptr, kT.F32Ptr, kP.F32Ptr, vT.F32Ptr, dOP.F32Ptr, lse.F32Ptr, delta.F32Ptr,
            dq.F32Ptr, dk.F32Ptr, dv.F32Ptr);
        return (dq, dk, dv);
    }

    /// <summary>Rows of length d, times <paramref name="scale"/>, copied into rows of length dPad (zero tail); an alias when
    /// there is nothing to do.</summary>
    static Tensor PadRows(Tensor x, long rows, int d, int dPad, float scale = 1f)
    {
        if (d == dPad && scale == 1f) return x.Alias(register: false);
        var r = Tensor.Empty([checked((int)(rows * dPad))]);
        float* src = x.F32Ptr, dst = r.F32Ptr;
        Par.ForChunks(rows, 512, (s, e) =>
        {
            for (long i = s; i < e; i++)
            {
                TensorPrimitives.Multiply(new ReadOnlySpan<float>(src + i * d, d), scale, new Span<float>(dst + i * dPad, d));
                new Span<float>(dst + i * dPad + d, dPad - d).Clear();
            }
        });
        return r;
    }

    /// <summary>[groups, t, d] -> [groups, d, tPad] with zero columns t..tPad-1 (keys as columns for the score tiles).</summary>
    static Tensor TransposePadded(Tensor x, int groups, int t, int d, int tPad)
    {
        var r = Tensor.Empty([groups, d, tPad]);
        float* src = x.F32Ptr, dst = r.F32Ptr;
        Par.For(groups, gi =>
        {
            float* s = src + (long)gi * t * d, o = dst + (long)gi * d * tPad;
            const int Blk = 32; // cache-blocked transpose
            for (int j0 = 0; j0 < t; j0 += Blk)
                for (int c0 = 0; c0 < d; c0 += Blk)
                {
                    int j1 = Math.Min(t, j0 + Blk), c1 = Math.Min(d, c0 + Blk);
                    for (int j = j0; j < j1; j++)
                        for (int c = c0; c < c1; c++) o[(long)c * tPad + j] = s[(long)j * d + c];
                }
            for (int c = 0; c < d; c++) new Span<float>(o + (long)c * tPad + t, tPad - t).Clear();
        });
        return r;
    }

    /// <summary>The optional masks of one attention call, converted to the kernel's forms and kept alive for backward.</summary>
    sealed class AttentionMasks : IDisposable
    {
        Tensor? _mask, _keyBias, _keyLen, _qSeg;
        long[] _maskStrides = [0, 0, 0, 0];

        public static AttentionMasks Build(string op, int B, int Hq, int Tq, int Tk, Tensor? mask, Tensor? keyLengths, Tensor? keyValid, Tensor? segmentIds)
        {
            var m = new AttentionMasks();
            if (mask != null)
            {
                if (mask.Rank > 4) throw new ArgumentException($"{op}: mask {mask.Describe()} has more than 4 dims");
                if (mask.DType == DType.Bool) m._mask = BoolToAdditive(mask);
                else if (mask.DType.IsFloat()) m._mask = ContiguousF32(mask, op);
                else throw new ArgumentException($"{op}: mask {mask.Describe()} must be float (additive) or Bool");
                try { m._maskStrides = BroadcastStrides(m._mask, [B, Hq, Tq, Tk]); }
                catch (ArgumentException) { throw new ArgumentException($"{op}: mask {mask.Describe()} does not broadcast to [B={B}, Hq={Hq}, Tq={Tq}, Tk={Tk}]"); }
            }
            if (keyValid != null)
            {
                if (keyValid.DType != DType.Bool || keyValid.Rank != 2 || keyValid.Shape[0] != B || keyValid.Shape[1] != Tk)
                    throw new ArgumentException($"{op}: keyValid must be Bool [B={B}, Tk={Tk}], got {keyValid.Describe()}");
                m._keyBias = BoolToAdditive(keyValid);
            }
            if (keyLengths != null)
            {
                if (keyLengths.Rank != 1 || keyLengths.Shape[0] != B || keyLengths.DType is not (DType.I64 or DType.I32))
                    throw new ArgumentException($"{op}: keyLengths must be I64/I32 [B={B}], got {keyLengths.Describe()}");
                m._keyLen = Contiguous(keyLengths, DType.I32);
            }
            if (segmentIds != null)
            {
                if (Tq != Tk) throw new ArgumentException($"{op}: segmentIds need Tq == Tk, got Tq={Tq}, Tk={Tk}");
                if (segmentIds.Rank != 2 || segmentIds.Shape[0] != B || segmentIds.Shape[1] != Tq || segmentIds.DType is not (DType.I64 or DType.I32))
                    throw new ArgumentException($"{op}: segmentIds must be I64/I32 [B={B}, T={Tq}], got {segmentIds.Describe()}");
                m._qSeg = Contiguous(segmentIds, DType.I32);
            }
            return m;
        }

        static Tensor BoolToAdditive(Tensor b)
        {
            using var bc = Contiguous(b);
            var r = Tensor.Empty(b.Shape);
            float* d = r.F32Ptr;
            byte* src = bc.DataPtr;
            for (long i = 0; i < r.NumEl; i++) d[i] = src[i] != 0 ? 0f : float.NegativeInfinity;
            return r;
        }

        public AttentionProblem Problem(int B, int Hq, int Hkv, int Tq, int Tk, int D, float scale, bool causal)
        {
            var p = new AttentionProblem { B = B, Hq = Hq, Hkv = Hkv, Tq = Tq, Tk = Tk, D = D, Scale = scale, Causal = causal };
            if (_mask != null)
            {
                p.Mask = _mask.F32Ptr;
                (p.MaskB, p.MaskH, p.MaskI, p.MaskJ) = (_maskStrides[0], _maskStrides[1], _maskStrides[2], _maskStrides[3]);
            }
            if (_keyBias != null) p.KeyBias = _keyBias.F32Ptr;
            if (_keyLen != null) p.KeyLen = (int*)_keyLen.DataPtr;
            if (_qSeg != null) p.QSeg = p.KSeg = (int*)_qSeg.DataPtr;
            return p;
        }

        /// <summary>A copy holding its own references, for the backward closure; <see cref="Saved"/> lists them for release.</summary>
        public AttentionMasks Save()
        {
            var s = new AttentionMasks { _maskStrides = _maskStrides };
            s._mask = _mask?.SaveForBackward();
            s._keyBias = _keyBias?.SaveForBackward();
            s._keyLen = _keyLen?.SaveForBackward();
            s._qSeg = _qSeg?.SaveForBackward();
            return s;
        }

        public Tensor[] Saved => new[] { _mask, _keyBias, _keyLen, _qSeg }.Where(t => t != null).ToArray()!;

        public void Dispose()
        {
            _mask?.Dispose(); _keyBias?.Dispose(); _keyLen?.Dispose(); _qSeg?.Dispose();
        }
    }
}
