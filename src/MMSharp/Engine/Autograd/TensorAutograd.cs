using MMSharp.Engine.Autograd;

namespace MMSharp.Engine;

public sealed partial class Tensor
{
    bool _requiresGrad;

    /// <summary>The node that produced this tensor (null for leaves and for tensors made without grad).</summary>
    public Node? GradFn { get; internal set; }

    /// <summary>Accumulated gradient of a leaf (F32, same shape). Owned by this tensor; later backward calls add to it.</summary>
    public Tensor? Grad { get; set; }

    public bool IsLeaf => GradFn == null;

    /// <summary>Whether gradients flow to or through this tensor. Settable on leaves only.</summary>
    public bool RequiresGrad
    {
        get => _requiresGrad || GradFn != null;
        set
        {
            if (GradFn != null && !value) throw new InvalidOperationException($"{Describe()} is not a leaf; use Detach()");
            if (value && !DType.IsFloat()) throw new InvalidOperationException($"{Describe()}: only floating tensors can require grad");
            _requiresGrad = value;
        }
    }

    /// <summary>Same data, no history, not requiring grad.</summary>
    public Tensor Detach() => Alias();

    /// <summary>True when an op on these inputs must record a node.</summary>
    public static bool AnyRequiresGrad(Tensor a) => GradMode.Enabled && a.RequiresGrad;
    public static bool AnyRequiresGrad(Tensor a, Tensor b) => GradMode.Enabled && (a.RequiresGrad || b.RequiresGrad);
    public static bool AnyRequiresGrad(params ReadOnlySpan<Tensor?> ts)
    {
        if (!GradMode.Enabled) return false;
        foreach (var t in ts) if (t != null && t.RequiresGrad) return true;
        return false;
    }

    /// <summary>
    /// A reference to this tensor's data for use inside a backward function: its own storage
    /// reference (so the caller may dispose this tensor), no history, and registered in no scope.
    /// </summary>
    public Tensor SaveForBackward()
    {
        Storage.Retain();
        return new Tensor(Storage, DType, Shape, Strides, Offset, register: false) { Name = Name };
    }

    /// <summary>
    /// Records how to differentiate this (freshly computed) tensor. <paramref name="saved"/> must come
    /// from <see cref="SaveForBackward"/>; they are released after the node's backward.
    /// </summary>
    public Tensor WithGradFn(string opName, Tensor[] inputs, Tensor[] saved, BackwardFn backward)
    {
        if (GradFn != null) throw new InvalidOperationException($"{Describe()} already has a grad function");
        GradFn = new Node(opName, inputs, (int[])Shape.Clone(), saved, backward);
        return this;
    }

    /// <summary>Runs reverse-mode differentiation from this tensor. A non-scalar root needs <paramref name="gradient"/>.</summary>
    public void Backward(Tensor? gradient = null, bool retainGraph = false) => BackwardEngine.Run(this, gradient, retainGraph);

    /// <summary>Sets <see cref="Grad"/> to null (disposing it).</summary>
    public void ZeroGrad()
    {
        Grad?.Dispose();
        Grad = null;
    }
}
