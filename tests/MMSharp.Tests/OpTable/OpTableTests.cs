using System.Reflection;
using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using Xunit.Abstractions;

namespace MMSharp.Tests.OpTable;

/// <summary>Runs every row of the op-test table forward (vs float64 reference) and backward (gradient checks).</summary>
public sealed class OpTableTests(ITestOutputHelper output)
{
    static readonly Lazy<Dictionary<string, OpCase>> AllCases = new(Collect);

    static Dictionary<string, OpCase> Collect()
    {
        var dict = new Dictionary<string, OpCase>();
        var methods = typeof(OpTableTests).Assembly.GetTypes()
            .SelectMany(t => t.GetMethods(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic))
            .Where(m => m.GetCustomAttribute<OpCasesAttribute>() != null)
            .OrderBy(m => m.DeclaringType!.FullName + "." + m.Name);
        foreach (var m in methods)
        {
            foreach (var c in (IEnumerable<OpCase>)m.Invoke(null, null)!)
            {
                string key = c.ToString();
                for (int k = 2; dict.ContainsKey(key); k++) key = $"{c} #{k}";
                dict[key] = c;
            }
        }
        return dict;
    }

    public static IEnumerable<object[]> CaseNames() => AllCases.Value.Keys.Select(k => new object[] { k });

    /// <summary>Ops (by name) that the table covers; used to assert every op has both checks.</summary>
    public static IReadOnlyCollection<string> CoveredOps => AllCases.Value.Values.Select(c => c.Op).ToHashSet();

    internal static Tensor[] MakeInputs(OpCase c)
    {
        var rng = new Rng(c.Seed * 7919 + 17);
        var result = new Tensor[c.Inputs.Length];
        for (int i = 0; i < c.Inputs.Length; i++)
        {
            var s = c.Inputs[i];
            long n = Tensor.Product(s.Shape);
            switch (s.Kind)
            {
                case InputKind.Float:
                case InputKind.FloatConst:
                case InputKind.FloatRange:
                case InputKind.BF16Const:
                {
                    var data = new float[n];
                    for (long j = 0; j < n; j++) data[j] = (float)(s.Lo + (s.Hi - s.Lo) * rng.NextDouble());
                    var t = Tensor.FromArray(data, s.Shape);
                    if (s.Kind == InputKind.BF16Const) { var b = t.To(DType.BF16); t.Dispose(); t = b; }
                    result[i] = t;
                    break;
                }
                case InputKind.Index:
                {
                    var data = new long[n];
                    for (long j = 0; j < n; j++) data[j] = (long)s.Lo + rng.NextInt((int)(s.Hi - s.Lo));
                    result[i] = Tensor.FromArray(data, s.Shape);
                    break;
                }
                case InputKind.Bool:
                {
                    var data = new bool[n];
                    for (long j = 0; j < n; j++) data[j] = rng.NextDouble() < s.Lo;
                    result[i] = Tensor.FromArray(data, s.Shape);
                    break;
                }
            }
        }
        return result;
    }

