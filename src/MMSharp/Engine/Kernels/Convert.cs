using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace MMSharp.Engine.Kernels;

/// <summary>Vectorised dtype conversion of contiguous runs.</summary>
public static unsafe class Convert
{
    /// <summary>bf16 -> fp32: zero-extend each word and shift it into the upper half.</summary>
    public static void BF16ToF32(ushort* src, float* dst, long n)
    {
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i + 16 <= n; i += 16)
            {
                var w = Vector256.Load(src + i);
                var (lo, hi) = Vector256.Widen(w);
                var v = Vector512.Create(lo, hi).AsUInt32() << 16;
                v.AsSingle().Store(dst + i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 8 <= n; i += 8)
            {
                var w = Vector128.Load(src + i);
                var (lo, hi) = Vector128.Widen(w);
                var v = Vector256.Create(lo, hi).AsUInt32() << 16;
                v.AsSingle().Store(dst + i);
            }
        }
        for (; i < n; i++) dst[i] = Half16.BF16ToFloat(src[i]);
    }

    /// <summary>fp32 -> bf16, round to nearest even, NaN kept as a quiet NaN.</summary>
    public static void F32ToBF16(float* src, ushort* dst, long n)
    {
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var one = Vector512.Create(1u);
            var bias = Vector512.Create(0x7FFFu);
            var absMask = Vector512.Create(0x7FFFFFFFu);
            var inf = Vector512.Create(0x7F800000u);
            var quiet = Vector512.Create(0x00400000u);
            for (; i + 16 <= n; i += 16)
            {
                var u = Vector512.Load((uint*)(src + i));
                var isNan = Vector512.GreaterThan(u & absMask, inf);
                var rounded = u + bias + ((u >> 16) & one);
                var r = Vector512.ConditionalSelect(isNan, u | quiet, rounded) >> 16;
                var narrow = Vector256.Narrow(r.GetLower(), r.GetUpper());
                narrow.Store(dst + i);
            }
        }
        for (; i < n; i++) dst[i] = Half16.FloatToBF16(src[i]);
    }

    public static void F16ToF32(ushort* src, float* dst, long n)
    {
        for (long i = 0; i < n; i++) dst[i] = Half16.F16ToFloat(src[i]);
    }

    public static void F32ToF16(float* src, ushort* dst, long n)
    {
        for (long i = 0; i < n; i++) dst[i] = Half16.FloatToF16(src[i]);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static float Read(byte* b, DType dt, long off) => Tensor.ReadAsFloat(b, dt, off);

    /// <summary>Copies a strided run of <paramref name="n"/> elements, converting dtype.</summary>
    public static void Row(byte* src, DType sdt, long srcStride, byte* dst, DType ddt, long dstStride, int n)
    {
        if (srcStride == 1 && dstStride == 1)
        {
            if (sdt == ddt) { Buffer.MemoryCopy(src, dst, (long)n * sdt.SizeOf(), (long)n * sdt.SizeOf()); return; }
            if (sdt == DType.BF16 && ddt == DType.F32) { BF16ToF32((ushort*)src, (float*)dst, n); return; }
            if (sdt == DType.F32 && ddt == DType.BF16) { F32ToBF16((float*)src, (ushort*)dst, n); return; }
            if (sdt == DType.F16 && ddt == DType.F32) { F16ToF32((ushort*)src, (float*)dst, n); return; }
            if (sdt == DType.F32 && ddt == DType.F16) { F32ToF16((float*)src, (ushort*)dst, n); return; }
        }
        if (sdt == ddt && sdt == DType.F32)
        {
            float* s = (float*)src, d = (float*)dst;
            for (int i = 0; i < n; i++) d[i * dstStride] = s[i * srcStride];
            return;
        }
        if (sdt == ddt)
        {
            int size = sdt.SizeOf();
            for (int i = 0; i < n; i++)
                Buffer.MemoryCopy(src + i * srcStride * size, dst + i * dstStride * size, size, size);
            return;
        }
        bool intToInt = !sdt.IsFloat() && !ddt.IsFloat();
        for (int i = 0; i < n; i++)
        {
            if (intToInt)
            {
                long v = sdt switch
                {
                    DType.I64 => ((long*)src)[i * srcStride],
                    DType.I32 => ((int*)src)[i * srcStride],
                    _ => src[i * srcStride],
                };
                Tensor.WriteFromDouble(dst, ddt, i * dstStride, v);
            }
            else Tensor.WriteFromDouble(dst, ddt, i * dstStride, Read(src, sdt, i * srcStride));
        }
    }
}
