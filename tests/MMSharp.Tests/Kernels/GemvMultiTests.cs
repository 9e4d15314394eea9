using System.Runtime.InteropServices;
using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.Engine.Kernels;
using MMSharp.NN;

namespace MMSharp.Tests.Kernels;

/// <summary>
/// The fused decode GEMV (several weights sharing one input row in one parallel pass) and
/// <see cref="Linear.ForwardFused"/>: bit-identical to separate products, for odd sizes, with and without bias,
/// fp32 and bf16 weights, 1 and 2 threads; and it declines whenever the separate path must run.
/// </summary>
public sealed unsafe class GemvMultiTests
{
    static bool Avx512 => Gemm.ActivePath == Gemm.Path.Avx512;

    [Theory]
    [InlineData(16, false)]
    [InlineData(17, true)]
    [InlineData(33, false)]
    [InlineData(6 * 16 + 7, true)]
    [InlineData(896, true)]
    [InlineData(896, false)]
    [InlineData(64, true, 0)]
    [InlineData(64, true, 4)]
    public void Run_EqualsSeparateSmallMProducts_Exactly(int k, bool bf16, int itemsPerThread = 0)
    {
        if (!Avx512) return; // the kernel is the AVX-512 M = 1 path; Linear.ForwardFused declines without it
        // at k = 64 there are enough 64 KiB chunks for the stealing split to run on 2 threads
        int[] rows = k == 64 ? [1, 1500, 7, 1300] : [1, 7, 129, 13];
        int total = rows.Sum();
        long ldw = k + 5;                                      // padded rows catch a kernel that assumes ldw = k
        var rng = new Rng(11);
        float* x = Alloc<float>(k);
        float* wf = Alloc<float>(total * ldw);
        ushort* wh = Alloc<ushort>(total * ldw);
        float* bias = Alloc<float>(total);
        float* want = Alloc<float>(total), got = Alloc<float>(total);
        try
        {
            for (int i = 0; i < k; i++) x[i] = rng.NextFloat() * 2 - 1;
            for (long i = 0; i < total * ldw; i++) { wf[i] = rng.NextFloat() * 2 - 1; wh[i] = Half16.FloatToBF16(wf[i]); }
            for (int i = 0; i < total; i++) bias[i] = rng.NextFloat() * 2 - 1;
            int saved = Par.Threads, savedItems = GemvMulti.ItemsPerThread;
            GemvMulti.ItemsPerThread = itemsPerThread;
            var segs = stackalloc GemvSegment[rows.Length];
            try
            {
                foreach (int threads in new[] { 1, 2 })
                {
                    Par.Threads = threads;
                    int at = 0;
                    for (int s = 0; s < rows.Length; s++)
                    {
                        void* w = bf16 ? wh + at * ldw : wf + at * ldw;
                        bool withBias = s % 2 == 0;                   // mixed: some segments with, some without
                        // the reference: each output alone, as one-row dot product (the M = 1 kernel) plus the bias
                        for (int j = 0; j < rows[s]; j++)
                        {
                            float v = bf16 ? GemmSmallM.Row1<BF16Elem>(k, x, wh + (at + j) * ldw, 0) : GemmSmallM.Row1<F32Elem>(k, x, wf + (at + j) * ldw, 0);
                            want[at + j] = withBias ? v + bias[at + j] : v;
                        }
                        for (int j = 0; j < rows[s]; j++) got[at + j] = float.NaN;
                        segs[s] = new GemvSegment { W = w, Ldw = ldw, Rows = rows[s], Bias = withBias ? bias + at : null, Out = got + at };
                        at += rows[s];
                    }
                    if (bf16) GemvMulti.Run<BF16Elem>(k, x, segs, rows.Length);
                    else GemvMulti.Run<F32Elem>(k, x, segs, rows.Length);
                    for (int j = 0; j < total; j++)
                        Assert.True(BitConverter.SingleToInt32Bits(want[j]) == BitConverter.SingleToInt32Bits(got[j]),
                            $"threads {threads} row {j}: fused {got[j]} != separate {want[j]}");
                    // and the reference itself is the dot product (float64 check with fp32 tolerance)
                    for (int j = 0; j < total; j++)
                    {
                        double s = 0;
                        for (int p = 0; p < k; p++) s += (double)x[p] * (bf16 ? Half16.BF16ToFloat(wh[j * ldw + p]) : wf[j * ldw + p]);
                        int seg = 0; for (int acc = rows[0]; j >= acc; acc += rows[++seg]) { }
                        if (seg % 2 == 0) s += bias[j];
                        Assert.True(Math.Abs(s - got[j]) <= 1e-5 * (1 + Math.Abs(s)) * Math.Sqrt(k), $"row {j}: {got[j]} vs {s}");
                    }
                }
            }
            finally { Par.Threads = saved; GemvMulti.ItemsPerThread = savedItems; }
        }
        finally
        {
            NativeMemory.AlignedFree(x); NativeMemory.AlignedFree(wf); NativeMemory.AlignedFree(wh);
            NativeMemory.AlignedFree(bias); NativeMemory.AlignedFree(want); NativeMemory.AlignedFree(got);
        }
    }

