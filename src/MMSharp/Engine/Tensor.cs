using System.Runtime.CompilerServices;
using System.Text;
using MMSharp.Engine.Autograd;

namespace MMSharp.Engine;

/// <summary>
/// An n-dimensional, row-major strided view over a <see cref="Storage"/>. Arithmetic is fp32;
/// BF16/F16 are storage formats (matmul and embedding read BF16 weights directly, other ops widen).
/// Every op returns a new Tensor object that the caller owns: dispose it (or let a
/// <see cref="TensorScope"/> do it) to return its memory to the pool at once, or drop it and let
/// the GC reclaim it.
/// </summary>
public sealed unsafe partial class Tensor : IDisposable
{
    Storage? _storage;
    readonly int[] _shape;
    readonly long[] _strides;

    public DType DType { get; }
    /// <summary>Offset of element [0,...,0] in elements of <see cref="DType"/>.</summary>
    public long Offset { get; }
    public long NumEl { get; }

    /// <summary>Dimensions. Treat as read-only.</summary>
    public int[] Shape => _shape;
    /// <summary>Strides in elements. Treat as read-only.</summary>
    public long[] Strides => _strides;
    public int Rank => _shape.Length;

    /// <summary>Optional name, used in error messages and tensor dumps.</summary>
    public string? Name { get; set; }

    internal Tensor(Storage storage, DType dtype, int[] shape, long[] strides, long offset, bool register = true)
    {
        _storage = storage;
        DType = dtype;
        _shape = shape;
        _strides = strides;
        Offset = offset;
        long n = 1;
        foreach (var d in shape)
        {
            if (d < 0) throw new ArgumentException($"negative dimension in shape {ShapeString(shape)}");
            n *= d;
        }
        NumEl = n;
        if (register) TensorScope.Register(this);
    }

    public Storage Storage => _storage ?? throw new ObjectDisposedException(Describe(), "tensor was used after Dispose");
    public bool IsDisposed => _storage == null;

    /// <summary>Pointer to element [0,...,0].</summary>
    public byte* DataPtr => Storage.Ptr + Offset * DType.SizeOf();

    public float* F32Ptr
    {
        get
        {
            if (DType != DType.F32) throw new InvalidOperationException($"{Describe()} is {DType}, expected F32");
            return (float*)DataPtr;
        }
    }

    public int Size(int dim) => _shape[NormDim(dim)];

    public int NormDim(int dim)
    {
        int d = dim < 0 ? dim + Rank : dim;
        if (d < 0 || d >= Rank) throw new ArgumentOutOfRangeException(nameof(dim), $"dim {dim} out of range for {Describe()}");
        return d;
    }

    public bool IsContiguous
    {
        get
        {
            long expect = 1;
            for (int i = Rank - 1; i >= 0; i--)
            {
                if (_shape[i] != 1 && _strides[i] != expect) return false;
                expect *= _shape[i];
            }
            return true;
        }
    }

    public static long[] ContiguousStrides(int[] shape)
    {
        var s = new long[shape.Length];
        long acc = 1;
        for (int i = shape.Length - 1; i >= 0; i--) { s[i] = acc; acc *= shape[i]; }
        return s;
    }

    public static long Product(ReadOnlySpan<int> shape)
    {
        long n = 1;
        foreach (var d in shape) n *= d;
        return n;
    }

    // ---------------------------------------------------------------- creation

    public static Tensor Empty(int[] shape, DType dtype = DType.F32)
    {
        var s = (int[])shape.Clone();
        long n = Product(s);
        return new Tensor(Storage.Allocate(n * dtype.SizeOf()), dtype, s, ContiguousStrides(s), 0);
    }

    public static Tensor Empty(params int[] shape) => Empty(shape, DType.F32);

    public static Tensor Zeros(int[] shape, DType dtype = DType.F32)
    {
        var t = Empty(shape, dtype);
        ClearLarge(t.DataPtr, t.NumEl * dtype.SizeOf());
        return t;
    }

    public static Tensor Zeros(params int[] shape) => Zeros(shape, DType.F32);

    static void ClearLarge(byte* p, long bytes)
    {
        while (bytes > 0)
        {
            int chunk = (int)Math.Min(bytes, 1 << 30);
            new Span<byte>(p, chunk).Clear();
            p += chunk; bytes -= chunk;
        }
    }

