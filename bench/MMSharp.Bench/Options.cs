namespace MMSharp.Bench;

/// <summary>--name value pairs; a filter option given several times (or comma-separated) keeps each value.</summary>
sealed class Options
{
    readonly Dictionary<string, List<string>> _values = new();

    public static Options Parse(string[] args)
    {
        var o = new Options();
        for (int i = 0; i < args.Length; i++)
        {
            if (!args[i].StartsWith("--") || i + 1 >= args.Length) throw new ArgumentException($"expected --name value, got '{args[i]}'");
            string name = args[i][2..];
            if (!o._values.TryGetValue(name, out var list)) o._values[name] = list = [];
            list.AddRange(args[++i].Split(',', StringSplitOptions.RemoveEmptyEntries));
        }
        return o;
    }

    /// <summary>True when the option is absent or lists <paramref name="value"/>.</summary>
    public bool Allows(string name, object value) => !_values.TryGetValue(name, out var l) || l.Contains(value.ToString()!);

    public string? Get(string name) => _values.TryGetValue(name, out var l) ? l[^1] : null;

    /// <summary>Every value given for the option (empty when absent).</summary>
    public IReadOnlyList<string> AllValues(string name) => _values.TryGetValue(name, out var l) ? l : [];

    public int[] Ints(string name, int[] defaults) => _values.TryGetValue(name, out var l) ? l.Select(int.Parse).ToArray() : defaults;
}
