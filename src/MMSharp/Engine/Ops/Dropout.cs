using System.Runtime.Intrinsics;
using MMSharp.Engine.Kernels;

namespace MMSharp.Engine;

public static unsafe partial class Ops
{
    /// <summary>
    /// Inverted dropout: y = x · keep / (1 − p), keep ~ Bernoulli(1 − p) per element; identity when
    /// !<paramref name="training"/> or p == 0, zeros when p ≥ 1.
    /// </summary>
    /// <remarks>
    /// The mask comes from <paramref name="rng"/> (default <see cref="Rng.Default"/>), two elements per 64-bit draw
    /// (element 2m uses the low 32 bits of draw m, element 2m+1 the high 32, kept when bits ≥ p·2³²), drawn serially,
    /// so the same generator state gives the same mask (gradient checkpointing replays it by restoring the state).
    /// The mask is saved as U8 (one byte per element) for the backward g · keep / (1 − p).
    /// In eval mode or with p == 0 the result is a new object over the same memory.
    /// </remarks>
    public static Tensor Dropout(Tensor x, float p, bool training, Rng? rng = null)
    {
        if (p < 0 || p > 1 || float.IsNaN(p)) throw new ArgumentException($"Dropout: p = {p} is not in [0, 1] (input {x.Describe()})");
        if (!training || p == 0) return Contiguous(x);
        var mask = Tensor.Empty(x.Shape, DType.U8);
        FillKeepMask(mask.DataPtr, mask.NumEl, p, rng ?? Rng.Default);
        return ApplyKeepMask("dropout", x, mask, x.NumEl, 1, p >= 1 ? 0f : 1f / (1f - p));
    }

    /// <summary>
    /// Stochastic depth (timm drop_path): each sample along dim 0 is zeroed with probability p, kept samples are
    /// scaled by 1/(1 − p); identity when !<paramref name="training"/> or p == 0. One draw per sample, same rule as
    /// <see cref="Dropout"/>; the per-sample U8 mask [B] is saved for the backward.
    /// </summary>
    public static Tensor DropPath(Tensor x, float p, bool training, Rng? rng = null)
    {
        if (p < 0 || p > 1 || float.IsNaN(p)) throw new ArgumentException($"DropPath: p = {p} is not in [0, 1] (input {x.Describe()})");
        if (x.Rank == 0) throw new ArgumentException($"DropPath: {x.Describe()} has no sample dimension");
        if (!training || p == 0) return Contiguous(x);
        int B = x.Shape[0];
        var mask = Tensor.Empty([B], DType.U8);
        FillKeepMask(mask.DataPtr, B, p, rng ?? Rng.Default);
        // timm does not divide when keep_prob == 0: every sample is dropped, the result is zeros
        return ApplyKeepMask("drop_path", x, mask, B, B == 0 ? 1 : x.NumEl / B, p >= 1 ? 0f : 1f / (1f - p));
    }

    static void FillKeepMask(byte* m, long n, float p, Rng rng)
    {
        // keep when the 32-bit draw ≥ p·2^32 (probability 1 − p up to 2^-32)
        ulong threshold = (ulong)Math.Min((double)p * 4294967296.0, 4294967296.0);
        for (long i = 0; i < n; i += 2)
        {
            ulong r = rng.NextULong();
            m[i] = (r & 0xFFFFFFFFUL) >= threshold ? (byte)1 : (byte)0;
            if (i + 1 < n) m[i + 1] = (r >> 32) >= threshold ? (byte)1 : (byte)0;
        }
    }

    /// <summary>y = x · mask[i / group] · scale over groups of <paramref name="group"/> consecutive elements; records backward.</summary>
    static Tensor ApplyKeepMask(string name, Tensor x, Tensor mask, long groups, long group, float scale)
    {
        using var xc = ContiguousF32(x, name);
        var y = Tensor.Empty(x.Shape);
        MaskScale(xc.F32Ptr, mask.DataPtr, y.F32Ptr, groups, group, scale);
        if (Tensor.AnyRequiresGrad(x))
        {
            var sm = mask.SaveForBackward();
            var shape = x.Shape;
            y.WithGradFn(name, [x], [sm], g =>
            {
                var gx = Tensor.Empty(shape);
                MaskScale(g.F32Ptr, sm.DataPtr, gx.F32Ptr, groups, group, scale);
                return [gx];
            });
        }
        mask.Dispose();
        return y;
    }

    static void MaskScale(float* x, byte* mask, float* y, long groups, long group, float scale)
    {
        long total = groups * group;
        Par.ForChunks(total, 1 << 15, (s, e) =>
        {
            if (group > 1)
            {
                // per-sample mask: whole runs are either scaled or zero
                for (long gi = s / group; gi * group < e; gi++)
                {
                    long a = Math.Max(s, gi * group), b = Math.Min(e, (gi + 1) * group);
                    // multiply rather than clear, so NaN/inf stay NaN as in PyTorch (x · mask / (1 − p))
                    System.Numerics.Tensors.TensorPrimitives.Multiply(new ReadOnlySpan<float>(x + a, (int)(b - a)),
                        mask[gi] != 0 ? scale : 0f, new Span<float>(y + a, (int)(b - a)));
                }
                return;
            }
            long i = s;
            if (Vector512.IsHardwareAccelerated)
            {
                var sc = Vector512.Create(scale);
                for (; i + 16 <= e; i += 16)
                {
                    // 16 mask bytes -> 16 floats 0/1 (zero-extend twice)
                    var keep = Vector512.WidenLower(Vector512.WidenLower(Vector256.Create(Vector128.Load(mask + i), Vector128<byte>.Zero).ToVector512()));
                    (Vector512.Load(x + i) * (Vector512.ConvertToSingle(keep.AsInt32()) * sc)).Store(y + i);
                }
            }
            for (; i < e; i++) y[i] = x[i] * (mask[i] != 0 ? scale : 0f);
        });
    }
}
