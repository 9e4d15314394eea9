using System.Numerics.Tensors;
using MMSharp.Engine.Kernels;

namespace MMSharp.Engine;

/// <summary>Resampling kernel of <see cref="Ops.Interpolate"/>.</summary>
public enum InterpolateMode { Bilinear, Bicubic }

public static unsafe partial class Ops
{
    /// <summary>
    /// Resizes the last two dims of x [..., H, W] to [outH, outW] exactly as torch.nn.functional.interpolate
    /// (no antialias; used to resize ViT position embeddings). Result F32.
    /// </summary>
    /// <remarks>
    /// Per axis, in float32 as PyTorch: scale = in/out (align_corners: (in−1)/(out−1), 0 when out == 1),
    /// src = scale·(dst + 0.5) − 0.5 (align_corners: scale·dst); bilinear clamps src &lt; 0 to 0.
    /// i = min(floor(src), in−1), t = clamp(src − i, 0, 1).
    /// Bilinear: taps i, i + (i &lt; in−1 ? 1 : 0) with weights 1−t, t.
    /// Bicubic (Keys, A = −0.75): taps i−1 … i+2 clamped to [0, in−1], weights
    /// w0 = c2(t+1), w1 = c1(t), w2 = c1(1−t), w3 = c2(2−t) with c1(x) = ((A+2)x − (A+3))x² + 1,
    /// c2(x) = ((Ax − 5A)x + 8A)x − 4A. Applied separably, horizontal pass first (PyTorch's order).
    /// Backward is the adjoint (scatter-add of the same weights).
    /// </remarks>
    public static Tensor Interpolate(Tensor x, int outH, int outW, InterpolateMode mode = InterpolateMode.Bilinear, bool alignCorners = false)
    {
        if (x.Rank < 2 || outH <= 0 || outW <= 0)
            throw new ArgumentException($"Interpolate: need x [..., H, W] and positive output size, got {x.Describe()} -> {outH}x{outW}");
        int H = x.Shape[^2], W = x.Shape[^1];
        var ty = ResampleTaps.Build(H, outH, mode, alignCorners);
        var tx = ResampleTaps.Build(W, outW, mode, alignCorners);
        int[] outShape = [.. x.Shape[..^2], outH, outW];
        long planes = x.NumEl / Math.Max(1L, (long)H * W);
        using var xc = ContiguousF32(x, "Interpolate");
        var y = Tensor.Empty(outShape);
        float* xs = xc.F32Ptr, ys = y.F32Ptr;
        Par.ForChunks(planes, 1, (s, e) =>
        {
            float* tmp = ThreadScratch.Floats((long)H * outW);
            for (long pl = s; pl < e; pl++)
            {
                float* src = xs + pl * H * W, dst = ys + pl * outH * outW;
                for (int r = 0; r < H; r++) tx.Gather(src + (long)r * W, tmp + (long)r * outW);
                for (int oy = 0; oy < outH; oy++)
                {
                    var row = new Span<float>(dst + (long)oy * outW, outW);
                    row.Clear();
                    for (int t = 0; t < ty.Taps; t++)
                        TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(tmp + (long)ty.Index(oy, t) * outW, outW), ty.Weight(oy, t), row, row);
                }
            }
        });
        if (Tensor.AnyRequiresGrad(x))
        {
            var inShape = x.Shape;
            y.WithGradFn("interpolate", [x], [], g =>
            {
                var gx = Tensor.Empty(inShape);
                float* gs = g.F32Ptr, gd = gx.F32Ptr;
                Par.ForChunks(planes, 1, (s, e) =>
                {
                    float* tmp = ThreadScratch.Floats((long)H * outW);
                    for (long pl = s; pl < e; pl++)
                    {
                        float* go = gs + pl * outH * outW, gi = gd + pl * H * W;
                        new Span<float>(tmp, H * outW).Clear();
                        for (int oy = 0; oy < outH; oy++)
                            for (int t = 0; t < ty.Taps; t++)
                            {
                                var dstRow = new Span<float>(tmp + (long)ty.Index(oy, t) * outW, outW);
                                TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(go + (long)oy * outW, outW), ty.Weight(oy, t), dstRow, dstRow);
                            }
                        for (int r = 0; r < H; r++) tx.Scatter(tmp + (long)r * outW, gi + (long)r * W);
                    }
                });
                return [gx];
            });
        }
        return y;
    }

    /// <summary>Source indices and weights of one resampled axis (Taps per output position).</summary>
    sealed class ResampleTaps
    {
        public int Taps;
        int _in, _out;
        int[] _idx = [];
        float[] _w = [];

        public int Index(int o, int t) => _idx[o * Taps + t];
        public float Weight(int o, int t) => _w[o * Taps + t];

        public static ResampleTaps Build(int inSize, int outSize, InterpolateMode mode, bool alignCorners)
        {
            bool cubic = mode == InterpolateMode.Bicubic;
            var r = new ResampleTaps { Taps = cubic ? 4 : 2, _in = inSize, _out = outSize };
            r._idx = new int[outSize * r.Taps];
            r._w = new float[outSize * r.Taps];
            float scale = alignCorners ? (outSize > 1 ? (float)(inSize - 1) / (outSize - 1) : 0f) : (float)inSize / outSize;
            for (int o = 0; o < outSize; o++)
            {
                float src = alignCorners ? scale * o : scale * (o + 0.5f) - 0.5f;
                if (!cubic && !alignCorners && src < 0) src = 0;
                int i = Math.Min((int)MathF.Floor(src), inSize - 1);
                float t = Math.Clamp(src - i, 0f, 1f);
                int b = o * r.Taps;
                if (!cubic)
                {
                    r._idx[b] = i; r._idx[b + 1] = i + (i < inSize - 1 ? 1 : 0);
                    r._w[b] = 1f - t; r._w[b + 1] = t;
                }
                else
                {
                    const float A = -0.75f;
                    static float C1(float x) => ((A + 2) * x - (A + 3)) * x * x + 1;
                    static float C2(float x) => ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
                    r._w[b] = C2(t + 1); r._w[b + 1] = C1(t); r._w[b + 2] = C1(1 - t); r._w[b + 3] = C2(2 - t);
                    for (int k = 0; k < 4; k++) r._idx[b + k] = Math.Clamp(i - 1 + k, 0, inSize - 1);
                }
            }
            return r;
        }

        /// <summary>dst[o] = Σ_t w(o, t) · src[idx(o, t)].</summary>
        public void Gather(float* src, float* dst)
        {
            for (int o = 0; o < _out; o++)
            {
                float acc = 0;
                for (int t = 0; t < Taps; t++) acc += _w[o * Taps + t] * src[_idx[o * Taps + t]];
                dst[o] = acc;
            }
        }

        /// <summary>The adjoint of <see cref="Gather"/>: dst[i] = Σ over (o, t) with idx(o, t) = i of w(o, t) · src[o].</summary>
        public void Scatter(float* src, float* dst)
        {
            new Span<float>(dst, _in).Clear();
            for (int o = 0; o < _out; o++)
                for (int t = 0; t < Taps; t++) dst[_idx[o * Taps + t]] += _w[o * Taps + t] * src[o];
        }
    }
}
