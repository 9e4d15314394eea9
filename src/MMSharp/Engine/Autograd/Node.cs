namespace MMSharp.Engine.Autograd;

/// <summary>
/// Backward function of one op application: maps the gradient of the op's output to gradients of
/// its inputs (null where an input needs none). Entries of the returned array line up with
/// <see cref="Inputs"/>; each gradient has its input's shape and is F32.
/// </summary>
public delegate Tensor?[] BackwardFn(Tensor gradOutput);

/// <summary>
/// One recorded op in the autograd graph. Holds the graph edges (<see cref="Inputs"/>) and the
/// tensors saved for backward (own references, released right after this node's backward runs).
/// </summary>
public sealed class Node
{
    public string Name { get; }
    /// <summary>The op's inputs: an input with a <see cref="Tensor.GradFn"/> routes its gradient there,
    /// a leaf with <see cref="Tensor.RequiresGrad"/> accumulates it in <see cref="Tensor.Grad"/>.</summary>
    public Tensor[] Inputs { get; private set; }
    public int[] OutputShape { get; }

    BackwardFn? _backward;
    Tensor[] _saved;
    int[] _savedVersions;

    // state used by the backward engine
    internal Tensor? PendingGrad;
    internal int Dependencies;

    internal Node(string name, Tensor[] inputs, int[] outputShape, Tensor[] saved, BackwardFn backward)
    {
        Name = name;
        Inputs = inputs;
        OutputShape = outputShape;
        _saved = saved;
        _savedVersions = new int[saved.Length];
        for (int i = 0; i < saved.Length; i++) _savedVersions[i] = saved[i].Storage.Version;
        _backward = backward;
    }

    public bool IsReleased => _backward == null;

    internal Tensor?[] Apply(Tensor gradOutput)
    {
        var fn = _backward ?? throw new InvalidOperationException(
            $"backward through '{Name}' a second time: the graph was freed by the first backward (pass retainGraph: true to keep it)");
        for (int i = 0; i < _saved.Length; i++)
            if (_saved[i].Storage.Version != _savedVersions[i])
                throw new InvalidOperationException(
                    $"{_saved[i].Describe()} saved for the backward of '{Name}' was modified in place after it was saved");
        return fn(gradOutput);
    }

    /// <summary>Frees saved tensors and drops the backward function and edges.</summary>
    internal void Release()
    {
        foreach (var t in _saved) t.Dispose();
        _saved = [];
        _backward = null;
        Inputs = [];
        PendingGrad?.Dispose();
        PendingGrad = null;
    }
}