    public static Tensor Full(int[] shape, float value)
    {
        var t = Empty(shape);
        new Span<float>(t.F32Ptr, checked((int)t.NumEl)).Fill(value);
        return t;
    }

    public static Tensor Ones(params int[] shape) => Full(shape, 1f);

    public static Tensor Scalar(float value) => Full([], value);

    public static Tensor FromArray(float[] data, params int[] shape)
    {
        if (shape.Length == 0 && data.Length != 1) shape = [data.Length];
        if (Product(shape) != data.Length) throw new ArgumentException($"{data.Length} values do not fill shape {ShapeString(shape)}");
        var t = Empty(shape);
        data.AsSpan().CopyTo(new Span<float>(t.F32Ptr, data.Length));
        return t;
    }

    public static Tensor FromArray(long[] data, params int[] shape)
    {
        if (shape.Length == 0 && data.Length != 1) shape = [data.Length];
        if (Product(shape) != data.Length) throw new ArgumentException($"{data.Length} values do not fill shape {ShapeString(shape)}");
        var t = Empty(shape, DType.I64);
        data.AsSpan().CopyTo(new Span<long>(t.DataPtr, data.Length));
        return t;
    }

    public static Tensor FromArray(int[] data, params int[] shape)
    {
        if (shape.Length == 0 && data.Length != 1) shape = [data.Length];
        if (Product(shape) != data.Length) throw new ArgumentException($"{data.Length} values do not fill shape {ShapeString(shape)}");
        var t = Empty(shape, DType.I32);
        data.AsSpan().CopyTo(new Span<int>(t.DataPtr, data.Length));
        return t;
    }

    public static Tensor FromArray(bool[] data, params int[] shape)
    {
        if (shape.Length == 0 && data.Length != 1) shape = [data.Length];
        if (Product(shape) != data.Length) throw new ArgumentException($"{data.Length} values do not fill shape {ShapeString(shape)}");
        var t = Empty(shape, DType.Bool);
        for (int i = 0; i < data.Length; i++) t.DataPtr[i] = data[i] ? (byte)1 : (byte)0;
        return t;
    }

    /// <summary>0, 1, ..., n-1 as F32 (or I64).</summary>
    public static Tensor Arange(int n, DType dtype = DType.F32)
    {
        var t = Empty([n], dtype);
        for (int i = 0; i < n; i++) t.SetFlat(i, i);
        return t;
    }

    /// <summary>Standard normal values from a seeded generator (reproducible).</summary>
    public static Tensor RandN(int[] shape, ulong seed, float std = 1f)
    {
        var t = Empty(shape);
        var rng = new Rng(seed);
        var p = t.F32Ptr;
        for (long i = 0; i < t.NumEl; i++) p[i] = rng.NextNormal() * std;
        return t;
    }

    /// <summary>Uniform values in [lo, hi) from a seeded generator (reproducible).</summary>
    public static Tensor RandUniform(int[] shape, ulong seed, float lo = 0f, float hi = 1f)
    {
        var t = Empty(shape);
        var rng = new Rng(seed);
        var p = t.F32Ptr;
        for (long i = 0; i < t.NumEl; i++) p[i] = lo + (hi - lo) * rng.NextFloat();
        return t;
    }

    // ---------------------------------------------------------------- element access (slow paths, tests, small tensors)

    /// <summary>Storage offset (in elements) of the element with flat row-major index <paramref name="flat"/>.</summary>
    public long ElementOffset(long flat)
    {
        long off = Offset;
        for (int d = Rank - 1; d >= 0; d--)
        {
            int size = _shape[d];
            long i = flat % size;
            flat /= size;
            off += i * _strides[d];
        }
        return off;
    }

    public float GetFlat(long flat) => ReadAsFloat(Storage.Ptr, DType, ElementOffset(flat));

    public void SetFlat(long flat, double value) => WriteFromDouble(Storage.Ptr, DType, ElementOffset(flat), value);