    static void AssertClose(string what, RefTensor expected, float[] actual, int[] actualShape, double atol, double rtol, ITestOutputHelper? log)
    {
        Assert.True(expected.Shape.AsSpan().SequenceEqual(actualShape),
            $"{what}: shape {Tensor.ShapeString(actualShape)}, reference {Tensor.ShapeString(expected.Shape)}");
        double maxDiff = 0;
        long worst = -1;
        for (long i = 0; i < actual.Length; i++)
        {
            double e = expected.Data[i], a = actual[i];
            double diff = Math.Abs(a - e);
            if (double.IsNaN(a) != double.IsNaN(e)) diff = double.PositiveInfinity;
            if (double.IsNaN(a) && double.IsNaN(e)) diff = 0;
            if (diff > atol + rtol * Math.Abs(e) && (worst < 0 || diff > maxDiff)) worst = i;
            if (diff > maxDiff) maxDiff = diff;
        }
        log?.WriteLine($"{what}: max |diff| = {maxDiff:E2}");
        Assert.True(worst < 0,
            $"{what}: element {worst} {Tensor.ShapeString(RefTensor.Unflatten(worst < 0 ? 0 : worst, actualShape))} is {(worst < 0 ? 0 : actual[worst])}, reference {(worst < 0 ? 0 : expected.Data[worst])} (max |diff| {maxDiff:E2})");
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void Forward_MatchesFloat64Reference(string name)
    {
        var c = AllCases.Value[name];
        var inputs = MakeInputs(c);
        Tensor y;
        using (GradMode.NoGrad()) y = c.Run(inputs);
        var expected = c.Reference(inputs.Select(RefTensor.From).ToArray());
        AssertClose($"{name} forward", expected, y.ToFloatArray(), y.Shape, c.Atol, c.Rtol, output);
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void Backward_MatchesFiniteDifferences(string name)
    {
        var c = AllCases.Value[name];
        if (!c.CheckGrad) return;
        var inputs = MakeInputs(c);
        for (int i = 0; i < inputs.Length; i++)
            if (c.Inputs[i].Differentiable) inputs[i].RequiresGrad = true;

        var y = c.Run(inputs);
        Assert.True(y.RequiresGrad, $"{name}: output does not require grad although inputs do");
        var w = Tensor.RandUniform(y.Shape, c.Seed + 99, -1, 1);
        y.Backward(w);
        var wRef = RefTensor.From(w);
        var refInputs = inputs.Select(RefTensor.From).ToArray();

        double Loss(RefTensor[] xs)
        {
            var o = c.Reference(xs);
            double s = 0;
            for (long k = 0; k < o.Data.Length; k++) s += o.Data[k] * wRef.Data[k];
            return s;
        }

        var rng = new Rng(c.Seed + 5);
        for (int i = 0; i < inputs.Length; i++)
        {
            if (!c.Inputs[i].Differentiable) continue;
            var grad = inputs[i].Grad;
            Assert.True(grad != null, $"{name}: input {i} got no gradient");
            Assert.True(grad!.Shape.AsSpan().SequenceEqual(inputs[i].Shape), $"{name}: gradient of input {i} has shape {Tensor.ShapeString(grad.Shape)}");
            var g = grad.ToFloatArray();

            // (1) central differences of the float64 reference at every element (or a sample of 400)
            var x = refInputs[i];
            var fd = new RefTensor(x.Shape);
            var ours = new float[x.Data.Length];
            var positions = x.Data.Length <= 400
                ? Enumerable.Range(0, x.Data.Length).ToArray()
                : Enumerable.Range(0, 400).Select(_ => rng.NextInt(x.Data.Length)).Distinct().ToArray();
            var fdSub = new RefTensor([positions.Length]);
            for (int p = 0; p < positions.Length; p++)
            {
                int k = positions[p];
                double orig = x.Data[k];
                double h = 1e-5 * Math.Max(1, Math.Abs(orig));
                x.Data[k] = orig + h; double lp = Loss(refInputs);
                x.Data[k] = orig - h; double lm = Loss(refInputs);
                x.Data[k] = orig;
                fdSub.Data[p] = (lp - lm) / (2 * h);
                ours[p] = g[k];
            }
            AssertClose($"{name} grad[{i}] vs float64 finite differences", fdSub, ours.AsSpan(0, positions.Length).ToArray(), [positions.Length], c.GradAtol, c.GradRtol, output);

            // (2) central differences of our own fp32 forward at a few elements (loose: fp32 rounding)
            if (!c.CheckFp32FiniteDifference) continue;
            double scale = Math.Max(1, g.Length == 0 ? 0 : g.Max(v => Math.Abs(v)));
            var xs = inputs.Select(t => t.Detach()).ToArray();
            for (int s = 0; s < Math.Min(6, positions.Length); s++)
            {
                int k = positions[rng.NextInt(positions.Length)];
                using var plus = Perturb(inputs[i], k, 1e-2f, out float hp);
                using var minus = Perturb(inputs[i], k, -1e-2f, out float hm);
                double lp, lm;
                using (GradMode.NoGrad())
                {
                    xs[i] = plus; lp = Dot(c.Run(xs), w);
                    xs[i] = minus; lm = Dot(c.Run(xs), w);
                }
                double est = (lp - lm) / (hp - hm);
                Assert.True(Math.Abs(est - g[k]) <= 2e-2 * scale,
                    $"{name} grad[{i}] element {k}: autograd {g[k]}, fp32 finite difference {est}");
            }
        }
    }

    static Tensor Perturb(Tensor x, int k, float rel, out float h)
    {
        var data = x.ToFloatArray();
        float orig = data[k];
        h = rel * Math.Max(1f, Math.Abs(orig));
        data[k] = orig + h;
        h = data[k] - orig; // the step actually taken in fp32
        return Tensor.FromArray(data, x.Shape);
    }

    static double Dot(Tensor y, Tensor w)
    {
        var a = y.ToFloatArray();
        var b = w.ToFloatArray();
        double s = 0;
        for (int i = 0; i < a.Length; i++) s += (double)a[i] * b[i];
        y.Dispose();
        return s;
    }
}
