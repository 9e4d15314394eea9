using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.Engine.Kernels;
using MMSharp.NN;

namespace MMSharp.Models.InternVL;

/// <summary>
/// One decode step of <see cref="Qwen2ForCausalLM"/> (batch 1, one new token, KV cache) as a single parallel region: the
/// threads stay in one <see cref="DecodeTeam"/> for the whole step instead of a fork/join per op, and the work between the
/// weight reads runs on every thread too. Per layer five phases:
/// (1) q/k/v rows of input_layernorm(h), (2) attention, one chunk per kv head: RoPE of its key (written into the
/// cache) and of its query heads, the value into the cache, <see cref="DecodeAttention"/> over the cached positions,
/// (3) o_proj rows, (4) gate/up rows of post_attention_layernorm(h), (5) down_proj rows of silu(gate)·up; then the
/// final norm and the LM head rows. Every member keeps its own copy of the residual stream h and computes the norms,
/// residual adds and silu·up itself (cheap vector work, identical on every member), so no phase is spent on them and
/// every chunk only stores into this step's per-layer buffers: a chunk may be run twice (a waiting member takes over
/// the chunk of a descheduled one, <see cref="DecodeTeam"/>) and writes the same values both times.
/// Every value comes from the same kernel and the same float operations as the op-by-op path
/// (<see cref="Ops.RmsNorm"/>, <see cref="Linear.ForwardFused"/>, <see cref="Ops.ApplyRotary"/>, <see cref="KvCache.Append"/>,
/// <see cref="Ops.ScaledDotProductAttention"/>, <see cref="Ops.SiluMul"/>, <see cref="Ops.Add(Tensor, Tensor)"/>), so the
/// logits are bit-identical to it for any thread count.
/// Every method the step calls per chunk or per phase, here and in the kernels it uses, is marked AggressiveOptimization:
/// compiled fully optimised at its first call. With tiered compilation they ran as tier-0 (and then instrumented) code
/// through the first ~100 ms of decoding; such a method must not read a mutable static of a class that may not be
/// initialised yet when it is compiled (see <see cref="Step"/>).
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
    readonly GemvSegment[] _segs;
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
        _segs = GC.AllocateUninitializedArray<GemvSegment>(L * 7 + 1, pinned: true);
        _bf16 = lm.LmHead.Weight.DType == DType.BF16;
    }

    public int Members => _members;

    /// <summary>Steps run by any instance (tests check that the path under test ran).</summary>
    internal static long StepsRun;

    /// <summary>Benchmarks: when set, member 0 books the wall time of each phase kind (from entering it to the phase
    /// being done) into <see cref="PhaseSeconds"/>: 0 q/k/v (with the norm), 1 attention, 2 o_proj, 3 gate/up (with
    /// the norm), 4 down (with silu·up), 5 final norm + head, 6 the step outside the team region, 7 + kind (part of kind 0-5)
    /// member 0 waiting for the others' chunks at the end of that kind's phases.</summary>
    internal static bool ProfilePhases;
    internal static readonly double[] PhaseSeconds = new double[13];
    long _mark;

    /// <summary>With <see cref="ProfilePhases"/>: book the calling thread's CPU time instead of the wall time (a busy
    /// machine's preemptions then do not count; meaningful with one thread).</summary>
    internal static bool ProfileCpuClock;

    [StructLayout(LayoutKind.Sequential)] struct TimeSpec { public long Sec, Nsec; }
    [DllImport("libc", EntryPoint = "clock_gettime")] static extern int ClockGetTime(int clock, out TimeSpec ts);

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    static long Now()
    {
        if (!ProfileCpuClock) return System.Diagnostics.Stopwatch.GetTimestamp();
        ClockGetTime(3, out var t);                                              // CLOCK_THREAD_CPUTIME_ID
        return (long)((t.Sec + t.Nsec * 1e-9) * System.Diagnostics.Stopwatch.Frequency);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
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
    int L => _c.NumHiddenLayers;
    // shared, per layer: q/k/v, attention output, o_proj output, gate/up, down_proj output
    long LayerFloats => Up(Qkv) + Up(QDim) + Up(C) + Up(2L * I) + Up(C);
    long OffQkv(int l) => l * LayerFloats;
    long OffAttn(int l) => OffQkv(l) + Up(Qkv);
    long OffO(int l) => OffAttn(l) + Up(QDim);
    long OffGu(int l) => OffO(l) + Up(C);
    long OffD(int l) => OffGu(l) + Up(2L * I);
    // shared, read-only: norm weights (per layer input, post; then the final norm) and q/k/v biases in fp32
    long OffNormW => L * LayerFloats;
    long OffBias => OffNormW + (2L * L + 1) * Up(C);
    // per member: residual stream, normed input, silu·up, rotated queries
    long MemberFloats => 2 * Up(C) + Up(I) + Up(QDim);
    long OffMember(int m) => OffBias + L * Up(Qkv) + m * MemberFloats;
    long BufFloats() => OffMember(_members);

    /// <summary>inputs_embeds [1, 1, C] -> logits [1, 1, V]; writes the token's keys and values and advances the cache.</summary>
    public Tensor Step(Tensor inputsEmbeds, KvCache cache)
    {
        long stepStart = System.Diagnostics.Stopwatch.GetTimestamp();
        cache.EnsureRoom(1, 1);
        Interlocked.Increment(ref StepsRun);
        int P = cache.Length;
        int hd = _c.HeadDim, nKV = _c.NumKeyValueHeads;
        fixed (float* bufp = _buf)
        fixed (GemvSegment* segs = _segs)
        {
            float* buf = bufp;
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
            // rows of every GEMV (pointers of the current parameter tensors)
            for (int l = 0; l < L; l++)
            {
                var layer = _lm.Model.Layers[l];
                var a = layer.SelfAttn;
                var m = layer.Mlp;
                float* b = buf + OffBias + l * Up(Qkv), qkv = buf + OffQkv(l), gu = buf + OffGu(l);
                GemvSegment* s = segs + l * 7;
                s[0] = Seg(a.QProj, qkv, a.QProj.Bias != null ? b : null);
                s[1] = Seg(a.KProj, qkv + QDim, a.KProj.Bias != null ? b + QDim : null);
                s[2] = Seg(a.VProj, qkv + QDim + nKV * hd, a.VProj.Bias != null ? b + QDim + nKV * hd : null);
                s[3] = Seg(a.OProj, buf + OffO(l), null);
                s[4] = Seg(m.GateProj, gu, null);
                s[5] = Seg(m.UpProj, gu + I, null);
                s[6] = Seg(m.DownProj, buf + OffD(l), null);
            }
            segs[L * 7] = Seg(_lm.LmHead, logits.F32Ptr, null);
            // tunables read here, once per step: the member methods are compiled once, fully optimised, and a static read
            // there of a class not yet initialised at that moment would go through the class-init helper for good
            _rescueTicks = (long)(DecodeTeam.RescueAfterMicroseconds * System.Diagnostics.Stopwatch.Frequency / 1e6);
            _prefetchNext = PrefetchNextPhase;
            _ahead = GemmSmallM.PrefetchBytes;
            int eb = _bf16 ? 2 : 4;
            (_chunkRowsC, _chunkRowsQ, _chunkRowsI) = (GemvMulti.ChunkRows(C, eb), GemvMulti.ChunkRows(QDim, eb), GemvMulti.ChunkRows(I, eb));
            // the phases' chunk counters and finished-flags (laid out again if the flag storage grew)
            while (!LayOutPhases()) { }

            using var positions = Qwen2Rotary.Positions(P, 1);
            var (cos, sin) = Qwen2Rotary.Tables(_c, positions, P);                // [1, hd]
            using (cos)
            using (sin)
            using (var e = Ops.Contiguous(inputsEmbeds, DType.F32))
            {
                var ctx = new StepContext { Buf = buf, Segs = segs, Embed = e.F32Ptr, Cos = cos.F32Ptr, Sin = sin.F32Ptr, Rd = cos.Shape[^1], P = P, Cache = cache };
                long teamStart = System.Diagnostics.Stopwatch.GetTimestamp();
                _mark = ProfilePhases ? Now() : 0;
                Par.For(_members, member => Member(member, ctx));
                if (ProfilePhases)
                    PhaseSeconds[6] += (teamStart - stepStart) / (double)System.Diagnostics.Stopwatch.Frequency;
            }
            cache.Advance(1);
            return logits;
        }
    }

    /// <summary>What the members of one step share (pointers into pinned memory, valid for the step).</summary>
    sealed class StepContext
    {
        public float* Buf, Embed, Cos, Sin;
        public GemvSegment* Segs;
        public int Rd, P;
        public KvCache Cache = null!;
    }

    // per step (see Step): rescue wait in Stopwatch ticks, next-phase prefetch bytes, row prefetch distance, chunk rows per k
    long _rescueTicks;
    int _prefetchNext, _ahead, _chunkRowsC, _chunkRowsQ, _chunkRowsI;

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    int ChunkRowsOf(int k) => k == I ? _chunkRowsI : k == QDim ? _chunkRowsQ : _chunkRowsC;

    /// <summary>The GEMV of phase <paramref name="p"/>: its k, its segments (Segs[first .. first + count)) and their rows;
    /// false for an attention phase.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    bool GemvPhase(int p, out int k, out int first, out int count, out long rows)
    {
        int l = p / PhasesPerLayer, seg;
        (k, seg, count, rows) = (l == L ? -1 : p % PhasesPerLayer) switch
        {
            -1 => (C, 0, 1, (long)_lm.LmHead.OutFeatures),                       // LM head
            0 => (C, 0, 3, (long)Qkv),                                           // q/k/v
            2 => (QDim, 3, 1, (long)C),                                          // o_proj
            3 => (C, 4, 2, 2L * I),                                              // gate/up
            4 => (I, 6, 1, (long)C),                                             // down_proj
            _ => (0, 0, 0, 0L),                                                  // attention
        };
        first = l * 7 + seg;
        return count > 0;
    }

    bool LayOutPhases()
    {
        _team.BeginStep();
        for (int p = 0; p <= L * PhasesPerLayer; p++)
        {
            bool laidOut = GemvPhase(p, out int k, out _, out _, out long rows)
                ? _team.InitShares(p, (rows + ChunkRowsOf(k) - 1) / ChunkRowsOf(k))
                : _team.InitItems(p, _c.NumKeyValueHeads);
            if (!laidOut) return false;
        }
        return true;
    }

    static GemvSegment Seg(Linear l, float* output, float* bias)
    {
        var w = l.Weight.Data;
        return new GemvSegment { W = w.DataPtr, Ldw = w.Strides[0], Rows = l.OutFeatures, Bias = bias, Out = output };
    }

    /// <summary>A vector parameter [n] converted to fp32 (exact, as Ops.Contiguous(t, F32) converts it), without a tensor.</summary>
    static void ToF32(Tensor t, float* dst) =>
        MMSharp.Engine.Kernels.Convert.Row(t.DataPtr, t.DType, t.Strides[0], (byte*)dst, DType.F32, 1, t.Shape[0]);

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    void Member(int member, StepContext ctx)
    {
        float* buf = ctx.Buf, mine = buf + OffMember(member);
        float* h = mine, xn = mine + Up(C), act = xn + Up(C), qRot = act + Up(I);
        new ReadOnlySpan<float>(ctx.Embed, C).CopyTo(new Span<float>(h, C));    // the residual stream starts as the embedding row
        for (int l = 0; l < L; l++)
        {
            var layer = _lm.Model.Layers[l];
            int p = l * PhasesPerLayer;
            float* normW = buf + OffNormW + 2L * l * Up(C);
            if (l > 0) Add(h, buf + OffD(l - 1));                                // h = h + mlp (previous layer)
            Norm(h, normW, layer.InputLayernorm.Eps, xn);
            RunPhase(member, p, ctx, xn, qRot);                                  // q/k/v
            RunPhase(member, p + 1, ctx, xn, qRot);                              // attention
            RunPhase(member, p + 2, ctx, buf + OffAttn(l), qRot);                 // o_proj
            Add(h, buf + OffO(l));                                               // h = h + attn
            Norm(h, normW + Up(C), layer.PostAttentionLayernorm.Eps, xn);
            RunPhase(member, p + 3, ctx, xn, qRot);                              // gate/up
            var op = new Ops.SiluMulOp();
            float* gu = buf + OffGu(l);
            VectorLoop.ZipContiguous(ref op, gu, gu + I, act, I);
            RunPhase(member, p + 4, ctx, act, qRot);                             // down_proj
        }
        Add(h, buf + OffD(L - 1));
        Norm(h, buf + OffNormW + 2L * L * Up(C), _lm.Model.Norm.Eps, xn);
        RunPhase(member, L * PhasesPerLayer, ctx, xn, qRot);                    // LM head
    }

    /// <summary>Phase kind of phase <paramref name="p"/> as <see cref="PhaseSeconds"/> books it: 0-4 within a layer, 5 the head.</summary>
    int PhaseKind(int p) => p / PhasesPerLayer == L ? 5 : p % PhasesPerLayer;

    /// <summary>Phase <paramref name="p"/> (<see cref="RunChunks"/>), its time booked under its kind.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    void RunPhase(int member, int p, StepContext ctx, float* x, float* qRot)
    {
        RunChunks(member, p, ctx, x, qRot);
        Mark(member, PhaseKind(p));
    }

    /// <summary>Claims and runs chunks of phase <paramref name="p"/> until none is left, then waits for the others'
    /// chunks, running any still unfinished after <see cref="DecodeTeam.RescueAfterMicroseconds"/> itself.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    void RunChunks(int member, int p, StepContext ctx, float* x, float* qRot)
    {
        if (_members == 1) { RunWhole(p, ctx, x, qRot); return; }
        long c;
        while ((c = _team.Claim(p, member)) >= 0)
        {
            RunChunk(p, c, ctx, x, qRot);
            _team.Finish(p, c, member);
        }
        if (_prefetchNext > 0 && p < L * PhasesPerLayer) PrefetchShare(p + 1, member, ctx);
        if (_team.IsDone(p)) return;
        long t0 = System.Diagnostics.Stopwatch.GetTimestamp(), waitMark = ProfilePhases ? Now() : 0;
        long rescueAt = t0 + _rescueTicks;
        var spin = new SpinWait();
        while (!_team.IsDone(p))
        {
            if (System.Diagnostics.Stopwatch.GetTimestamp() < rescueAt) { spin.SpinOnce(-1); continue; }
            for (long u = _team.Unfinished(p, 0); u >= 0; u = _team.Unfinished(p, u + 1))
            {
                Interlocked.Increment(ref ChunksRescued);
                RunChunk(p, u, ctx, x, qRot);
                _team.Finish(p, u, member);
            }
        }
        if (ProfilePhases && member == 0)
            PhaseSeconds[7 + PhaseKind(p)] += (Now() - waitMark) / (double)System.Diagnostics.Stopwatch.Frequency;
    }

    /// <summary>Bytes of its share of the next GEMV phase a member prefetches once it has nothing left to claim in the
    /// current one (the next phase's streams then start warm instead of on a DRAM miss per page).</summary>
    internal static int PrefetchNextPhase = 16384;

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    void PrefetchShare(int p, int member, StepContext ctx)
    {
        if (!GemvPhase(p, out int k, out int first, out int count, out _)) return;
        long c = _team.ShareStart(p, member);
        if (c < 0) return;
        if (_bf16) GemvMulti.PrefetchChunk<BF16Elem>(k, ctx.Segs + first, count, c, ChunkRowsOf(k), _prefetchNext);
        else GemvMulti.PrefetchChunk<F32Elem>(k, ctx.Segs + first, count, c, ChunkRowsOf(k), _prefetchNext);
    }

    /// <summary>One thread: phase <paramref name="p"/> as one pass over its rows (or items), no claims, no flags.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    void RunWhole(int p, StepContext ctx, float* x, float* qRot)
    {
        if (GemvPhase(p, out int k, out int first, out int count, out long rows)) { Gemv(k, x, ctx.Segs + first, count, rows, (int)rows, 0); return; }
        for (int g = 0; g < _c.NumKeyValueHeads; g++) Attention(p / PhasesPerLayer, g, ctx, qRot);
    }

    /// <summary>Chunks run by a member that did not claim them (benchmarks and tests).</summary>
    internal static long ChunksRescued;

    /// <summary>Chunk <paramref name="c"/> of phase <paramref name="p"/>; x is the member's input of the phase's GEMV.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    void RunChunk(int p, long c, StepContext ctx, float* x, float* qRot)
    {
        if (GemvPhase(p, out int k, out int first, out int count, out long rows)) Gemv(k, x, ctx.Segs + first, count, rows, ChunkRowsOf(k), c);
        else Attention(p / PhasesPerLayer, (int)c, ctx, qRot);
    }

    /// <summary>Chunk <paramref name="c"/> (of <paramref name="chunkRows"/> rows) of a GEMV phase's rows.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    void Gemv(int k, float* x, GemvSegment* segs, int count, long rows, int chunkRows, long c)
    {
        if (_bf16) GemvMulti.Chunk<BF16Elem>(k, x, segs, count, c, chunkRows, rows, _ahead);
        else GemvMulti.Chunk<F32Elem>(k, x, segs, count, c, chunkRows, rows, _ahead);
    }

    /// <summary>h = h + y (<see cref="Ops.Add(Tensor, Tensor)"/>'s float operation; lanes add exactly as scalars).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    void Add(float* h, float* y)
    {
        int i = 0, n = C;
        if (Vector512.IsHardwareAccelerated)
            for (; i + 16 <= n; i += 16)
                (Vector512.Load(h + i) + Vector512.Load(y + i)).Store(h + i);
        for (; i < n; i++) h[i] = h[i] + y[i];
    }

    /// <summary>y = x · rsqrt(mean(x²) + eps) · w, the row computation of <see cref="Ops.RmsNorm"/>.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    void Norm(float* x, float* w, float eps, float* y)
    {
        int c = C;
        float ms = RowReduce.SumSquaredDiff(x, c, 0f) / c;
        float s = 1f / MathF.Sqrt(ms + eps);
        Ops.NormalizeRow(x, y, c, 0f, s, w, null);
    }

    /// <summary>kv head <paramref name="g"/> of layer <paramref name="l"/>: its rotated key and its value into the cache at the
    /// step's position, its query heads rotated (into the member's <paramref name="qRot"/>), and their attention output.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    void Attention(int l, int g, StepContext ctx, float* qRot)
    {
        float* qkv = ctx.Buf + OffQkv(l), attn = ctx.Buf + OffAttn(l), cos = ctx.Cos, sin = ctx.Sin;
        var cache = ctx.Cache;
        int P = ctx.P, rd = ctx.Rd;
        int hd = _c.HeadDim, nH = _c.NumAttentionHeads, nKV = _c.NumKeyValueHeads, G = nH / nKV;
        float scale = 1f / MathF.Sqrt(hd);
        var keys = cache.KeyBuffer(l);                                           // [1, nKV, Max, hd]
        var values = cache.ValueBuffer(l);
        long kH = keys.Strides[1], kT = keys.Strides[2], vH = values.Strides[1], vT = values.Strides[2];
        float* kHead = keys.F32Ptr + g * kH, vHead = values.F32Ptr + g * vH;
        Rope(qkv + (long)(nH + g) * hd, cos, sin, kHead + P * kT, hd, rd);
        new ReadOnlySpan<float>(qkv + (long)(nH + nKV + g) * hd, hd).CopyTo(new Span<float>(vHead + P * vT, hd));
        // the rotated queries go to the member's own buffer (a duplicate run of this chunk must not race on them)
        for (int i = 0; i < G; i++)
        {
            long qh = (long)g * G + i;
            Rope(qkv + qh * hd, cos, sin, qRot + qh * hd, hd, rd);
        }
        DecodeAttention.Forward(1, G, 1, 1, P + 1, hd, scale, causal: true, qRot + (long)g * G * hd,
            kHead, keys.Strides[0], kH, kT, vHead, values.Strides[0], vH, vT, attn + (long)g * G * hd);
    }

    /// <summary>One row of <see cref="Ops.ApplyRotary"/> (rotate_half layout, rd rotated dims of D).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    static void Rope(float* x, float* cos, float* sin, float* y, int D, int rd)
    {
        int h = rd / 2;
        Ops.RotaryCombine(x, cos, x + h, sin, -1f, y, h);
        Ops.RotaryCombine(x + h, cos + h, x, sin + h, 1f, y + h, h);
        if (rd < D) new ReadOnlySpan<float>(x + rd, D - rd).CopyTo(new Span<float>(y + rd, D - rd));
    }

    public void Dispose() => _team.Dispose();
}
