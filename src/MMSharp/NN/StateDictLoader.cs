using System.Text;
using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.Engine.IO;

namespace MMSharp.NN;

/// <summary>How <see cref="Module.LoadStateDict(ICheckpointReader, bool, DTypePolicy, string, Func{string, string}, WeightArena)"/> treats stored dtypes.</summary>
public enum DTypePolicy
{
    /// <summary>
    /// Float tensors keep their stored dtype (BF16 stays BF16 and memory-mapped, whatever the declared float
    /// dtype); integer and bool tensors must have exactly the declared dtype.
    /// </summary>
    KeepStored,
    /// <summary>Tensors are converted to the declared dtype (a copy when it differs); float ↔ integer is an error.</summary>
    ConvertToDeclared,
    /// <summary>The stored dtype must equal the declared dtype.</summary>
    Exact,
}

/// <summary>What a non-strict load skipped.</summary>
public sealed record LoadReport(IReadOnlyList<string> Missing, IReadOnlyList<string> Unexpected, int Loaded);

/// <summary>
/// A state dict does not fit a module. One exception lists every problem, each with its name and the
/// expected and found shape/dtype; the lists are also available as properties.
/// </summary>
public sealed class StateDictMismatchException : Exception
{
    public IReadOnlyList<string> Missing { get; }
    public IReadOnlyList<string> Unexpected { get; }
    /// <summary>Name, expected and found description, for shape and dtype mismatches.</summary>
    public IReadOnlyList<(string Name, string Expected, string Found)> Mismatched { get; }

    public StateDictMismatchException(string message, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected,
        IReadOnlyList<(string, string, string)> mismatched) : base(message)
    {
        Missing = missing;
        Unexpected = unexpected;
        Mismatched = mismatched;
    }
}

/// <summary>Where a state dict comes from: a name -> tensor map, or a checkpoint reader (headers first, data lazily).</summary>
internal interface IStateSource
{
    string Describe { get; }
    IEnumerable<string> Names { get; }
    bool Has(string name);
    (int[] Shape, DType? DType, string DTypeName) Info(string name);
    /// <summary>The tensor and whether the caller must dispose it.</summary>
    (Tensor Tensor, bool Owned) Get(string name);
}

internal sealed class DictionarySource(IReadOnlyDictionary<string, Tensor> d) : IStateSource
{
    public string Describe => "state dict";
    public IEnumerable<string> Names => d.Keys;
    public bool Has(string name) => d.ContainsKey(name);
    public (int[], DType?, string) Info(string name) { var t = d[name]; return (t.Shape, t.DType, t.DType.SafetensorsName()); }
    public (Tensor, bool) Get(string name) => (d[name], false);
}

internal sealed class ReaderSource(ICheckpointReader r) : IStateSource
{
    public string Describe => r.Source;
    public IEnumerable<string> Names => r.Names;
    public bool Has(string name) => r.Has(name);
    public (int[], DType?, string) Info(string name) { var i = r.Info(name); return (i.Shape, i.IsSupported ? i.DType : null, i.DTypeName); }
    public (Tensor, bool) Get(string name) => (r.Get(name), true);
}

internal static class StateDictLoader
{
    const int MaxListed = 40;

