using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace MMSharp.Engine.Kernels;

/// <summary>A pointwise fp32 function with scalar and SIMD forms that agree (up to rounding).</summary>
public interface IUnaryOp
{
    float Invoke(float x);
    Vector256<float> Invoke(Vector256<float> x);
    Vector512<float> Invoke(Vector512<float> x);
}

/// <summary>A pointwise fp32 function of two operands.</summary>
public interface IBinaryOp
{
    float Invoke(float a, float b);
    Vector256<float> Invoke(Vector256<float> a, Vector256<float> b);
    Vector512<float> Invoke(Vector512<float> a, Vector512<float> b);
}

/// <summary>
/// The one vector loop driver of the pointwise ops (after dotnet/runtime TensorPrimitives'
/// IUnaryOperator/IBinaryOperator): operator structs say what to compute per lane, these loops say
/// how to walk memory. Tails and strided runs are staged through a small stack buffer and computed
/// with the same SIMD code as the body, so an element's value never depends on where it falls
/// relative to a chunk or row boundary (results are identical for every thread count and layout).
/// Widest available vectors: Vector512, else Vector256, else scalar.
/// </summary>
[SkipLocalsInit] // stack buffers for tails are always written before they are read
public static unsafe class VectorLoop
{
    const int Block = 64; // elements staged at a time for strided runs (a multiple of every vector width)

    /// <summary>y[i] = op(x[i * xs]) for i in [0, n); y is contiguous.</summary>
    public static void Map<T>(ref T op, float* x, long xs, float* y, long n) where T : struct, IUnaryOp
    {
        if (xs == 1) { MapContiguous(ref op, x, y, n); return; }
        float* buf = stackalloc float[Block];
        for (long i = 0; i < n; i += Block)
        {
            int m = (int)Math.Min(Block, n - i);
            float* src = x + i * xs;
            for (int j = 0; j < m; j++) buf[j] = src[j * xs];
            MapContiguous(ref op, buf, y + i, m);
        }
    }

    /// <summary>y[i] = op(a[i * sa], b[i * sb]) for i in [0, n); y is contiguous.</summary>
    public static void Zip<T>(ref T op, float* a, long sa, float* b, long sb, float* y, long n) where T : struct, IBinaryOp
    {
        if (sa == 1 && sb == 1) { ZipContiguous(ref op, a, b, y, n); return; }
        if (sa == 1 && sb == 0) { ZipScalarRight(ref op, a, *b, y, n); return; }
        float* ba = stackalloc float[Block];
        float* bb = stackalloc float[Block];
        for (long i = 0; i < n; i += Block)
        {
            int m = (int)Math.Min(Block, n - i);
            float* pa = a + i * sa, pb = b + i * sb;
            for (int j = 0; j < m; j++) { ba[j] = pa[j * sa]; bb[j] = pb[j * sb]; }
            ZipContiguous(ref op, ba, bb, y + i, m);
        }
    }

