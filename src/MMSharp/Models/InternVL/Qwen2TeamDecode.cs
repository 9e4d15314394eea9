using System.Runtime.InteropServices;
using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.Engine.Kernels;
using MMSharp.NN;

namespace MMSharp.Models.InternVL;

/// <summary>
/// One decode step of <see cref="Qwen2ForCausalLM"/> (batch 1, one new token, KV cache) as a single parallel region: the
/// threads stay in one <see cref="DecodeTeam"/> for the whole step instead of a fork/join per op, and the work between the
/// weight reads runs on every thread too. Per layer five phases:
/// (1) q/k/v rows (every member first normalises the residual stream into its own buffer, so no phase is spent on it),
/// (2) attention, one item per kv head: RoPE of its key (written into the cache) and its query heads, the value into
/// the cache, <see cref="DecodeAttention"/> over the cached positions,
/// (3) o_proj rows added onto the residual stream, (4) gate/up rows (after the second norm, again per member),
/// (5) down_proj rows (each member first computes silu(gate)·up into its own buffer) added onto the residual stream;
/// then the final norm and the LM head rows.
/// Every value comes from the same kernel and the same float operations as the op-by-op path
/// (<see cref="Ops.RmsNorm"/>, <see cref="Linear.ForwardFused"/>, <see cref="Ops.ApplyRotary"/>, <see cref="KvCache.Append"/>,
/// <see cref="Ops.ScaledDotProductAttention"/>, <see cref="Ops.SiluMul"/>, <see cref="Ops.Add(Tensor, Tensor)"/>), so the logits are
/// bit-identical to it for any thread count.
/// </summary>
internal sealed unsafe class Qwen2TeamDecode : IDisposable
{
    const int PhasesPerLayer = 5;

    readonly Qwen2ForCausalLM _lm;
    readonly Qwen2Config _c;
    readonly int _members;
    readonly DecodeTeam _team;
    // fp32 scratch: residual stream, per-member normed input and activation, q/k/v, attention output, gate/up,
    // per-layer norm weights and biases in fp32
    readonly float[] _buf;
    readonly TeamGemvSegment[] _segs;
    readonly bool _bf16;

    /// <summary>Whether the team path may run this step: one token of one sequence on a cache, no autograd, weights as
    /// <see cref="Linear.ForwardFused"/> accepts them (F32 or BF16 with unit stride along k, no LoRA), AVX-512.</summary>
    public static bool Applies(Qwen2ForCausalLM lm, Tensor x, KvCache? cache)
    {
        var c = lm.Config;
        if (cache == null || x.Rank != 3 || x.Shape[0] != 1 || x.Shape[1] != 1 || x.Shape[2] != c.HiddenSize) return false;
        if (Gemm.ActivePath != Gemm.Path.Avx512 || !DecodeAttention.Enabled || !Linear.FusedInference) return false;
        if (cache.Batch != 1 || cache.NumKeyValueHeads != c.NumKeyValueHeads || cache.HeadDim != c.HeadDim) return false;
        if (GradMode.Enabled && x.RequiresGrad) return false;
        var dt = lm.LmHead.Weight.DType;
        if (dt != DType.F32 && dt != DType.BF16) return false;
        foreach (var l in Linears(lm))
        {
            if (l.Lora != null || !l.Weight.IsMaterialized || l.Weight.DType != dt) return false;
            var w = l.Weight.Data;
            if (w.Strides[1] != 1 || (GradMode.Enabled && (w.RequiresGrad || (l.Bias?.Data.RequiresGrad ?? false)))) return false;
        }
        foreach (var layer in lm.Model.Layers)
            if (GradMode.Enabled && (layer.InputLayernorm.Weight.Data.RequiresGrad || layer.PostAttentionLayernorm.Weight.Data.RequiresGrad))
                return false;
        return !(GradMode.Enabled && lm.Model.Norm.Weight.Data.RequiresGrad);
    }

