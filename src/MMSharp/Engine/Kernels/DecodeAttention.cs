using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace MMSharp.Engine.Kernels;

/// <summary>
/// Attention for a few queries against a long key/value cache (decoding), reading K and V in place through their
/// strides (a cache [B, Hkv, Max, D] narrowed to the current length is not copied, transposed or padded, which the
/// tiled <see cref="FlashAttention"/> path needs and which would cost more than the attention itself at Tq = 1).
/// One work item per (batch, kv head) serves all Hq / Hkv query heads of that kv head and all Tq queries, so each
/// key and value row is read from memory once. Two passes over the keys: exact scores s = scale·q·k into a scratch
/// row per query, softmax, then o = Σ_j p_j v_j. Summation order is fixed, so results do not depend on threads.
/// Shapes: q [B, Hq, Tq, D] contiguous; k, v [B, Hkv, Tk, D] with unit stride along D; o [B, Hq, Tq, D] contiguous.
/// </summary>
internal static unsafe class DecodeAttention
{
    /// <summary>Largest Tq served by this path (beyond that the tiled kernel's q-reuse wins).</summary>
    public const int MaxQueries = 8;

    /// <summary>Off: every call takes the tiled path (the decode benchmark flips it by reflection to compare both).</summary>
    internal static bool Enabled = true;

    public static void Forward(int B, int Hq, int Hkv, int Tq, int Tk, int D, float scale, bool causal,
        float* q, float* k, long kB, long kH, long kT, float* v, long vB, long vH, long vT, float* o)
    {
        int G = Hq / Hkv, rows = G * Tq;
        nint qp = (nint)q, kp = (nint)k, vp = (nint)v, op = (nint)o;
        void Item(int item)
        {
            int b = item / Hkv, kvh = item % Hkv;
            float* kh = (float*)kp + b * kB + kvh * kH, vh = (float*)vp + b * vB + kvh * vH;
            // the G query heads of this kv head are consecutive, so their Tq rows are one block of q and o
            long rowBase = ((long)b * Hq + (long)kvh * G) * Tq;
            float* qRows = (float*)qp + rowBase * D, oRows = (float*)op + rowBase * D;
            float* S = ThreadScratch.Floats((long)rows * Tk + (long)rows * D + 2L * rows);
            float* acc = S + (long)rows * Tk, inv = acc + (long)rows * D;
            int* end = (int*)(inv + rows);
            int jMax = 0;
            for (int r = 0; r < rows; r++)
            {
                int i = r % Tq;
                end[r] = causal ? Math.Clamp(i + Tk - Tq + 1, 0, Tk) : Tk;
                jMax = Math.Max(jMax, end[r]);
            }

            // pass 1: scores, one key row against all query rows
            for (int j = 0; j < jMax; j++)
            {
                float* kj = kh + j * kT;
                for (int r = 0; r < rows; r++)
                    S[(long)r * Tk + j] = scale * Dot(qRows + (long)r * D, kj, D);
            }
            for (int r = 0; r < rows; r++)
            {
                float* s = S + (long)r * Tk;
                int n = end[r];
                if (n == 0) { inv[r] = 0f; continue; }
                float m = SoftmaxRow.Max(s, n);
                inv[r] = 1f / SoftmaxRow.ExpShiftSum(s, n, m);
            }

            // pass 2: o = Σ_j p_j v_j, one value row into all query rows
            new Span<float>(acc, rows * D).Clear();
            for (int j = 0; j < jMax; j++)
                AddScaledRow(acc, S + j, Tk, end, j, rows, vh + j * vT, D);
            for (int r = 0; r < rows; r++)
                TensorPrimitives.Multiply(new ReadOnlySpan<float>(acc + (long)r * D, D), inv[r], new Span<float>(oRows + (long)r * D, D));
        }

        // threads only for long caches: at Tk ~ 300 a layer's attention is ~50 µs, less than what a fork/join
        // costs once the cores are shared
        int items = B * Hkv;
        if (items > 1 && (long)rows * Tk * D >= 1 << 20) Par.For(items, Item);
        else for (int t = 0; t < items; t++) Item(t);
    }

    static float Dot(float* a, float* b, int n)
    {
        if (Vector512.IsHardwareAccelerated && (n & 15) == 0)
        {
            var s = Vector512<float>.Zero;
            for (int d = 0; d < n; d += 16) s = Vector512.FusedMultiplyAdd(Vector512.Load(a + d), Vector512.Load(b + d), s);
            return Vector512.Sum(s);
        }
        return TensorPrimitives.Dot(new ReadOnlySpan<float>(a, n), new ReadOnlySpan<float>(b, n));
    }

    /// <summary>acc[r] += p[r·ldp] · vj for every row r whose key range includes j.</summary>
    static void AddScaledRow(float* acc, float* p, int ldp, int* end, int j, int rows, float* vj, int D)
    {
        if (Vector512.IsHardwareAccelerated && (D & 15) == 0)
        {
            for (int d = 0; d < D; d += 16)
            {
                var vv = Vector512.Load(vj + d);
                for (int r = 0; r < rows; r++)
                {
                    if (j >= end[r]) continue;
                    float* a = acc + (long)r * D + d;
                    Vector512.FusedMultiplyAdd(Vector512.Create(p[(long)r * ldp]), vv, Vector512.Load(a)).Store(a);
                }
            }
            return;
        }
        for (int r = 0; r < rows; r++)
        {
            if (j >= end[r]) continue;
            var a = new Span<float>(acc + (long)r * D, D);
            TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(vj, D), p[(long)r * ldp], a, a);
        }
    }
}
