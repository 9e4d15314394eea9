using System.Text.RegularExpressions;
using MMSharp.Engine;
using MMSharp.Engine.IO;

namespace MMSharp.NN;

/// <summary>
/// A building block of a model, PyTorch style: it owns named <see cref="Parameter"/>s, <see cref="ModuleBuffer"/>s and
/// child modules, registered in its constructor in definition order. Dotted names follow the nesting, so
/// when models register children under the Hugging Face attribute names (<c>"self_attn"</c>, <c>"q_proj"</c>)
/// the names equal the checkpoint keys: <c>language_model.model.layers.0.self_attn.q_proj.weight</c>, and
/// loading needs no mapping table.
/// </summary>
/// <example>
/// <code>
/// sealed class Attention : Module
/// {
///     public readonly Linear QProj, KProj;
///     public Attention(int hidden, int kv)
///     {
///         QProj = RegisterModule("q_proj", new Linear(hidden, hidden));
///         KProj = RegisterModule("k_proj", new Linear(hidden, kv));
///     }
/// }
/// </code>
/// </example>
/// <remarks>
/// Forward methods are ordinary methods of the subclasses (their signatures differ from module to module).
/// Names order: a module's own parameters (in registration order), then each child's, depth first — the
/// order of PyTorch's <c>named_parameters()</c>.
/// </remarks>
public abstract class Module : IDisposable
{
    // One ordered table per kind; a name is unique across the three.
    readonly List<(string Name, Parameter P)> _parameters = new();
    readonly List<(string Name, ModuleBuffer B)> _buffers = new();
    readonly List<(string Name, Module M)> _children = new();
    readonly HashSet<string> _names = new(StringComparer.Ordinal);

    /// <summary>Training mode (dropout active, etc.). Set for the whole subtree by <see cref="Train"/> / <see cref="Eval"/>.</summary>
    public bool Training { get; private set; } = true;

    // ---------------------------------------------------------------- registration

    /// <summary>Registers <paramref name="module"/> as child <paramref name="name"/> and returns it.</summary>
    protected T RegisterModule<T>(string name, T module) where T : Module
    {
        ArgumentNullException.ThrowIfNull(module);
        ClaimName(name);
        if (ReferenceEquals(module, this) || module.NamedModules().Any(m => ReferenceEquals(m.Module, this)))
            throw new ArgumentException($"{GetType().Name}: registering '{name}' would make a cycle");
        _children.Add((name, module));
        return module;
    }

    /// <summary>Registers a declared parameter (no data until loaded or initialised).</summary>
    protected Parameter RegisterParameter(string name, int[] shape, DType dtype = DType.F32, bool requiresGrad = true) =>
        RegisterParameter(name, new Parameter(shape, dtype, requiresGrad));

    /// <summary>Registers a parameter holding (an alias of) <paramref name="value"/>; the caller keeps its reference.</summary>
    protected Parameter RegisterParameter(string name, Tensor value, bool requiresGrad = true) =>
        RegisterParameter(name, new Parameter(value, requiresGrad));

    /// <summary>Registers an existing parameter. Registering one parameter object under two names ties them.</summary>
    protected Parameter RegisterParameter(string name, Parameter p)
    {
        ArgumentNullException.ThrowIfNull(p);
        ClaimName(name);
        if (p.LocalName.Length == 0) p.LocalName = name;
        _parameters.Add((name, p));
        return p;
    }

    protected ModuleBuffer RegisterBuffer(string name, Tensor value, bool persistent = true) =>
        RegisterBuffer(name, new ModuleBuffer(value, persistent));

    protected ModuleBuffer RegisterBuffer(string name, int[] shape, DType dtype = DType.F32, bool persistent = true) =>
        RegisterBuffer(name, new ModuleBuffer(shape, dtype, persistent));

