namespace MMSharp.Tests.OpTable;

/// <summary>float64 helpers for the naive references.</summary>
public static class RefMath
{
    /// <summary>erf in float64: the all-positive series 2/√π·e^(-x²)·Σ 2ⁿx^(2n+1)/(2n+1)!! below 2.5, the
    /// erfc continued fraction above (both accurate to ~1e-15).</summary>
    public static double Erf(double x)
    {
        double ax = Math.Abs(x);
        if (double.IsNaN(x)) return double.NaN;
        if (ax > 6) return Math.Sign(x);
        if (ax < 2.5)
        {
            double term = ax, sum = ax;
            for (int n = 1; n < 200; n++)
            {
                term *= 2 * ax * ax / (2 * n + 1);
                sum += term;
                if (term < 1e-17 * sum) break;
            }
            return Math.Sign(x) * 2 / Math.Sqrt(Math.PI) * Math.Exp(-ax * ax) * sum;
        }
        const double tiny = 1e-300;
        double f = ax, c = ax, d = 0;
        for (int n = 1; n < 300; n++)
        {
            double a = n / 2.0;
            d = ax + a * d; if (d == 0) d = tiny; d = 1 / d;
            c = ax + a / c; if (c == 0) c = tiny;
            double delta = c * d;
            f *= delta;
            if (Math.Abs(delta - 1) < 1e-16) break;
        }
        return Math.Sign(x) * (1 - Math.Exp(-ax * ax) / Math.Sqrt(Math.PI) / f);
    }

    public static double Sigmoid(double x) => 1 / (1 + Math.Exp(-x));

    public static double Gelu(double x) => 0.5 * x * (1 + Erf(x / Math.Sqrt(2)));

    public static double GeluTanh(double x) => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));

    /// <summary>2-d transpose.</summary>
    public static RefTensor T(RefTensor x) => x.Gather([x.Shape[1], x.Shape[0]], [1, x.Shape[1]], 0);

    /// <summary>Moves <paramref name="dim"/> of a reference tensor to the end (a copy), and its inverse.</summary>
    public static RefTensor MoveLast(RefTensor x, int dim)
    {
        var order = Enumerable.Range(0, x.Rank).Where(d => d != dim).Append(dim).ToArray();
        return Permute(x, order);
    }

    public static RefTensor MoveBack(RefTensor x, int dim)
    {
        int r = x.Rank;
        var order = new int[r];
        // result dim i comes from: i < dim -> i, i == dim -> r-1, i > dim -> i-1
        for (int i = 0; i < r; i++) order[i] = i < dim ? i : i == dim ? r - 1 : i - 1;
        return Permute(x, order);
    }

    public static RefTensor Permute(RefTensor x, int[] dims)
    {
        var st = x.Strides;
        return x.Gather(dims.Select(d => x.Shape[d]).ToArray(), dims.Select(d => st[d]).ToArray(), 0);
    }

    /// <summary>Applies <paramref name="f"/> to each row of the last dim.</summary>
    public static RefTensor Rows(RefTensor x, Func<double[], double[]> f)
    {
        int v = x.Shape[^1];
        var r = new RefTensor((int[])x.Shape.Clone());
        for (int o = 0; o < x.Data.Length / Math.Max(1, v); o++)
        {
            var row = x.Data.AsSpan(o * v, v).ToArray();
            f(row).CopyTo(r.Data, o * v);
        }
        return r;
    }

    /// <summary>Reduces dim <paramref name="dim"/> with <paramref name="f"/> over the values along it.</summary>
    public static RefTensor ReduceDim(RefTensor x, int dim, bool keepDim, Func<double[], double> f)
    {
        var moved = MoveLast(x, dim);
        int v = x.Shape[dim];
        var outShape = keepDim ? x.Shape.Select((s, i) => i == dim ? 1 : s).ToArray() : x.Shape.Where((_, i) => i != dim).ToArray();
        var r = new RefTensor(outShape);
        for (int o = 0; o < r.Data.Length; o++) r.Data[o] = f(moved.Data.AsSpan(o * v, v).ToArray());
        return r;
    }
}
