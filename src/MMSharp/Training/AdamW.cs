using System.Globalization;
using System.Runtime.Intrinsics;
using System.Text.RegularExpressions;
using MMSharp.Engine;
using MMSharp.Engine.IO;
using MMSharp.Engine.Kernels;
using MMSharp.NN;

namespace MMSharp.Training;

/// <summary>Hyper-parameters of <see cref="AdamW"/> (defaults of <c>torch.optim.AdamW</c> except the weight decay, which HF Trainer defaults to 0).</summary>
public sealed record AdamWOptions
{
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.999;
    public double Eps { get; init; } = 1e-8;
    public double WeightDecay { get; init; } = 0.0;

    /// <summary>
    /// Globs (as <see cref="Module.Freeze(string)"/>) of parameter names that get no weight decay, in addition to every
    /// parameter of rank &lt;= 1 (norm weights, biases) — the HF Trainer rule <c>"bias" / "LayerNorm.weight"</c> generalised.
    /// </summary>
    public IReadOnlyList<string> NoDecayPatterns { get; init; } = [];
}

/// <summary>
/// AdamW with decoupled weight decay, step for step the arithmetic of <c>torch.optim.AdamW</c> (single-tensor path,
/// no amsgrad), on fp32 master weights with fp32 state. For each trainable parameter p with gradient g, at step t:
/// <code>
/// p  = p * (1 - lr*wd)                       (wd = 0 for 1-D parameters and names matching NoDecayPatterns)
/// m  = fma(g, 1-β1, m*β1)                    (torch 1.13: exp_avg.mul_(β1).add_(g, alpha=1-β1))
/// v  = fma((1-β2)*g, g, v*β2)                (exp_avg_sq.mul_(β2).addcmul_(g, g, value=1-β2))
/// p  = p + (-(lr / (1-β1^t)) * m) / (sqrt(v) / sqrt(1-β2^t) + eps)   (param.addcdiv_(m, denom, value=-step_size))
/// </code>
/// The scalar factors are computed in double and rounded to float once, as PyTorch does with Python scalars.
/// Checked bit for bit against torch 1.13's AdamW (fixture <c>tests/fixtures/training/adamw_torch.json</c>); torch ≥ 2.0
/// writes the first moment as <c>lerp_</c>, which can differ in the last bit.
/// The update is elementwise, so the vectorised parallel kernel is bit-identical for any thread count.
/// </summary>
public sealed unsafe class AdamW
{
    /// <summary>One optimised parameter with its fp32 state.</summary>
    public sealed class Slot
    {
        public required string Name { get; init; }
        public required Parameter Parameter { get; init; }
        public required bool Decay { get; init; }
        public required Tensor ExpAvg { get; init; }
        public required Tensor ExpAvgSq { get; init; }
    }

    readonly List<Slot> _slots = new();

    public AdamWOptions Options { get; }

    /// <summary>Number of updates applied so far (torch's per-parameter <c>state["step"]</c>, shared here).</summary>
    public long StepCount { get; private set; }

    public IReadOnlyList<Slot> Slots => _slots;

    /// <summary>
    /// Optimises the given named parameters (use <c>model.NamedParameters().Where(p => p.Parameter.RequiresGrad)</c>).
    /// Every parameter must hold writable contiguous F32 data: call <see cref="Module.PrepareTrainableParameters"/> first.
    /// </summary>
    public AdamW(IEnumerable<(string Name, Parameter Parameter)> parameters, AdamWOptions? options = null)
    {
        Options = options ?? new AdamWOptions();
        var noDecay = Options.NoDecayPatterns.Select(NamePattern.Glob).ToList();
        foreach (var (name, p) in parameters)
        {
            var d = p.Data;
            if (d.DType != DType.F32 || !d.IsContiguous || d.Storage.ReadOnly)
                throw new ArgumentException($"AdamW: parameter '{name}' is {d.Describe()}{(d.Storage.ReadOnly ? " (read-only)" : "")}; " +
                                            "trainable parameters need writable contiguous F32 master weights (call Module.PrepareTrainableParameters())");
            if (_slots.Any(s => s.Name == name)) throw new ArgumentException($"AdamW: parameter '{name}' given twice");
            bool decay = d.Rank >= 2 && !noDecay.Any(r => r.IsMatch(name));
            _slots.Add(new Slot
            {
                Name = name, Parameter = p, Decay = decay,
                ExpAvg = Persistent(() => Tensor.Zeros(d.Shape)),
                ExpAvgSq = Persistent(() => Tensor.Zeros(d.Shape)),
            });
        }
    }

