namespace MMSharp.Engine.Kernels;

/// <summary>Per-row callback of <see cref="Strided"/>: n elements, starting at the given element
/// offsets, stepping by the given inner strides.</summary>
public interface IRowOp2 { void Row(long off0, long off1, int n, long inner0, long inner1); }
public interface IRowOp3 { void Row(long off0, long off1, long off2, int n, long inner0, long inner1, long inner2); }

/// <summary>
/// Walks an n-d index space over operands with arbitrary strides, one innermost row at a time.
/// Adjacent dimensions that are contiguous for every operand are merged first, so a contiguous
/// tensor is a single row. Element offsets are in elements, relative to each operand's start.
/// </summary>
public static class Strided
{
    /// <summary>Merges dimensions that are contiguous for all operands and drops size-1 dims.</summary>
    public static (int[] shape, long[][] strides) Collapse(int[] shape, params long[][] strides)
    {
        var dims = new List<int>();
        var st = strides.Select(_ => new List<long>()).ToArray();
        for (int d = 0; d < shape.Length; d++)
        {
            if (shape[d] == 1) continue;
            if (dims.Count > 0)
            {
                int last = dims.Count - 1;
                bool merge = true;
                for (int k = 0; k < strides.Length; k++)
                    if (st[k][last] != strides[k][d] * shape[d]) { merge = false; break; }
                if (merge)
                {
                    dims[last] *= shape[d];
                    for (int k = 0; k < strides.Length; k++) st[k][last] = strides[k][d];
                    continue;
                }
            }
            dims.Add(shape[d]);
            for (int k = 0; k < strides.Length; k++) st[k].Add(strides[k][d]);
        }
        if (dims.Count == 0)
        {
            dims.Add(1);
            foreach (var s in st) s.Add(1);
        }
        return (dims.ToArray(), st.Select(s => s.ToArray()).ToArray());
    }

    public static void ForEachRow<T>(int[] shape, long[] s0, long[] s1, ref T op) where T : struct, IRowOp2
    {
        if (Tensor.Product(shape) == 0) return;
        var (dims, st) = Collapse(shape, s0, s1);
        int r = dims.Length, inner = dims[r - 1];
        long i0 = st[0][r - 1], i1 = st[1][r - 1];
        Span<int> idx = stackalloc int[r];
        long o0 = 0, o1 = 0;
        while (true)
        {
            op.Row(o0, o1, inner, i0, i1);
            int d = r - 2;
            for (; d >= 0; d--)
            {
                idx[d]++;
                o0 += st[0][d]; o1 += st[1][d];
                if (idx[d] < dims[d]) break;
                o0 -= st[0][d] * dims[d]; o1 -= st[1][d] * dims[d];
                idx[d] = 0;
            }
            if (d < 0) return;
        }
    }

    public static void ForEachRow<T>(int[] shape, long[] s0, long[] s1, long[] s2, ref T op) where T : struct, IRowOp3
    {
        if (Tensor.Product(shape) == 0) return;
        var (dims, st) = Collapse(shape, s0, s1, s2);
        int r = dims.Length, inner = dims[r - 1];
        long i0 = st[0][r - 1], i1 = st[1][r - 1], i2 = st[2][r - 1];
        Span<int> idx = stackalloc int[r];
        long o0 = 0, o1 = 0, o2 = 0;
        while (true)
        {
            op.Row(o0, o1, o2, inner, i0, i1, i2);
            int d = r - 2;
            for (; d >= 0; d--)
            {
                idx[d]++;
                o0 += st[0][d]; o1 += st[1][d]; o2 += st[2][d];
                if (idx[d] < dims[d]) break;
                o0 -= st[0][d] * dims[d]; o1 -= st[1][d] * dims[d]; o2 -= st[2][d] * dims[d];
                idx[d] = 0;
            }
            if (d < 0) return;
        }
    }
}