    static IEnumerable<Linear> Linears(Qwen2ForCausalLM lm)
    {
        foreach (var layer in lm.Model.Layers)
        {
            var a = layer.SelfAttn;
            var m = layer.Mlp;
            yield return a.QProj; yield return a.KProj; yield return a.VProj; yield return a.OProj;
            yield return m.GateProj; yield return m.UpProj; yield return m.DownProj;
        }
        yield return lm.LmHead;
    }

    public Qwen2TeamDecode(Qwen2ForCausalLM lm, int members)
    {
        _lm = lm;
        _c = lm.Config;
        _members = members;
        int L = _c.NumHiddenLayers;
        _team = new DecodeTeam(L * PhasesPerLayer + 1, members);
        _buf = GC.AllocateUninitializedArray<float>(checked((int)BufFloats()), pinned: true);
        _segs = GC.AllocateUninitializedArray<TeamGemvSegment>(L * 7 + 1, pinned: true);
        _bf16 = lm.LmHead.Weight.DType == DType.BF16;
    }

    public int Members => _members;

    /// <summary>Steps run by any instance (tests check that the path under test ran).</summary>
    internal static long StepsRun;

    /// <summary>Benchmarks: when set, member 0 books the wall time of each phase kind (from entering it to the phase
    /// being done) into <see cref="PhaseSeconds"/>: 0 q/k/v (with the norm), 1 attention, 2 o_proj, 3 gate/up (with
    /// the norm), 4 down (with silu·up), 5 final norm + head, 6 the step outside the team region, 7 (part of 0-5) member 0 waiting for the
    /// others' items at the end of phases.</summary>
    internal static bool ProfilePhases;
    internal static readonly double[] PhaseSeconds = new double[8];
    long _mark;

    /// <summary>With <see cref="ProfilePhases"/>: book the calling thread's CPU time instead of the wall time (a busy
    /// machine's preemptions then do not count; meaningful with one thread).</summary>
    internal static bool ProfileCpuClock;

    [StructLayout(LayoutKind.Sequential)] struct TimeSpec { public long Sec, Nsec; }
    [DllImport("libc", EntryPoint = "clock_gettime")] static extern int ClockGetTime(int clock, out TimeSpec ts);

    static long Now()
    {
        if (!ProfileCpuClock) return System.Diagnostics.Stopwatch.GetTimestamp();
        ClockGetTime(3, out var t);                                              // CLOCK_THREAD_CPUTIME_ID
        return (long)((t.Sec + t.Nsec * 1e-9) * System.Diagnostics.Stopwatch.Frequency);
    }

    void Mark(int member, int kind)
    {
        if (!ProfilePhases || member != 0) return;
        long now = Now();
        PhaseSeconds[kind] += (now - _mark) / (double)System.Diagnostics.Stopwatch.Frequency;
        _mark = now;
    }

    // scratch layout (floats, each region rounded up to 16 floats)
    static long Up(long n) => (n + 15) / 16 * 16;
    int C => _c.HiddenSize;
    int I => _c.IntermediateSize;
    int Qkv => (_c.NumAttentionHeads + 2 * _c.NumKeyValueHeads) * _c.HeadDim;
    int QDim => _c.NumAttentionHeads * _c.HeadDim;
    long OffH => 0;
    long OffXn => Up(C);
    long OffAct => OffXn + _members * Up(C);
    long OffQkv => OffAct + _members * Up(I);
    long OffQRot => OffQkv + Up(Qkv);
    long OffAttn => OffQRot + Up(QDim);
    long OffGu => OffAttn + Up(QDim);
    long OffNormW => OffGu + Up(2L * I);                       // per layer: input norm, post norm; then the final norm
    long OffBias => OffNormW + (2L * _c.NumHiddenLayers + 1) * Up(C); // per layer: q/k/v biases (fp32)
    long BufFloats() => OffBias + _c.NumHiddenLayers * Up(Qkv);