    protected ModuleBuffer RegisterBuffer(string name, ModuleBuffer b)
    {
        ArgumentNullException.ThrowIfNull(b);
        ClaimName(name);
        if (b.LocalName.Length == 0) b.LocalName = name;
        _buffers.Add((name, b));
        return b;
    }

    /// <summary>Unregisters child <paramref name="name"/> (e.g. a LoRA adapter folded into its base layer); false when absent.</summary>
    protected bool RemoveModule(string name)
    {
        int i = _children.FindIndex(c => c.Name == name);
        if (i < 0) return false;
        _children.RemoveAt(i);
        _names.Remove(name);
        return true;
    }

    void ClaimName(string name)
    {
        if (string.IsNullOrEmpty(name) || name.Contains('.'))
            throw new ArgumentException($"{GetType().Name}: '{name}' is not a valid member name (non-empty, no dots)");
        if (!_names.Add(name))
            throw new ArgumentException($"{GetType().Name}: '{name}' is already registered");
    }

    // ---------------------------------------------------------------- traversal

    /// <summary>Direct children with their local names.</summary>
    public IEnumerable<(string Name, Module Module)> NamedChildren() => _children;

    /// <summary>This module (name "" or <paramref name="prefix"/>) and every descendant, pre-order, each once.</summary>
    public IEnumerable<(string Name, Module Module)> NamedModules(string prefix = "")
    {
        var seen = new HashSet<Module>(ReferenceEqualityComparer.Instance);
        return Walk(this, prefix, seen);

        static IEnumerable<(string, Module)> Walk(Module m, string prefix, HashSet<Module> seen)
        {
            if (!seen.Add(m)) yield break;
            yield return (prefix, m);
            foreach (var (name, child) in m._children)
                foreach (var x in Walk(child, Join(prefix, name), seen))
                    yield return x;
        }
    }

    /// <summary>
    /// Every parameter with its full dotted name. A parameter registered under several names (tied weights)
    /// appears once, under its first name, unless <paramref name="includeTied"/>.
    /// </summary>
    public IEnumerable<(string Name, Parameter Parameter)> NamedParameters(string prefix = "", bool includeTied = false)
    {
        var seen = new HashSet<Parameter>(ReferenceEqualityComparer.Instance);
        foreach (var (modName, m) in NamedModules(prefix))
            foreach (var (name, p) in m._parameters)
                if (includeTied || seen.Add(p))
                    yield return (Join(modName, name), p);
    }

    public IEnumerable<Parameter> Parameters() => NamedParameters().Select(x => x.Parameter);

    /// <summary>Parameters the optimizer should update.</summary>
    public IEnumerable<Parameter> TrainableParameters() => Parameters().Where(p => p.RequiresGrad);

    public IEnumerable<(string Name, ModuleBuffer Buffer)> NamedBuffers(string prefix = "")
    {
        var seen = new HashSet<ModuleBuffer>(ReferenceEqualityComparer.Instance);
        foreach (var (modName, m) in NamedModules(prefix))
            foreach (var (name, b) in m._buffers)
                if (seen.Add(b))
                    yield return (Join(modName, name), b);
    }

    /// <summary>Total number of parameter elements (tied parameters counted once).</summary>
    public long NumParameters(bool trainableOnly = false) =>
        Parameters().Where(p => !trainableOnly || p.RequiresGrad).Sum(p => p.NumEl);

    /// <summary>The descendant at dotted <paramref name="path"/> ("" = this module).</summary>
    public Module GetSubmodule(string path)
    {
        Module m = this;
        if (path.Length == 0) return m;
        foreach (var part in path.Split('.'))
        {
            var next = m._children.FirstOrDefault(c => c.Name == part).M;
            m = next ?? throw new KeyNotFoundException($"{GetType().Name}: no submodule '{path}' ('{part}' not found in {m.GetType().Name})");
        }
        return m;
    }