    static Tensor Persistent(Func<Tensor> make)
    {
        using (TensorScope.Suspend()) return make();
    }

    /// <summary>
    /// Applies one update with learning rate <paramref name="lr"/> to every parameter that has a gradient
    /// (parameters without one are skipped, as in torch, but the shared step counter still advances).
    /// </summary>
    public void Step(double lr)
    {
        StepCount++;
        double b1 = Options.Beta1, b2 = Options.Beta2;
        double bc1 = 1 - Math.Pow(b1, StepCount);
        double bc2Sqrt = Math.Sqrt(1 - Math.Pow(b2, StepCount));
        foreach (var s in _slots)
        {
            var g = s.Parameter.Grad;
            if (g == null) continue;
            if (g.DType != DType.F32 || !g.IsContiguous || g.NumEl != s.ExpAvg.NumEl)
                throw new InvalidOperationException($"AdamW: gradient of '{s.Name}' is {g.Describe()}; expected contiguous F32 of shape {Tensor.ShapeString(s.ExpAvg.Shape)}");
            var k = new Kernel
            {
                P = s.Parameter.Data.F32Ptr, G = g.F32Ptr, M = s.ExpAvg.F32Ptr, V = s.ExpAvgSq.F32Ptr,
                Decay = (float)(1 - lr * (s.Decay ? Options.WeightDecay : 0)),
                B1 = (float)b1, OneMinusB1 = (float)(1 - b1), B2 = (float)b2, OneMinusB2 = (float)(1 - b2),
                StepSize = (float)(lr / bc1), Bc2Sqrt = (float)bc2Sqrt, Eps = (float)Options.Eps,
            };
            long n = g.NumEl;
            Par.ForChunks(n, 1 << 15, (st, e) => k.Run(st, e));
            s.Parameter.Data.BumpVersion();
        }
    }

    /// <summary>
    /// The fused per-element update; each element is independent, so chunking never changes results. The rounding
    /// follows PyTorch 1.13's CPU kernels as built (fmadd in <c>add_(alpha)</c>, contracted <c>addcmul_</c>,
    /// <c>addcdiv_</c> as (value·t1)/t2), which makes it bit-identical to <c>torch.optim.AdamW</c> there.
    /// </summary>
    struct Kernel
    {
        public float* P, G, M, V;
        public float Decay, B1, OneMinusB1, B2, OneMinusB2, StepSize, Bc2Sqrt, Eps;

        public readonly void Run(long start, long end)
        {
            long i = start;
            if (Vector512.IsHardwareAccelerated)
            {
                var decay = Vector512.Create(Decay); var omb1 = Vector512.Create(OneMinusB1); var b1 = Vector512.Create(B1); var negStep = Vector512.Create(-StepSize);
                var b2 = Vector512.Create(B2); var omb2 = Vector512.Create(OneMinusB2);
                var bc2 = Vector512.Create(Bc2Sqrt); var eps = Vector512.Create(Eps);
                for (; i + 16 <= end; i += 16)
                {
                    var p = Vector512.Load(P + i) * decay;
                    var g = Vector512.Load(G + i);
                    var m = Vector512.FusedMultiplyAdd(g, omb1, Vector512.Load(M + i) * b1);
                    var v = Vector512.FusedMultiplyAdd(omb2 * g, g, Vector512.Load(V + i) * b2);
                    var denom = Vector512.Sqrt(v) / bc2 + eps;
                    p += negStep * m / denom;
                    m.Store(M + i); v.Store(V + i); p.Store(P + i);
                }
            }
            else if (Vector256.IsHardwareAccelerated)
            {
                var decay = Vector256.Create(Decay); var omb1 = Vector256.Create(OneMinusB1); var b1 = Vector256.Create(B1); var negStep = Vector256.Create(-StepSize);
                var b2 = Vector256.Create(B2); var omb2 = Vector256.Create(OneMinusB2);
                var bc2 = Vector256.Create(Bc2Sqrt); var eps = Vector256.Create(Eps);
                for (; i + 8 <= end; i += 8)
                {
                    var p = Vector256.Load(P + i) * decay;
                    var g = Vector256.Load(G + i);
                    var m = Vector256.FusedMultiplyAdd(g, omb1, Vector256.Load(M + i) * b1);
                    var v = Vector256.FusedMultiplyAdd(omb2 * g, g, Vector256.Load(V + i) * b2);
                    var denom = Vector256.Sqrt(v) / bc2 + eps;
                    p += negStep * m / denom;
                    m.Store(M + i); v.Store(V + i); p.Store(P + i);
                }
            }
            for (; i < end; i++)
            {
                // same operation order as the vector body, so the tail rounds identically
                float p = P[i] * Decay, g = G[i];
                float m = MathF.FusedMultiplyAdd(g, OneMinusB1, M[i] * B1);
                float v = MathF.FusedMultiplyAdd(OneMinusB2 * g, g, V[i] * B2);
                float denom = MathF.Sqrt(v) / Bc2Sqrt + Eps;
                p += -StepSize * m / denom;
                M[i] = m; V[i] = v; P[i] = p;
            }
        }
    }