    /// <summary>inputs_embeds [1, 1, C] -> logits [1, 1, V]; writes the token's keys and values and advances the cache.</summary>
    public Tensor Step(Tensor inputsEmbeds, KvCache cache)
    {
        long stepStart = System.Diagnostics.Stopwatch.GetTimestamp();
        cache.EnsureRoom(1, 1);
        Interlocked.Increment(ref StepsRun);
        int P = cache.Length;
        int L = _c.NumHiddenLayers, hd = _c.HeadDim, nH = _c.NumAttentionHeads, nKV = _c.NumKeyValueHeads;
        fixed (float* bufp = _buf)
        fixed (TeamGemvSegment* segs = _segs)
        {
            float* buf = bufp;
            // the residual stream starts as the embedding row
            using (var e = Ops.Contiguous(inputsEmbeds, DType.F32))
                new ReadOnlySpan<float>(e.F32Ptr, C).CopyTo(new Span<float>(buf + OffH, C));
            // fp32 copies of the norm weights and biases (exact conversions, as the ops make them per call)
            for (int l = 0; l < L; l++)
            {
                var layer = _lm.Model.Layers[l];
                ToF32(layer.InputLayernorm.Weight.Data, buf + OffNormW + 2L * l * Up(C));
                ToF32(layer.PostAttentionLayernorm.Weight.Data, buf + OffNormW + (2L * l + 1) * Up(C));
                var a = layer.SelfAttn;
                float* b = buf + OffBias + l * Up(Qkv);
                if (a.QProj.Bias != null) ToF32(a.QProj.Bias.Data, b);
                if (a.KProj.Bias != null) ToF32(a.KProj.Bias.Data, b + QDim);
                if (a.VProj.Bias != null) ToF32(a.VProj.Bias.Data, b + QDim + nKV * hd);
            }
            ToF32(_lm.Model.Norm.Weight.Data, buf + OffNormW + 2L * L * Up(C));

            var logits = Tensor.Empty([1, 1, _lm.LmHead.OutFeatures]);
            // rows of every GEMV phase (pointers of the current parameter tensors) and the phase counters
            for (int l = 0; l < L; l++)
            {
                var layer = _lm.Model.Layers[l];
                var a = layer.SelfAttn;
                var m = layer.Mlp;
                float* b = buf + OffBias + l * Up(Qkv), qkv = buf + OffQkv, gu = buf + OffGu;
                TeamGemvSegment* s = segs + l * 7;
                s[0] = Seg(a.QProj, qkv, a.QProj.Bias != null ? b : null, false);
                s[1] = Seg(a.KProj, qkv + QDim, a.KProj.Bias != null ? b + QDim : null, false);
                s[2] = Seg(a.VProj, qkv + QDim + nKV * hd, a.VProj.Bias != null ? b + QDim + nKV * hd : null, false);
                s[3] = Seg(a.OProj, buf + OffH, null, true);
                s[4] = Seg(m.GateProj, gu, null, false);
                s[5] = Seg(m.UpProj, gu + I, null, false);
                s[6] = Seg(m.DownProj, buf + OffH, null, true);
                int p = l * PhasesPerLayer;
                _team.InitShares(p, Chunks(Qkv, C));
                _team.InitItems(p + 1, nKV);
                _team.InitShares(p + 2, Chunks(C, QDim));
                _team.InitShares(p + 3, Chunks(2 * I, C));
                _team.InitShares(p + 4, Chunks(C, I));
            }
            segs[L * 7] = Seg(_lm.LmHead, logits.F32Ptr, null, false);
            _team.InitShares(L * PhasesPerLayer, Chunks(_lm.LmHead.OutFeatures, C));

            using var positions = Qwen2Rotary.Positions(P, 1);
            var (cos, sin) = Qwen2Rotary.Tables(_c, positions, P);                // [1, hd]
            using (cos)
            using (sin)
            {
                float* cp = cos.F32Ptr, sp = sin.F32Ptr;
                int rd = cos.Shape[^1];
                nint bp = (nint)buf, sgp = (nint)segs, cpp = (nint)cp, spp = (nint)sp;
                long teamStart = System.Diagnostics.Stopwatch.GetTimestamp();
                _mark = ProfilePhases ? Now() : 0;
                Par.For(_members, member => Member(member, (float*)bp, (TeamGemvSegment*)sgp, cache, P, (float*)cpp, (float*)spp, rd));
                if (ProfilePhases)
                    PhaseSeconds[6] += (teamStart - stepStart) / (double)System.Diagnostics.Stopwatch.Frequency;
            }
            cache.Advance(1);
            return logits;
        }
    }