    static T* Alloc<T>(long n) where T : unmanaged => (T*)NativeMemory.AlignedAlloc((nuint)(Math.Max(1, n) * sizeof(T)), 64);

    static Linear MakeLinear(int inF, int outF, bool bias, DType dtype, ulong seed)
    {
        var l = new Linear(inF, outF, bias, dtype);
        using var w = Tensor.RandN([outF, inF], seed);
        using var wd = Ops.To(w, dtype);
        l.Weight.Set(wd);
        if (bias)
        {
            using var b = Tensor.RandN([outF], seed + 100);
            using var bd = Ops.To(b, dtype);
            l.Bias!.Set(bd);
        }
        return l;
    }

    [Theory]
    [InlineData(DType.BF16, 1)]
    [InlineData(DType.BF16, 2)]
    [InlineData(DType.F32, 1)]
    [InlineData(DType.F32, 2)]
    public void ForwardFused_EqualsSeparateForwards_Exactly(DType dtype, int threads)
    {
        if (!Avx512) return;
        int saved = Par.Threads;
        try
        {
            Par.Threads = threads;
            using var q = MakeLinear(6 * 16 + 7, 131, true, dtype, 1);
            using var k = MakeLinear(6 * 16 + 7, 17, true, dtype, 2);
            using var v = MakeLinear(6 * 16 + 7, 1, false, dtype, 3);
            using var x = Tensor.RandN([1, 1, 6 * 16 + 7], 9);
            using var _ = GradMode.NoGrad();
            using var fused = Linear.ForwardFused(x, q, k, v);
            Assert.NotNull(fused);
            Assert.Equal([1, 1, 149], fused!.Shape);
            using var yq = q.Forward(x);
            using var yk = k.Forward(x);
            using var yv = v.Forward(x);
            var want = yq.ToFloatArray().Concat(yk.ToFloatArray()).Concat(yv.ToFloatArray()).ToArray();
            Assert.Equal(want, fused.ToFloatArray());
        }
        finally { Par.Threads = saved; }
    }

    [Fact]
    public void ForwardFused_Declines_WhenSeparatePathMustRun()
    {
        using var a = MakeLinear(32, 8, true, DType.BF16, 1);
        using var b = MakeLinear(32, 8, false, DType.BF16, 2);
        using var wide = MakeLinear(48, 8, false, DType.BF16, 3);
        using var f32 = MakeLinear(32, 8, false, DType.F32, 4);
        using var one = Tensor.RandN([1, 1, 32], 5);
        using var two = Tensor.RandN([1, 2, 32], 6);
        using (GradMode.NoGrad())
        {
            using (var y = Linear.ForwardFused(two, a, b)) Assert.Null(y);          // two rows: the GEMM path
            using (var y = Linear.ForwardFused(one, a, wide)) Assert.Null(y);       // input sizes differ
            using (var y = Linear.ForwardFused(one, a, f32)) Assert.Null(y);        // weight dtypes differ
            Linear.FusedInference = false;
            try { using var y = Linear.ForwardFused(one, a, b); Assert.Null(y); }    // switched off
            finally { Linear.FusedInference = true; }
        }
        // autograd on: the weights require grad, so the recorded separate path must run
        using (var y = Linear.ForwardFused(one, a, b)) Assert.Null(y);
    }

    [Fact]
    public void ForwardFused_Declines_WithLoraAdapter()
    {
        using var a = MakeLinear(32, 8, true, DType.BF16, 1);
        using var b = MakeLinear(32, 8, false, DType.BF16, 2);
        using var x = Tensor.RandN([1, 1, 32], 5);
        using var _ = GradMode.NoGrad();
        using (var y = Linear.ForwardFused(x, a, b)) Assert.Equal(Avx512, y != null);
        b.AttachLora(new LoraAdapter(32, 8, rank: 2, alpha: 4, dropout: 0, seed: 1));
        using (var y = Linear.ForwardFused(x, a, b)) Assert.Null(y);
    }
}