    public static void MapContiguous<T>(ref T op, float* x, float* y, long n) where T : struct, IUnaryOp
    {
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i + 64 <= n; i += 64)
            {
                var v0 = Vector512.Load(x + i);
                var v1 = Vector512.Load(x + i + 16);
                var v2 = Vector512.Load(x + i + 32);
                var v3 = Vector512.Load(x + i + 48);
                op.Invoke(v0).Store(y + i);
                op.Invoke(v1).Store(y + i + 16);
                op.Invoke(v2).Store(y + i + 32);
                op.Invoke(v3).Store(y + i + 48);
            }
            for (; i + 16 <= n; i += 16) op.Invoke(Vector512.Load(x + i)).Store(y + i);
            if (i < n)
            {
                int m = (int)(n - i);
                float* t = stackalloc float[16];
                for (int j = 0; j < m; j++) t[j] = x[i + j];
                for (int j = m; j < 16; j++) t[j] = 0;
                op.Invoke(Vector512.Load(t)).Store(t);
                for (int j = 0; j < m; j++) y[i + j] = t[j];
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 8 <= n; i += 8) op.Invoke(Vector256.Load(x + i)).Store(y + i);
            if (i < n)
            {
                int m = (int)(n - i);
                float* t = stackalloc float[8];
                for (int j = 0; j < m; j++) t[j] = x[i + j];
                for (int j = m; j < 8; j++) t[j] = 0;
                op.Invoke(Vector256.Load(t)).Store(t);
                for (int j = 0; j < m; j++) y[i + j] = t[j];
            }
        }
        else for (; i < n; i++) y[i] = op.Invoke(x[i]);
    }

    public static void ZipContiguous<T>(ref T op, float* a, float* b, float* y, long n) where T : struct, IBinaryOp
    {
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i + 32 <= n; i += 32)
            {
                var r0 = op.Invoke(Vector512.Load(a + i), Vector512.Load(b + i));
                var r1 = op.Invoke(Vector512.Load(a + i + 16), Vector512.Load(b + i + 16));
                r0.Store(y + i);
                r1.Store(y + i + 16);
            }
            for (; i + 16 <= n; i += 16) op.Invoke(Vector512.Load(a + i), Vector512.Load(b + i)).Store(y + i);
            if (i < n)
            {
                int m = (int)(n - i);
                float* ta = stackalloc float[16];
                float* tb = stackalloc float[16];
                for (int j = 0; j < m; j++) { ta[j] = a[i + j]; tb[j] = b[i + j]; }
                for (int j = m; j < 16; j++) { ta[j] = 0; tb[j] = 1; }
                op.Invoke(Vector512.Load(ta), Vector512.Load(tb)).Store(ta);
                for (int j = 0; j < m; j++) y[i + j] = ta[j];
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 8 <= n; i += 8) op.Invoke(Vector256.Load(a + i), Vector256.Load(b + i)).Store(y + i);
            if (i < n)
            {
                int m = (int)(n - i);
                float* ta = stackalloc float[8];
                float* tb = stackalloc float[8];
                for (int j = 0; j < m; j++) { ta[j] = a[i + j]; tb[j] = b[i + j]; }
                for (int j = m; j < 8; j++) { ta[j] = 0; tb[j] = 1; }
                op.Invoke(Vector256.Load(ta), Vector256.Load(tb)).Store(ta);
                for (int j = 0; j < m; j++) y[i + j] = ta[j];
            }
        }
        else for (; i < n; i++) y[i] = op.Invoke(a[i], b[i]);
    }

    /// <summary>y[i] = op(a[i], b) — the right operand broadcast (row-vector and scalar cases).</summary>
    public static void ZipScalarRight<T>(ref T op, float* a, float b, float* y, long n) where T : struct, IBinaryOp
    {
        long i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var vb = Vector512.Create(b);
            for (; i + 16 <= n; i += 16) op.Invoke(Vector512.Load(a + i), vb).Store(y + i);
            if (i < n)
            {
                int m = (int)(n - i);
                float* ta = stackalloc float[16];
                for (int j = 0; j < m; j++) ta[j] = a[i + j];
                for (int j = m; j < 16; j++) ta[j] = 0;
                op.Invoke(Vector512.Load(ta), vb).Store(ta);
                for (int j = 0; j < m; j++) y[i + j] = ta[j];
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var vb = Vector256.Create(b);
            for (; i + 8 <= n; i += 8) op.Invoke(Vector256.Load(a + i), vb).Store(y + i);
            if (i < n)
            {
                int m = (int)(n - i);
                float* ta = stackalloc float[8];
                for (int j = 0; j < m; j++) ta[j] = a[i + j];
                for (int j = m; j < 8; j++) ta[j] = 0;
                op.Invoke(Vector256.Load(ta), vb).Store(ta);
                for (int j = 0; j < m; j++) y[i + j] = ta[j];
            }
        }
        else for (; i < n; i++) y[i] = op.Invoke(a[i], b);
    }

    // ------------------------------------------------------------------ n-d, parallel

    /// <summary>Elements per parallel work item below which an op runs on the calling thread.</summary>
    public const long ParallelGrain = 1 << 15;

    struct MapSeg<T>(T op, float* x, float* y) : ISegmentOp where T : struct, IUnaryOp
    {
        T _op = op;
        public void Run(ReadOnlySpan<long> off, long n, ReadOnlySpan<long> step) => Map(ref _op, x + off[0], step[0], y + off[1], n);
    }

    struct ZipSeg<T>(T op, float* a, float* b, float* y) : ISegmentOp where T : struct, IBinaryOp
    {
        T _op = op;
        public void Run(ReadOnlySpan<long> off, long n, ReadOnlySpan<long> step)
        {
            if (step[0] == 0 && step[1] == 1 && step[2] == 1)
            {
                // scalar-left broadcast: swap through a flipped view of the op
                var f = new Flip<T>(_op);
                ZipScalarRight(ref f, b + off[1], a[off[0]], y + off[2], n);
                return;
            }
            Zip(ref _op, a + off[0], step[0], b + off[1], step[1], y + off[2], n);
        }
    }

    struct Flip<T>(T op) : IBinaryOp where T : struct, IBinaryOp
    {
        T _op = op;
        public float Invoke(float a, float b) => _op.Invoke(b, a);
        public Vector256<float> Invoke(Vector256<float> a, Vector256<float> b) => _op.Invoke(b, a);
        public Vector512<float> Invoke(Vector512<float> a, Vector512<float> b) => _op.Invoke(b, a);
    }

    /// <summary>y = op(x) over an n-d index space; x (F32) read through <paramref name="xStrides"/>
    /// (0 on broadcast dims), y contiguous F32 of <paramref name="shape"/>. Parallel for large tensors.</summary>
    public static void Map<T>(T op, int[] shape, float* x, long[] xStrides, float* y) where T : struct, IUnaryOp
    {
        var seg = new MapSeg<T>(op, x, y);
        NdWalk.Run(shape, [xStrides, Tensor.ContiguousStrides(shape)], ref seg, ParallelGrain);
    }

    /// <summary>y = op(a, b) over an n-d index space with broadcast strides; y contiguous.</summary>
    public static void Zip<T>(T op, int[] shape, float* a, long[] aStrides, float* b, long[] bStrides, float* y) where T : struct, IBinaryOp
    {
        var seg = new ZipSeg<T>(op, a, b, y);
        NdWalk.Run(shape, [aStrides, bStrides, Tensor.ContiguousStrides(shape)], ref seg, ParallelGrain);
    }
}