    long Chunks(int rows, int k) { int cr = DecodeTeam.ChunkRows(k, _bf16 ? 2 : 4); return (rows + cr - 1) / cr; }

    static TeamGemvSegment Seg(Linear l, float* output, float* bias, bool accumulate)
    {
        var w = l.Weight.Data;
        return new TeamGemvSegment { W = w.DataPtr, Ldw = w.Strides[0], Rows = l.OutFeatures, Bias = bias, Out = output, Accumulate = accumulate };
    }

    static void ToF32(Tensor t, float* dst)
    {
        using var f = Ops.Contiguous(t, DType.F32);
        new ReadOnlySpan<float>(f.F32Ptr, (int)f.NumEl).CopyTo(new Span<float>(dst, (int)f.NumEl));
    }

    void Member(int member, float* buf, TeamGemvSegment* segs, KvCache cache, int P, float* cos, float* sin, int rd)
    {
        int L = _c.NumHiddenLayers, hd = _c.HeadDim, nH = _c.NumAttentionHeads, nKV = _c.NumKeyValueHeads, G = nH / nKV;
        float* h = buf + OffH, xn = buf + OffXn + member * Up(C), act = buf + OffAct + member * Up(I);
        float* qkv = buf + OffQkv, qRot = buf + OffQRot, attn = buf + OffAttn, gu = buf + OffGu;
        int crC = DecodeTeam.ChunkRows(C, _bf16 ? 2 : 4), crQ = DecodeTeam.ChunkRows(QDim, _bf16 ? 2 : 4), crI = DecodeTeam.ChunkRows(I, _bf16 ? 2 : 4);
        float scale = 1f / MathF.Sqrt(hd);
        for (int l = 0; l < L; l++)
        {
            var layer = _lm.Model.Layers[l];
            int p = l * PhasesPerLayer;
            TeamGemvSegment* s = segs + l * 7;
            float* normW = buf + OffNormW + 2L * l * Up(C);

            // (1) q/k/v of input_layernorm(h)
            if (_team.AnyChunkLeft(p))
            {
                Norm(h, normW, layer.InputLayernorm.Eps, xn);
                Gemv(p, member, C, xn, s, 3, Qkv, crC);
            }
            WaitPhase(member, p); Mark(member, 0);

            // (2) attention, one kv head per item
            int g;
            while ((g = _team.ClaimItem(p + 1)) >= 0)
            {
                Attention(l, g, G, hd, nH, nKV, qkv, qRot, attn, cache, P, cos, sin, rd, scale);
                _team.Done(p + 1);
            }
            WaitPhase(member, p + 1); Mark(member, 1);

            // (3) h += o_proj(attn)
            Gemv(p + 2, member, QDim, attn, s + 3, 1, C, crQ);
            WaitPhase(member, p + 2); Mark(member, 2);

            // (4) gate/up of post_attention_layernorm(h)
            if (_team.AnyChunkLeft(p + 3))
            {
                Norm(h, normW + Up(C), layer.PostAttentionLayernorm.Eps, xn);
                Gemv(p + 3, member, C, xn, s + 4, 2, 2 * I, crC);
            }
            WaitPhase(member, p + 3); Mark(member, 3);

            // (5) h += down_proj(silu(gate)·up)
            if (_team.AnyChunkLeft(p + 4))
            {
                var op = new Ops.SiluMulOp();
                VectorLoop.ZipContiguous(ref op, gu, gu + I, act, I);
                Gemv(p + 4, member, I, act, s + 6, 1, C, crI);
            }
            WaitPhase(member, p + 4); Mark(member, 4);
        }
        // final norm and the LM head
        int ph = L * PhasesPerLayer;
        if (_team.AnyChunkLeft(ph))
        {
            Norm(h, buf + OffNormW + 2L * L * Up(C), _lm.Model.Norm.Eps, xn);
            Gemv(ph, member, C, xn, segs + L * 7, 1, _lm.LmHead.OutFeatures, crC);
        }
        WaitPhase(member, ph); Mark(member, 5);
    }

