using MMSharp.Engine;
using MMSharp.Engine.Autograd;

namespace MMSharp.NN;

/// <summary>
/// A named slot of a <see cref="Module"/> that holds one tensor: a <see cref="Parameter"/> or a <see cref="ModuleBuffer"/>.
/// A slot may be declared (shape and dtype known) before it holds data, so a model can be built from
/// its config with no memory and then loaded; <see cref="Data"/> throws until then.
/// The slot owns its own reference to the tensor (<see cref="Set"/> aliases), so loading a memory-mapped
/// checkpoint tensor costs no copy and the caller keeps ownership of what it passed in.
/// </summary>
public abstract class TensorSlot
{
    Tensor? _data;
    int[] _shape;
    DType _dtype;

    private protected TensorSlot(int[] shape, DType dtype)
    {
        _shape = (int[])shape.Clone();
        _dtype = dtype;
    }

    /// <summary>The local name given at registration (the last part of the dotted name), for messages.</summary>
    public string LocalName { get; internal set; } = "";

    /// <summary>Shape of the held tensor (or the declared shape before it holds one).</summary>
    public int[] Shape => _data?.Shape ?? _shape;

    /// <summary>dtype of the held tensor (it may differ from the declared one after a load that kept the stored dtype).</summary>
    public DType DType => _data?.DType ?? _dtype;

    /// <summary>The dtype given at declaration.</summary>
    public DType DeclaredDType { get; private set; }

    public bool IsMaterialized => _data != null;

    public long NumEl => Tensor.Product(Shape);

    /// <summary>The held tensor. Do not dispose it; the slot owns it.</summary>
    public Tensor Data => _data ?? throw new InvalidOperationException(
        $"{Kind} '{LocalName}' {_dtype}{Tensor.ShapeString(_shape)} was declared but never loaded or initialised");

    private protected abstract string Kind { get; }

    /// <summary>Called after the held tensor changed, so the subclass can reapply its flags.</summary>
    private protected virtual void OnSet(Tensor t) { }

    internal void InitDeclared() => DeclaredDType = _dtype;

    /// <summary>
    /// Makes the slot hold (an alias of) <paramref name="value"/>; the previous tensor's reference is released.
    /// The shape must equal the slot's shape unless <paramref name="allowShapeChange"/>; the dtype may change
    /// (e.g. a BF16 weight replaced by an F32 master copy). The caller still owns <paramref name="value"/>.
    /// </summary>
    public void Set(Tensor value, bool allowShapeChange = false)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (!allowShapeChange && !value.Shape.AsSpan().SequenceEqual(Shape))
            throw new ArgumentException($"{Kind} '{LocalName}': cannot set {value.Describe()} into shape {Tensor.ShapeString(Shape)}");
        Tensor alias;
        using (TensorScope.Suspend()) alias = value.Alias(register: false); // lives as long as the module, not a scope
        alias.Name = value.Name ?? (LocalName.Length > 0 ? LocalName : null);
        var old = _data;
        _data = alias;
        _shape = (int[])alias.Shape.Clone();
        _dtype = alias.DType;
        OnSet(alias);
        old?.Dispose();
    }

    /// <summary>
    /// Replaces the held tensor by a writable contiguous copy in <paramref name="dtype"/> (e.g. a frozen,
    /// memory-mapped BF16 weight -> an F32 trainable master copy). Names and registration are unchanged.
    /// </summary>
    public void ConvertTo(DType dtype)
    {
        var src = Data;
        if (src.DType == dtype && src.IsContiguous && !src.Storage.ReadOnly) return;
        Tensor copy;
        using (GradMode.NoGrad())
        using (TensorScope.Suspend())
            copy = Ops.Clone(src, dtype);
        Set(copy);
        copy.Dispose();
    }

    /// <summary>Releases the held tensor; the slot returns to "declared" (shape and dtype remembered).</summary>
    public void Release()
    {
        var old = _data;
        _data = null;
        old?.Dispose();
    }

    public override string ToString() =>
        $"{Kind} '{LocalName}' {DType}{Tensor.ShapeString(Shape)}{(IsMaterialized ? "" : " (not loaded)")}";

    public static implicit operator Tensor(TensorSlot s) => s.Data;
}

/// <summary>
/// A learnable tensor of a <see cref="Module"/>. It keeps the dtype it is stored in (BF16 weights stay BF16
/// and stay memory-mapped when loaded from safetensors); <see cref="TensorSlot.ConvertTo"/> makes a trainable
/// copy. <see cref="RequiresGrad"/> is a property of the parameter and survives replacing its tensor.
/// Converts implicitly to <see cref="Tensor"/>, so model code can write <c>Ops.MatMul(x, Weight)</c>.
/// </summary>
public sealed class Parameter : TensorSlot
{
    bool _requiresGrad;

    /// <summary>A declared parameter with no data yet.</summary>
    public Parameter(int[] shape, DType dtype = DType.F32, bool requiresGrad = true) : base(shape, dtype)
    {
        InitDeclared();
        _requiresGrad = requiresGrad && dtype.IsFloat();
    }

    /// <summary>A parameter holding (an alias of) <paramref name="value"/>; the caller keeps its own reference.</summary>
    public Parameter(Tensor value, bool requiresGrad = true) : base(value.Shape, value.DType)
    {
        InitDeclared();
        _requiresGrad = requiresGrad && value.DType.IsFloat();
        Set(value);
    }

    private protected override string Kind => "parameter";

    /// <summary>Whether the optimizer updates this parameter and backward computes its gradient. Only float parameters can.</summary>
    public bool RequiresGrad
    {
        get => _requiresGrad;
        set
        {
            if (value && !DType.IsFloat()) throw new InvalidOperationException($"{this}: only floating parameters can require grad");
            _requiresGrad = value;
            if (IsMaterialized) Data.RequiresGrad = value;
        }
    }

    /// <summary>The accumulated gradient (F32, same shape), or null.</summary>
    public Tensor? Grad => IsMaterialized ? Data.Grad : null;

    public void ZeroGrad()
    {
        if (IsMaterialized) Data.ZeroGrad();
    }

    private protected override void OnSet(Tensor t)
    {
        if (_requiresGrad && !t.DType.IsFloat()) _requiresGrad = false;
        t.RequiresGrad = _requiresGrad;
    }
}

/// <summary>
/// A non-learnable tensor of a <see cref="Module"/> (running statistics, fixed tables). Persistent buffers
/// are part of the state dict; non-persistent ones (e.g. rotary <c>inv_freq</c>) are recomputed, not saved.
/// </summary>
public sealed class ModuleBuffer : TensorSlot
{
    public bool Persistent { get; }

    public ModuleBuffer(int[] shape, DType dtype = DType.F32, bool persistent = true) : base(shape, dtype)
    {
        InitDeclared();
        Persistent = persistent;
    }

    public ModuleBuffer(Tensor value, bool persistent = true) : base(value.Shape, value.DType)
    {
        InitDeclared();
        Persistent = persistent;
        Set(value);
    }

    private protected override string Kind => "buffer";
}
