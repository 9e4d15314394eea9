namespace MMSharp.Engine;

/// <summary>
/// Disposes, at its end, every tensor created on this thread while it was the innermost scope,
/// except the ones passed to <see cref="Keep"/>. Used around a training or decoding step so that
/// intermediate activations go back to the pool without a Dispose call for each.
/// Autograd keeps what backward needs with its own references, so ending a scope before
/// backward is safe.
/// </summary>
public sealed class TensorScope : IDisposable
{
    [ThreadStatic] static TensorScope? _current;
    [ThreadStatic] static int _suspended;

    readonly TensorScope? _parent;
    readonly int _savedSuspension;
    readonly List<Tensor> _tensors = new();
    readonly HashSet<Tensor> _kept = new(ReferenceEqualityComparer.Instance);
    bool _disposed;

    TensorScope(TensorScope? parent)
    {
        _parent = parent;
        _savedSuspension = _suspended;
    }

    /// <summary>Opens a scope; it collects tensors even inside a <see cref="Suspend"/> region.</summary>
    public static TensorScope Begin()
    {
        var scope = new TensorScope(_current);
        _suspended = 0;
        return _current = scope;
    }

    internal static void Register(Tensor t)
    {
        if (_suspended == 0) _current?._tensors.Add(t);
    }

    /// <summary>Keeps <paramref name="t"/> alive past this scope (moves it to the enclosing scope, if any).</summary>
    public Tensor Keep(Tensor t)
    {
        _kept.Add(t);
        _parent?._tensors.Add(t);
        return t;
    }

    /// <summary>Tensors created inside the returned region belong to no scope.</summary>
    public static IDisposable Suspend()
    {
        _suspended++;
        return new Resume();
    }

    sealed class Resume : IDisposable
    {
        bool _done;
        public void Dispose() { if (!_done) { _done = true; _suspended--; } }
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_current != this) throw new InvalidOperationException("tensor scopes must be disposed innermost first");
        _current = _parent;
        _suspended = _savedSuspension;
        foreach (var t in _tensors)
            if (!_kept.Contains(t)) t.Dispose();
        _tensors.Clear();
    }
}