    void WaitPhase(int member, int p)
    {
        if (!ProfilePhases || member != 0) { _team.Wait(p); return; }
        long t0 = Now();
        _team.Wait(p);
        PhaseSeconds[7] += (Now() - t0) / (double)System.Diagnostics.Stopwatch.Frequency;
    }

    void Gemv(int p, int member, int k, float* x, TeamGemvSegment* segs, int count, long rows, int chunkRows)
    {
        if (_bf16) _team.RunGemv<BF16Elem>(p, member, k, x, segs, count, rows, chunkRows);
        else _team.RunGemv<F32Elem>(p, member, k, x, segs, count, rows, chunkRows);
    }

    /// <summary>y = x · rsqrt(mean(x²) + eps) · w, the row computation of <see cref="Ops.RmsNorm"/>.</summary>
    void Norm(float* x, float* w, float eps, float* y)
    {
        int c = C;
        float ms = RowReduce.SumSquaredDiff(x, c, 0f) / c;
        float s = 1f / MathF.Sqrt(ms + eps);
        Ops.NormalizeRow(x, y, c, 0f, s, w, null);
    }

    /// <summary>kv head <paramref name="g"/> of layer <paramref name="l"/>: its rotated key and its value into the cache at
    /// position <paramref name="P"/>, its <paramref name="G"/> query heads rotated, and their attention output.</summary>
    static void Attention(int l, int g, int G, int hd, int nH, int nKV, float* qkv, float* qRot, float* attn, KvCache cache, int P,
        float* cos, float* sin, int rd, float scale)
    {
        var keys = cache.KeyBuffer(l);                                           // [1, nKV, Max, hd]
        var values = cache.ValueBuffer(l);
        long kH = keys.Strides[1], kT = keys.Strides[2], vH = values.Strides[1], vT = values.Strides[2];
        float* kHead = keys.F32Ptr + g * kH, vHead = values.F32Ptr + g * vH;
        Rope(qkv + (long)(nH + g) * hd, cos, sin, kHead + P * kT, hd, rd);
        new ReadOnlySpan<float>(qkv + (long)(nH + nKV + g) * hd, hd).CopyTo(new Span<float>(vHead + P * vT, hd));
        for (int i = 0; i < G; i++)
        {
            long qh = (long)g * G + i;
            Rope(qkv + qh * hd, cos, sin, qRot + qh * hd, hd, rd);
        }
        DecodeAttention.Forward(1, G, 1, 1, P + 1, hd, scale, causal: true, qRot + (long)g * G * hd,
            kHead, keys.Strides[0], kH, kT, vHead, values.Strides[0], vH, vT, attn + (long)g * G * hd);
    }

    /// <summary>One row of <see cref="Ops.ApplyRotary"/> (rotate_half layout, rd rotated dims of D).</summary>
    static void Rope(float* x, float* cos, float* sin, float* y, int D, int rd)
    {
        int h = rd / 2;
        Ops.RotaryCombine(x, cos, x + h, sin, -1f, y, h);
        Ops.RotaryCombine(x + h, cos + h, x, sin + h, 1f, y + h, h);
        if (rd < D) new ReadOnlySpan<float>(x + rd, D - rd).CopyTo(new Span<float>(y + rd, D - rd));
    }

    public void Dispose() => _team.Dispose();
}
