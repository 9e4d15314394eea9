using System.Numerics.Tensors;
using MMSharp.Engine.Autograd;
using MMSharp.Engine.Kernels;

namespace MMSharp.Engine;

/// <summary>In-place updates for training code (optimizer steps, gradient accumulation, buffers). No autograd.</summary>
public static unsafe partial class Ops
{
    static void CheckWritable(Tensor dst, string op)
    {
        if (GradMode.Enabled && dst.RequiresGrad)
            throw new InvalidOperationException($"{op}: {dst.Describe()} requires grad; in-place writes would corrupt autograd (use GradMode.NoGrad())");
        if (dst.Storage.ReadOnly) throw new InvalidOperationException($"{op}: {dst.Describe()} is read-only (memory-mapped)");
    }

    struct AxpyRow(float* dst, float* src, float alpha) : IRowOp2
    {
        public void Row(long d_o, long so, int n, long di, long si)
        {
            float* d = dst + d_o, s = src + so;
            if (di == 1 && si == 1)
            {
                var ds = new Span<float>(d, n);
                if (alpha == 1f) TensorPrimitives.Add(ds, new ReadOnlySpan<float>(s, n), ds);
                else TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(s, n), alpha, ds, ds);
            }
            else if (di == 1 && si == 0)
            {
                var ds = new Span<float>(d, n);
                TensorPrimitives.Add(ds, alpha * s[0], ds);
            }
            else for (int i = 0; i < n; i++) d[i * di] += alpha * s[i * si];
        }
    }

    /// <summary>dst += alpha * src, with src broadcast to dst's shape. dst must be F32; src any float dtype.</summary>
    /// <remarks>Throws when dst requires grad while grad mode is on. Bumps dst's version.</remarks>
    public static void AddInPlace(Tensor dst, Tensor src, float alpha = 1f)
    {
        CheckWritable(dst, "AddInPlace");
        if (dst.DType != DType.F32) throw new ArgumentException($"AddInPlace: destination {dst.Describe()} must be F32");
        if (!src.DType.IsFloat()) throw new ArgumentException($"AddInPlace: source {src.Describe()} must be a float tensor");
        if (!Broadcasts(src.Shape, dst.Shape))
            throw new ArgumentException($"AddInPlace: source {src.Describe()} does not broadcast to destination {dst.Describe()}");
        using var s = Contiguous(src, DType.F32);
        float* dp = dst.F32Ptr, sp = s.F32Ptr;
        long n = dst.NumEl;
        if (dst.IsContiguous && s.NumEl == n)
        {
            int items = Rows.Items(n * 8, n / 4096);
            Par.For(items, c =>
            {
                long st = n * c / items, e = n * (c + 1) / items;
                var row = new AxpyRow(dp + st, sp + st, alpha);
                for (long p = 0; p < e - st; p += int.MaxValue / 2)
                    row.Row(p, p, (int)Math.Min(int.MaxValue / 2, e - st - p), 1, 1);
            });
        }
        else
        {
            var op = new AxpyRow(dp, sp, alpha);
            Strided.ForEachRow(dst.Shape, dst.Strides, BroadcastStrides(s, dst.Shape), ref op);
        }
        dst.BumpVersion();
    }

    struct FillRow(byte* dst, DType dt, double value) : IRowOp2
    {
        public void Row(long d_o, long unused, int n, long di, long ui)
        {
            if (di == 1 && dt == DType.F32) { new Span<float>((float*)dst + d_o, n).Fill((float)value); return; }
            for (int i = 0; i < n; i++) Tensor.WriteFromDouble(dst, dt, d_o + i * di, value);
        }
    }

    /// <summary>Sets every element of <paramref name="x"/> (any dtype, any strides) to <paramref name="value"/>.</summary>
    /// <remarks>Throws when x requires grad while grad mode is on. Bumps x's version.</remarks>
    public static void FillInPlace(Tensor x, double value)
    {
        CheckWritable(x, "FillInPlace");
        if (x.IsContiguous && x.DType == DType.F32)
        {
            long n = x.NumEl;
            float* p = x.F32Ptr;
            float v = (float)value;
            int items = Rows.Items(n * 4, n / 4096);
            Par.For(items, c =>
            {
                long s = n * c / items, e = n * (c + 1) / items;
                for (long q = s; q < e; q += int.MaxValue) new Span<float>(p + q, (int)Math.Min(int.MaxValue, e - q)).Fill(v);
            });
        }
        else
        {
            var op = new FillRow(x.Storage.Ptr + x.Offset * x.DType.SizeOf(), x.DType, value);
            Strided.ForEachRow(x.Shape, x.Strides, x.Strides, ref op);
        }
        x.BumpVersion();
    }

    /// <summary>Sets every element of <paramref name="x"/> to zero (all-zero bytes for every dtype).</summary>
    public static void ZeroInPlace(Tensor x)
    {
        CheckWritable(x, "ZeroInPlace");
        if (x.IsContiguous)
        {
            long bytes = x.NumEl * x.DType.SizeOf();
            byte* p = x.DataPtr;
            int items = Rows.Items(bytes, bytes / (1 << 16));
            Par.For(items, c =>
            {
                long s = bytes * c / items, e = bytes * (c + 1) / items;
                for (long q = s; q < e; q += int.MaxValue) new Span<byte>(p + q, (int)Math.Min(int.MaxValue, e - q)).Clear();
            });
            x.BumpVersion();
        }
        else FillInPlace(x, 0);
    }
}