/// <summary>Callback of <see cref="NdWalk"/>: a run of n elements starting at element offsets
/// <c>off[k]</c> of each operand, stepping by <c>step[k]</c>.</summary>
public interface ISegmentOp { void Run(ReadOnlySpan<long> off, long n, ReadOnlySpan<long> step); }

/// <summary>
/// Parallel walk over an n-d index space shared by several strided operands. Dimensions that are
/// contiguous for all operands are merged (so contiguous tensors form one long run); the flat
/// index range is cut into one chunk per thread at multiples of 64 elements and each chunk is
/// walked row by row. Every element is visited exactly once and chunks write disjoint outputs.
/// </summary>
[SkipLocalsInit] // stack buffers for tails are always written before they are read
public static class NdWalk
{
    public static void Run<T>(int[] shape, long[][] strides, ref T op, long grain) where T : struct, ISegmentOp
    {
        long total = Tensor.Product(shape);
        if (total == 0) return;
        var (dims, st) = Strided.Collapse(shape, strides);
        int chunks = (int)Math.Clamp(total / Math.Max(1, grain), 1, Par.Threads);
        if (NeedsTiles(dims, st))
        {
            RunTiled(dims, st, ref op, chunks);
            return;
        }
        if (chunks == 1) { Walk(dims, st, 0, total, ref op); return; }
        var opCopy = op;
        Par.For(chunks, c =>
        {
            long s = Align(total * c / chunks), e = c == chunks - 1 ? total : Align(total * (c + 1) / chunks);
            var local = opCopy;
            if (e > s) Walk(dims, st, s, e, ref local);
        });
    }

