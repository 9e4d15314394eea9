namespace MMSharp.NN;

/// <summary>
/// Children numbered 0, 1, 2, ... (<c>layers.0.self_attn...</c>), like PyTorch's <c>nn.ModuleList</c> and
/// <c>nn.Sequential</c> (use <c>ModuleList&lt;Module&gt;</c> for mixed entries). Entries may be modules without parameters (activations) so that the numbering of
/// the ones with parameters matches the checkpoint (<c>mlp1.0</c>, <c>mlp1.1</c>, <c>mlp1.3</c>).
/// </summary>
public sealed class ModuleList<T> : Module, IReadOnlyList<T> where T : Module
{
    readonly List<T> _items = new();

    public ModuleList() { }

    public ModuleList(IEnumerable<T> items)
    {
        foreach (var m in items) Add(m);
    }

    /// <summary>Appends <paramref name="module"/> under the next index.</summary>
    public T Add(T module)
    {
        RegisterModule(_items.Count.ToString(System.Globalization.CultureInfo.InvariantCulture), module);
        _items.Add(module);
        return module;
    }

    public T this[int index] => _items[index];
    public int Count => _items.Count;
    public IEnumerator<T> GetEnumerator() => _items.GetEnumerator();
    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
}
