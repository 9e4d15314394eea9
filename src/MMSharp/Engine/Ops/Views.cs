namespace MMSharp.Engine;

/// <summary>View ops: new shape/strides over the same memory, no copy. Backward maps the gradient back.</summary>
public static partial class Ops
{
    /// <summary>Reinterprets the shape (one dim may be -1). A view when the strides allow it, otherwise a copy.</summary>
    public static Tensor Reshape(Tensor x, params int[] shape)
    {
        shape = InferShape(shape, x.NumEl, x);
        Tensor y;
        var strides = ViewStrides(x, shape);
        if (strides != null) y = x.ViewOf(shape, strides, x.Offset);
        else
        {
            Tensor c;
            using (Autograd.GradMode.NoGrad()) c = Clone(x);
            y = c.ViewOf(shape, Tensor.ContiguousStrides(shape), 0);
            c.Dispose();
        }
        if (Tensor.AnyRequiresGrad(x))
        {
            var inShape = x.Shape;
            y.WithGradFn("reshape", [x], [], g => [Reshape(g, inShape)]);
        }
        return y;
    }

    static int[] InferShape(int[] shape, long numel, Tensor x)
    {
        var s = (int[])shape.Clone();
        int infer = -1;
        long known = 1;
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] == -1)
            {
                if (infer >= 0) throw new ArgumentException("only one dimension can be -1");
                infer = i;
            }
            else known *= s[i];
        }
        if (infer >= 0)
        {
            if (known == 0 || numel % known != 0)
                throw new ArgumentException($"cannot reshape {x.Describe()} to {Tensor.ShapeString(shape)}");
            s[infer] = (int)(numel / known);
        }
        if (Tensor.Product(s) != numel)
            throw new ArgumentException($"cannot reshape {x.Describe()} ({numel} elements) to {Tensor.ShapeString(shape)}");
        return s;
    }

    /// <summary>Strides that present <paramref name="x"/>'s elements in row-major order under the new shape, or null
    /// if no such view exists (the same rule as PyTorch's view).</summary>
    static long[]? ViewStrides(Tensor x, int[] newShape)
    {
        if (x.IsContiguous) return Tensor.ContiguousStrides(newShape);
        var oldShape = x.Shape;
        var oldStrides = x.Strides;
        var result = new long[newShape.Length];
        int viewD = newShape.Length - 1;
        long chunkBase = oldStrides.Length > 0 ? oldStrides[^1] : 1;
        long tensorNumel = 1, viewNumel = 1;
        for (int tensorD = oldShape.Length - 1; tensorD >= 0; tensorD--)
        {
            tensorNumel *= oldShape[tensorD];
            if (tensorD == 0 || (oldShape[tensorD - 1] != 1 && oldStrides[tensorD - 1] != tensorNumel * chunkBase))
            {
                while (viewD >= 0 && (viewNumel < tensorNumel || newShape[viewD] == 1))
                {
                    result[viewD] = viewNumel * chunkBase;
                    viewNumel *= newShape[viewD];
                    viewD--;
                }
                if (viewNumel != tensorNumel) return null;
                if (tensorD > 0)
                {
                    chunkBase = oldStrides[tensorD - 1];
                    tensorNumel = 1;
                    viewNumel = 1;
                }
            }
        }
        if (viewD != -1) return null;
        return result;
    }

    /// <summary>Swaps two dimensions (a view).</summary>
    public static Tensor Transpose(Tensor x, int dim0, int dim1)
    {
        int a = x.NormDim(dim0), b = x.NormDim(dim1);
        var shape = (int[])x.Shape.Clone();
        var strides = (long[])x.Strides.Clone();
        (shape[a], shape[b]) = (shape[b], shape[a]);
        (strides[a], strides[b]) = (strides[b], strides[a]);
        var y = x.ViewOf(shape, strides, x.Offset);
        if (Tensor.AnyRequiresGrad(x)) y.WithGradFn("transpose", [x], [], g => [Transpose(g, a, b)]);
        return y;
    }

    /// <summary>Reorders dimensions: result dim i is input dim <paramref name="dims"/>[i] (a view).</summary>
    public static Tensor Permute(Tensor x, params int[] dims)
    {
        if (dims.Length != x.Rank) throw new ArgumentException($"permute of {x.Describe()} needs {x.Rank} dims, got {dims.Length}");
        var shape = new int[x.Rank];
        var strides = new long[x.Rank];
        var inverse = new int[x.Rank];
        var seen = new bool[x.Rank];
        for (int i = 0; i < dims.Length; i++)
        {
            int d = x.NormDim(dims[i]);
            if (seen[d]) throw new ArgumentException($"permute: dim {d} repeated");
            seen[d] = true;
            shape[i] = x.Shape[d];
            strides[i] = x.Strides[d];
            inverse[d] = i;
        }
        var y = x.ViewOf(shape, strides, x.Offset);
        if (Tensor.AnyRequiresGrad(x)) y.WithGradFn("permute", [x], [], g => [Permute(g, inverse)]);
        return y;
    }

    /// <summary>Elements [start, start + length) along <paramref name="dim"/> (a view).</summary>
    public static Tensor Narrow(Tensor x, int dim, int start, int length)
    {
        int d = x.NormDim(dim);
        if (start < 0) start += x.Shape[d];
        if (start < 0 || length < 0 || start + length > x.Shape[d])
            throw new ArgumentOutOfRangeException(nameof(start), $"narrow [{start}, {start + length}) outside dim {d} of {x.Describe()}");
        var shape = (int[])x.Shape.Clone();
        shape[d] = length;
        var y = x.ViewOf(shape, (long[])x.Strides.Clone(), x.Offset + start * x.Strides[d]);
        if (Tensor.AnyRequiresGrad(x))
        {
            var inShape = x.Shape;
            y.WithGradFn("narrow", [x], [], g =>
            {
                var gx = Tensor.Zeros(inShape);
                using var slot = Narrow(gx, d, start, length);
                CopyInto(g, slot);
                return [gx];
            });
        }
        return y;
    }

    /// <summary>Index <paramref name="index"/> of <paramref name="dim"/>, removing that dimension (a view).</summary>
    public static Tensor Select(Tensor x, int dim, int index)
    {
        int d = x.NormDim(dim);
        if (index < 0) index += x.Shape[d];
        using var n = Narrow(x, d, index, 1);
        return Squeeze(n, d);
    }

    /// <summary>Removes dimension <paramref name="dim"/>, which must have size 1.</summary>
    public static Tensor Squeeze(Tensor x, int dim)
    {
        int d = x.NormDim(dim);
        if (x.Shape[d] != 1) throw new ArgumentException($"squeeze: dim {d} of {x.Describe()} is not 1");
        var shape = x.Shape.Where((_, i) => i != d).ToArray();
        return Reshape(x, shape);
    }

    /// <summary>Inserts a dimension of size 1 at <paramref name="dim"/> (may equal the rank).</summary>
    public static Tensor Unsqueeze(Tensor x, int dim)
    {
        int d = dim < 0 ? dim + x.Rank + 1 : dim;
        if (d < 0 || d > x.Rank) throw new ArgumentOutOfRangeException(nameof(dim));
        var shape = new List<int>(x.Shape);
        shape.Insert(d, 1);
        return Reshape(x, shape.ToArray());
    }

    /// <summary>Merges dims [start, end] into one.</summary>
    public static Tensor Flatten(Tensor x, int start = 0, int end = -1)
    {
        if (x.Rank == 0) return Reshape(x, 1);
        int s = x.NormDim(start), e = x.NormDim(end);
        var shape = new List<int>();
        for (int i = 0; i < s; i++) shape.Add(x.Shape[i]);
        int m = 1;
        for (int i = s; i <= e; i++) m *= x.Shape[i];
        shape.Add(m);
        for (int i = e + 1; i < x.Rank; i++) shape.Add(x.Shape[i]);
        return Reshape(x, shape.ToArray());
    }

    /// <summary>Broadcasts size-1 dims (and new leading dims) to <paramref name="shape"/> with stride 0 (a view;
    /// -1 keeps a size). Backward sums over the broadcast dims.</summary>
    public static Tensor Expand(Tensor x, params int[] shape)
    {
        if (shape.Length < x.Rank) throw new ArgumentException($"expand {x.Describe()} to fewer dims {Tensor.ShapeString(shape)}");
        var outShape = new int[shape.Length];
        var strides = new long[shape.Length];
        int lead = shape.Length - x.Rank;
        for (int i = 0; i < shape.Length; i++)
        {
            int src = i - lead;
            int want = shape[i];
            if (src < 0)
            {
                if (want < 0) throw new ArgumentException("expand: -1 not allowed for a new leading dim");
                outShape[i] = want; strides[i] = 0;
                continue;
            }
            int have = x.Shape[src];
            if (want == -1 || want == have) { outShape[i] = have; strides[i] = x.Strides[src]; }
            else if (have == 1) { outShape[i] = want; strides[i] = 0; }
            else throw new ArgumentException($"cannot expand {x.Describe()} to {Tensor.ShapeString(shape)}");
        }
        var y = x.ViewOf(outShape, strides, x.Offset);
        if (Tensor.AnyRequiresGrad(x))
        {
            var inShape = x.Shape;
            y.WithGradFn("expand", [x], [], g => [SumToShape(g, inShape)]);
        }
        return y;
    }
}

public sealed partial class Tensor
{
    public Tensor Reshape(params int[] shape) => Ops.Reshape(this, shape);
    public Tensor View(params int[] shape) => Ops.Reshape(this, shape);
    public Tensor Transpose(int dim0, int dim1) => Ops.Transpose(this, dim0, dim1);
    public Tensor Permute(params int[] dims) => Ops.Permute(this, dims);
    public Tensor Narrow(int dim, int start, int length) => Ops.Narrow(this, dim, start, length);
    public Tensor Select(int dim, int index) => Ops.Select(this, dim, index);
    public Tensor Squeeze(int dim) => Ops.Squeeze(this, dim);
    public Tensor Unsqueeze(int dim) => Ops.Unsqueeze(this, dim);
    public Tensor Flatten(int start = 0, int end = -1) => Ops.Flatten(this, start, end);
    public Tensor Expand(params int[] shape) => Ops.Expand(this, shape);
    /// <summary>Transpose of the last two dims.</summary>
    public Tensor MT => Ops.Transpose(this, -2, -1);
}