    static long Align(long i) => i & ~63L;

    const int Tile = 64;

    /// <summary>An operand read across its rows (a transpose): walking the output row by row would touch
    /// a new cache line and page for every element of that operand.</summary>
    static bool NeedsTiles(int[] dims, long[][] st)
    {
        int r = dims.Length;
        if (r < 2 || dims[r - 1] < Tile / 4 || dims[r - 2] < Tile / 4) return false;
        foreach (var s in st)
        {
            long inner = Math.Abs(s[r - 1]), outer = Math.Abs(s[r - 2]);
            if (inner > 16 && outer < inner) return true;
        }
        return false;
    }

    /// <summary>Walks the last two dims in 64 x 64 tiles (one tile's lines of every operand stay in L1);
    /// tiles are split between threads in contiguous ranges.</summary>
    static void RunTiled<T>(int[] dims, long[][] st, ref T op, int chunks) where T : struct, ISegmentOp
    {
        int r = dims.Length;
        long rows = dims[r - 2], cols = dims[r - 1];
        long tilesR = (rows + Tile - 1) / Tile, tilesC = (cols + Tile - 1) / Tile;
        long outer = 1;
        for (int d = 0; d < r - 2; d++) outer *= dims[d];
        long items = outer * tilesR * tilesC;
        chunks = (int)Math.Min(chunks, items);
        var opCopy = op;
        Action<int> body = c =>
        {
            var local = opCopy;
            int k = st.Length;
            Span<long> off = stackalloc long[k];
            Span<long> step = stackalloc long[k];
            for (int j = 0; j < k; j++) step[j] = st[j][r - 1];
            for (long it = items * c / chunks, end = items * (c + 1) / chunks; it < end; it++)
            {
                long tc = it % tilesC, tr = it / tilesC % tilesR, o = it / tilesC / tilesR;
                for (int j = 0; j < k; j++)
                {
                    long b = tr * Tile * st[j][r - 2] + tc * Tile * st[j][r - 1];
                    long rest = o;
                    for (int d = r - 3; d >= 0; d--) { b += rest % dims[d] * st[j][d]; rest /= dims[d]; }
                    off[j] = b;
                }
                long n = Math.Min(Tile, cols - tc * Tile), m = Math.Min(Tile, rows - tr * Tile);
                for (long i = 0; i < m; i++)
                {
                    local.Run(off, n, step);
                    for (int j = 0; j < k; j++) off[j] += st[j][r - 2];
                }
            }
        };
        if (chunks <= 1) body(0);
        else Par.For(chunks, body);
    }

    static void Walk<T>(int[] dims, long[][] st, long start, long end, ref T op) where T : struct, ISegmentOp
    {
        int r = dims.Length, k = st.Length;
        long inner = dims[r - 1];
        Span<int> idx = stackalloc int[r];
        Span<long> off = stackalloc long[k];
        Span<long> step = stackalloc long[k];
        for (int j = 0; j < k; j++) step[j] = st[j][r - 1];
        long row = start / inner, col = start % inner;
        for (int d = r - 2; d >= 0; d--) { idx[d] = (int)(row % dims[d]); row /= dims[d]; }
        for (int j = 0; j < k; j++)
        {
            long o = col * st[j][r - 1];
            for (int d = 0; d < r - 1; d++) o += idx[d] * st[j][d];
            off[j] = o;
        }
        long pos = start;
        while (pos < end)
        {
            long n = Math.Min(inner - col, end - pos);
            op.Run(off, n, step);
            pos += n;
            if (pos >= end) break;
            // next row: undo the column advance, then odometer-increment the outer index
            for (int j = 0; j < k; j++) off[j] -= col * step[j];
            col = 0;
            for (int d = r - 2; d >= 0; d--)
            {
                idx[d]++;
                for (int j = 0; j < k; j++) off[j] += st[j][d];
                if (idx[d] < dims[d]) break;
                for (int j = 0; j < k; j++) off[j] -= st[j][d] * dims[d];
                idx[d] = 0;
            }
        }
    }
}