    /// <summary>Loads <paramref name="source"/> into <paramref name="module"/>; tensors whose dtype is kept are copied into
    /// <paramref name="copyInto"/> when given (instead of staying views, e.g. of a mapped file).</summary>
    public static LoadReport Load(Module module, IStateSource source, bool strict, DTypePolicy policy, string prefix,
        Func<string, string>? storedName = null, WeightArena? copyInto = null)
    {
        // The checkpoint key of a module name: prefix + name, or a layout's own naming (e.g. PEFT's base_layer keys);
        // every message below names these stored keys.
        string Key(string name) => storedName?.Invoke(prefix + name) ?? prefix + name;
        var slots = module.StateSlots().ToList();
        var expected = new HashSet<string>(slots.Select(s => Key(s.Name)), StringComparer.Ordinal);
        var missing = new List<string>();
        var mismatched = new List<(string Name, string Expected, string Found)>();
        var toLoad = new List<(string Name, TensorSlot Slot, bool Convert)>();
        var loadedSlots = new HashSet<TensorSlot>(ReferenceEqualityComparer.Instance);

        foreach (var (name, slot) in slots)
        {
            string key = Key(name);
            if (!source.Has(key)) continue;
            var (shape, dtype, dtypeName) = source.Info(key);
            string want = $"{slot.DeclaredDType}{Tensor.ShapeString(slot.Shape)}";
            string got = $"{dtypeName}{Tensor.ShapeString(shape)}";
            if (!shape.AsSpan().SequenceEqual(slot.Shape))
            {
                mismatched.Add((key, want, got));
                continue;
            }
            if (dtype is not DType stored || !DTypeAllowed(policy, slot.DeclaredDType, stored))
            {
                mismatched.Add((key, want, got + (dtype == null ? " (unsupported dtype)" : $" (dtype not allowed by {policy})")));
                continue;
            }
            if (loadedSlots.Add(slot))
                toLoad.Add((key, slot, policy == DTypePolicy.ConvertToDeclared && stored != slot.DeclaredDType));
        }
        // A tied parameter is satisfied by any one of its names.
        foreach (var (name, slot) in slots)
            if (!source.Has(Key(name)) && !loadedSlots.Contains(slot))
                missing.Add(Key(name));
        var unexpected = source.Names
            .Where(n => n.StartsWith(prefix, StringComparison.Ordinal) && !expected.Contains(n))
            .ToList();

        if (mismatched.Count > 0 || (strict && (missing.Count > 0 || unexpected.Count > 0)))
        {
            var declared = slots.GroupBy(s => Key(s.Name)).ToDictionary(g => g.Key, g => g.First().Slot);
            throw new StateDictMismatchException(Message(module, source, missing, unexpected, mismatched, strict, declared),
                missing, unexpected, mismatched);
        }

        foreach (var (key, slot, convert) in toLoad)
        {
            var (t, owned) = source.Get(key);
            try
            {
                if (convert || copyInto != null)
                {
                    Tensor c;
                    using (GradMode.NoGrad())
                    using (TensorScope.Suspend())
                        c = convert ? Ops.Clone(t, slot.DeclaredDType) : copyInto!.Copy(t);
                    if (owned) t.Dispose();
                    (t, owned) = (c, true);
                }
                slot.Set(t);
                slot.Data.Name = key;
            }
            finally
            {
                if (owned) t.Dispose();
            }
        }
        return new LoadReport(missing, unexpected, toLoad.Count);
    }

    static bool DTypeAllowed(DTypePolicy policy, DType declared, DType stored) => policy switch
    {
        DTypePolicy.Exact => declared == stored,
        DTypePolicy.KeepStored => declared.IsFloat() ? stored.IsFloat() : declared == stored,
        DTypePolicy.ConvertToDeclared => declared.IsFloat() == stored.IsFloat(),
        _ => false,
    };

    static string Message(Module module, IStateSource source, List<string> missing, List<string> unexpected,
        List<(string Name, string Expected, string Found)> mismatched, bool strict, Dictionary<string, TensorSlot> declared)
    {
        var sb = new StringBuilder();
        sb.Append($"cannot load {source.Describe} into {module.GetType().Name}: ");
        var parts = new List<string>();
        if (strict || mismatched.Count == 0)
        {
            if (missing.Count > 0) parts.Add($"{missing.Count} missing");
            if (unexpected.Count > 0) parts.Add($"{unexpected.Count} unexpected");
        }
        if (mismatched.Count > 0) parts.Add($"{mismatched.Count} with wrong shape or dtype");
        sb.Append(string.Join(", ", parts)).AppendLine();
        void List<T>(string title, List<T> items, Func<T, string> line)
        {
            if (items.Count == 0) return;
            sb.AppendLine($"  {title}:");
            foreach (var x in items.Take(MaxListed)) sb.AppendLine("    " + line(x));
            if (items.Count > MaxListed) sb.AppendLine($"    ... and {items.Count - MaxListed} more");
        }
        List("wrong shape or dtype (expected -> found)", mismatched, m => $"{m.Name}: {m.Expected} -> {m.Found}");
        if (strict)
        {
            List("missing from the checkpoint", missing, n => $"{n}: {declared[n].DeclaredDType}{Tensor.ShapeString(declared[n].Shape)}");
            List("unexpected in the checkpoint", unexpected, n => n);
        }
        return sb.ToString().TrimEnd();
    }
}