    public long GetFlatLong(long flat)
    {
        long off = ElementOffset(flat);
        byte* b = Storage.Ptr;
        return DType switch
        {
            DType.I64 => ((long*)b)[off],
            DType.I32 => ((int*)b)[off],
            DType.U8 or DType.Bool => b[off],
            _ => (long)ReadAsFloat(b, DType, off),
        };
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float ReadAsFloat(byte* b, DType dt, long off) => dt switch
    {
        DType.F32 => ((float*)b)[off],
        DType.BF16 => Half16.BF16ToFloat(((ushort*)b)[off]),
        DType.F16 => Half16.F16ToFloat(((ushort*)b)[off]),
        DType.I64 => ((long*)b)[off],
        DType.I32 => ((int*)b)[off],
        DType.U8 => b[off],
        DType.Bool => b[off] != 0 ? 1f : 0f,
        _ => throw new NotSupportedException(dt.ToString()),
    };

    internal static void WriteFromDouble(byte* b, DType dt, long off, double v)
    {
        switch (dt)
        {
            case DType.F32: ((float*)b)[off] = (float)v; break;
            case DType.BF16: ((ushort*)b)[off] = Half16.FloatToBF16((float)v); break;
            case DType.F16: ((ushort*)b)[off] = Half16.FloatToF16((float)v); break;
            case DType.I64: ((long*)b)[off] = (long)v; break;
            case DType.I32: ((int*)b)[off] = (int)v; break;
            case DType.U8: b[off] = (byte)v; break;
            case DType.Bool: b[off] = v != 0 ? (byte)1 : (byte)0; break;
        }
    }

    /// <summary>All elements in row-major order, widened to float.</summary>
    public float[] ToFloatArray()
    {
        var r = new float[NumEl];
        if (DType == DType.F32 && IsContiguous) { new ReadOnlySpan<float>(F32Ptr, r.Length).CopyTo(r); return r; }
        for (long i = 0; i < r.Length; i++) r[i] = GetFlat(i);
        return r;
    }

    public long[] ToLongArray()
    {
        var r = new long[NumEl];
        for (long i = 0; i < r.Length; i++) r[i] = GetFlatLong(i);
        return r;
    }

    /// <summary>The single value of a one-element tensor.</summary>
    public float Item()
    {
        if (NumEl != 1) throw new InvalidOperationException($"Item() needs one element, {Describe()} has {NumEl}");
        return GetFlat(0);
    }

    /// <summary>Span over the data of a contiguous F32 tensor.</summary>
    public Span<float> AsSpan()
    {
        if (!IsContiguous) throw new InvalidOperationException($"{Describe()} is not contiguous");
        return new Span<float>(F32Ptr, checked((int)NumEl));
    }

    // ---------------------------------------------------------------- ownership

    /// <summary>A new Tensor object over the same memory (shares data, own reference, no autograd history).</summary>
    public Tensor Alias(bool register = true)
    {
        Storage.Retain();
        return new Tensor(Storage, DType, _shape, _strides, Offset, register);
    }

    /// <summary>A view with another shape/strides over the same storage (no autograd; used by view ops).</summary>
    internal Tensor ViewOf(int[] shape, long[] strides, long offset)
    {
        Storage.Retain();
        return new Tensor(Storage, DType, shape, strides, offset);
    }

    /// <summary>Releases this tensor's reference to its memory. Idempotent. Views and saved copies keep their own.</summary>
    public void Dispose()
    {
        var s = _storage;
        if (s == null) return;
        _storage = null; // GradFn stays: later nodes reach the graph through this object
        s.Release();
    }

    /// <summary>Marks an in-place modification (autograd checks saved tensors against this).</summary>
    public void BumpVersion() => Interlocked.Increment(ref Storage.Version);

    // ---------------------------------------------------------------- text

    public static string ShapeString(ReadOnlySpan<int> shape)
    {
        var sb = new StringBuilder("[");
        for (int i = 0; i < shape.Length; i++) { if (i > 0) sb.Append(", "); sb.Append(shape[i]); }
        return sb.Append(']').ToString();
    }

    public string Describe() => $"tensor{(Name != null ? " '" + Name + "'" : "")} {DType}{ShapeString(_shape)}";

    public override string ToString()
    {
        if (IsDisposed) return Describe() + " (disposed)";
        var sb = new StringBuilder(Describe());
        if (NumEl <= 16)
        {
            sb.Append(" {");
            for (long i = 0; i < NumEl; i++) { if (i > 0) sb.Append(", "); sb.Append(GetFlat(i).ToString("G6")); }
            sb.Append('}');
        }
        return sb.ToString();
    }
}