    // ---------------------------------------------------------------- state dict

    /// <summary>
    /// Saves <c>exp_avg.&lt;name&gt;</c> and <c>exp_avg_sq.&lt;name&gt;</c> (F32) with the step count and the
    /// hyper-parameters in the safetensors metadata.
    /// </summary>
    public void Save(string path)
    {
        var tensors = new List<KeyValuePair<string, Tensor>>();
        foreach (var s in _slots)
        {
            tensors.Add(new("exp_avg." + s.Name, s.ExpAvg));
            tensors.Add(new("exp_avg_sq." + s.Name, s.ExpAvgSq));
        }
        var meta = new Dictionary<string, string>
        {
            ["format"] = "mmsharp.adamw",
            ["step"] = StepCount.ToString(CultureInfo.InvariantCulture),
            ["beta1"] = Options.Beta1.ToString("R", CultureInfo.InvariantCulture),
            ["beta2"] = Options.Beta2.ToString("R", CultureInfo.InvariantCulture),
            ["eps"] = Options.Eps.ToString("R", CultureInfo.InvariantCulture),
            ["weight_decay"] = Options.WeightDecay.ToString("R", CultureInfo.InvariantCulture),
        };
        SafeTensorsWriter.Write(path, tensors, meta);
    }

    /// <summary>
    /// Restores the state written by <see cref="Save"/>. Every optimised parameter must have both moments in the file with
    /// its shape; one error lists all missing, unexpected and misshapen entries, and nothing changes when it is thrown.
    /// </summary>
    public void Load(string path)
    {
        using var r = CheckpointReader.Open(path);
        if (!r.Metadata.TryGetValue("step", out var stepText) || !long.TryParse(stepText, CultureInfo.InvariantCulture, out long step))
            throw new InvalidDataException($"AdamW: {path} has no 'step' in its metadata; not an optimizer state file");
        var problems = new List<string>();
        var expected = new HashSet<string>(StringComparer.Ordinal);
        foreach (var s in _slots)
            foreach (var (key, t) in new[] { ("exp_avg." + s.Name, s.ExpAvg), ("exp_avg_sq." + s.Name, s.ExpAvgSq) })
            {
                expected.Add(key);
                if (!r.Has(key)) { problems.Add($"missing '{key}'"); continue; }
                var info = r.Info(key);
                if (!info.Shape.AsSpan().SequenceEqual(t.Shape) || info.DTypeName != "F32")
                    problems.Add($"'{key}' is {info.DTypeName}{Tensor.ShapeString(info.Shape)}, expected F32{Tensor.ShapeString(t.Shape)}");
            }
        foreach (var name in r.Names) if (!expected.Contains(name)) problems.Add($"unexpected '{name}'");
        if (problems.Count > 0)
            throw new InvalidDataException($"AdamW: optimizer state {path} does not match the optimised parameters: {string.Join("; ", problems)}");
        foreach (var s in _slots)
        {
            using (var m = r.Get("exp_avg." + s.Name)) m.AsReadOnlySpanF32().CopyTo(s.ExpAvg.AsSpan());
            using (var v = r.Get("exp_avg_sq." + s.Name)) v.AsReadOnlySpanF32().CopyTo(s.ExpAvgSq.AsSpan());
        }
        StepCount = step;
    }

    /// <summary>Zeroes both moments and the step counter (a fresh optimizer, e.g. <c>--no-load-optim</c>).</summary>
    public void Reset()
    {
        foreach (var s in _slots) { s.ExpAvg.AsSpan().Clear(); s.ExpAvgSq.AsSpan().Clear(); }
        StepCount = 0;
    }
}

static unsafe class ReadOnlyTensorSpan
{
    /// <summary>The data of a contiguous F32 tensor, read-only storages included.</summary>
    public static ReadOnlySpan<float> AsReadOnlySpanF32(this Tensor t)
    {
        if (!t.IsContiguous) throw new InvalidOperationException($"{t.Describe()} is not contiguous");
        return new ReadOnlySpan<float>(t.F32Ptr, checked((int)t.NumEl));
    }
}