    /// <summary>The parameter with full dotted name <paramref name="name"/>.</summary>
    public Parameter GetParameter(string name)
    {
        int dot = name.LastIndexOf('.');
        var owner = dot < 0 ? this : GetSubmodule(name[..dot]);
        string local = dot < 0 ? name : name[(dot + 1)..];
        return owner._parameters.FirstOrDefault(p => p.Name == local).P
            ?? throw new KeyNotFoundException($"{GetType().Name}: no parameter '{name}'");
    }

    static string Join(string prefix, string name) => prefix.Length == 0 ? name : prefix + "." + name;

    // ---------------------------------------------------------------- state dict

    /// <summary>
    /// Every state-dict entry with its slot: parameters (tied ones under each name) and persistent buffers.
    /// Works on a module whose parameters are only declared (shape approval against a checkpoint).
    /// </summary>
    public IEnumerable<(string Name, TensorSlot Slot)> StateSlots(string prefix = "")
    {
        foreach (var (modName, m) in NamedModules(prefix))
        {
            foreach (var (name, p) in m._parameters) yield return (Join(modName, name), p);
            foreach (var (name, b) in m._buffers) if (b.Persistent) yield return (Join(modName, name), b);
        }
    }

    /// <summary>
    /// Parameters and persistent buffers by full name, in <see cref="StateSlots"/> order. The tensors are the
    /// module's own (no copy): read or save them, do not dispose them.
    /// </summary>
    public OrderedDictionary<string, Tensor> StateDict(string prefix = "")
    {
        var d = new OrderedDictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, slot) in StateSlots(prefix)) d.Add(name, slot.Data);
        return d;
    }

    /// <summary>Loads tensors given by name (the caller keeps ownership of them). See <see cref="LoadStateDict(ICheckpointReader, bool, DTypePolicy, string, Func{string, string}, WeightArena)"/>.</summary>
    public LoadReport LoadStateDict(IReadOnlyDictionary<string, Tensor> state, bool strict = true,
        DTypePolicy dtypes = DTypePolicy.KeepStored, string prefix = "") =>
        StateDictLoader.Load(this, new DictionarySource(state), strict, dtypes, prefix);

    /// <summary>
    /// Loads every parameter and persistent buffer from <paramref name="checkpoint"/> (tensors stay memory-mapped
    /// when their dtype is kept). All names, shapes and dtypes are checked against the headers first, and ONE
    /// <see cref="StateDictMismatchException"/> lists every missing, unexpected, wrongly shaped and wrongly typed
    /// tensor; nothing is changed when it is thrown. With <paramref name="strict"/> false, missing and unexpected
    /// names are reported in the result instead (shape and dtype errors still throw).
    /// Only checkpoint names starting with <paramref name="prefix"/> are considered, with the prefix removed
    /// (load <c>vision_model</c> alone from a chat checkpoint with prefix <c>"vision_model."</c>).
    /// <paramref name="storedName"/>, when given, maps prefix + parameter name to the key stored in the checkpoint (a
    /// layout that names tensors differently, e.g. PEFT's <c>base_model.model.….base_layer.weight</c>); errors name the stored keys.
    /// With <paramref name="copyInto"/>, tensors whose dtype is kept are copied into that arena instead of staying mapped.
    /// </summary>
    public LoadReport LoadStateDict(ICheckpointReader checkpoint, bool strict = true,
        DTypePolicy dtypes = DTypePolicy.KeepStored, string prefix = "", Func<string, string>? storedName = null,
        WeightArena? copyInto = null) =>
        StateDictLoader.Load(this, new ReaderSource(checkpoint), strict, dtypes, prefix, storedName, copyInto);

    // ---------------------------------------------------------------- freezing and mode

    /// <summary>
    /// Sets <see cref="Parameter.RequiresGrad"/> false on the parameters whose name matches the glob
    /// <paramref name="pattern"/> (<c>*</c> any characters, dots included; <c>?</c> one character). A pattern
    /// also matches everything below a matching module path: <c>"vision_model"</c> freezes the whole vision
    /// tower, <c>"language_model.model.layers.*.mlp"</c> every MLP. Throws when nothing matches (typos).
    /// </summary>
    /// <returns>The number of parameters matched.</returns>
    public int Freeze(string pattern = "*") => SetRequiresGrad(NamePattern.Glob(pattern), pattern, false);

    /// <summary>Like <see cref="Freeze(string)"/> with a regular expression searched in the full name.</summary>
    public int Freeze(Regex pattern) => SetRequiresGrad(pattern, pattern.ToString(), false);

    /// <summary>The inverse of <see cref="Freeze(string)"/> (non-float parameters are skipped).</summary>
    public int Unfreeze(string pattern = "*") => SetRequiresGrad(NamePattern.Glob(pattern), pattern, true);

    public int Unfreeze(Regex pattern) => SetRequiresGrad(pattern, pattern.ToString(), true);

    int SetRequiresGrad(Regex re, string shown, bool value)
    {
        int n = 0;
        foreach (var (name, p) in NamedParameters())
        {
            if (!re.IsMatch(name)) continue;
            n++;
            if (!value || p.DType.IsFloat()) p.RequiresGrad = value;
        }
        if (n == 0) throw new ArgumentException($"{GetType().Name}: pattern '{shown}' matches no parameter");
        return n;
    }

    /// <summary>
    /// Gives every trainable parameter a writable contiguous copy in <paramref name="dtype"/> (the fp32 master
    /// weights an optimizer updates), leaving frozen ones as stored (BF16, memory-mapped). Call after
    /// loading and freezing. Returns the number of parameters converted.
    /// </summary>
    public int PrepareTrainableParameters(DType dtype = DType.F32)
    {
        int n = 0;
        foreach (var p in TrainableParameters())
        {
            if (p.DType == dtype && p.Data.IsContiguous && !p.Data.Storage.ReadOnly) continue;
            p.ConvertTo(dtype);
            n++;
        }
        return n;
    }

    /// <summary>Drops the gradients of every parameter.</summary>
    public void ZeroGrad()
    {
        foreach (var p in Parameters()) p.ZeroGrad();
    }

    /// <summary>Sets training mode on this module and every descendant.</summary>
    public Module Train(bool on = true)
    {
        foreach (var (_, m) in NamedModules()) m.Training = on;
        return this;
    }

    public Module Eval() => Train(false);

    // ---------------------------------------------------------------- lifetime and text

    /// <summary>Releases every parameter and buffer tensor of the subtree (memory maps are dropped with them).</summary>
    public virtual void Dispose()
    {
        foreach (var (_, m) in NamedModules())
        {
            foreach (var (_, p) in m._parameters) p.Release();
            foreach (var (_, b) in m._buffers) b.Release();
        }
        GC.SuppressFinalize(this);
    }

    /// <summary>One line per state-dict entry: name, dtype, shape, trainable flag.</summary>
    public string Summary()
    {
        var sb = new System.Text.StringBuilder();
        foreach (var (name, slot) in StateSlots())
        {
            sb.Append(name).Append(' ').Append(slot.DType).Append(Tensor.ShapeString(slot.Shape));
            if (slot is Parameter { RequiresGrad: true }) sb.Append(" trainable");
            if (!slot.IsMaterialized) sb.Append(" (not loaded)");
            sb.AppendLine();
        }
        return sb.ToString();
    }

    public override string ToString() => $"{GetType().Name} ({NumParameters():N0} parameters)";
}

/// <summary>Name patterns for <see cref="Module.Freeze(string)"/>.</summary>
internal static class NamePattern
{
    /// <summary>A glob over full dotted names that also matches everything below a matched module path.</summary>
    public static Regex Glob(string pattern)
    {
        if (string.IsNullOrEmpty(pattern)) throw new ArgumentException("empty name pattern");
        var body = Regex.Escape(pattern).Replace(@"\*", ".*").Replace(@"\?", ".");
        return new Regex($"^{body}(\\..*)?$", RegexOptions.CultureInvariant);
    }
}
