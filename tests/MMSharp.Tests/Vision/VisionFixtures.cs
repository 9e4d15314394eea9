using System.Security.Cryptography;
using System.Text.Json;

namespace MMSharp.Tests.Vision;

/// <summary>
/// Access to tests/fixtures/images (generated once by make_fixtures.py with Debian's Pillow; CI only reads them).
/// </summary>
internal static class VisionFixtures
{
    static readonly Lazy<string> _dir = new(FindDir);
    static readonly Lazy<JsonElement> _manifest = new(() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(Dir, "expected.json"))).RootElement);

    public static string Dir => _dir.Value;
    public static JsonElement Manifest => _manifest.Value;
    public static string Src(string name) => Path.Combine(Dir, "src", name);
    public static string Expected(string name) => Path.Combine(Dir, "expected", name);

    static string FindDir()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
        {
            var p = Path.Combine(d.FullName, "tests", "fixtures", "images");
            if (File.Exists(Path.Combine(p, "expected.json"))) return p;
        }
        throw new DirectoryNotFoundException("tests/fixtures/images/expected.json not found above " + AppContext.BaseDirectory);
    }

    public static string Sha256(byte[] data) => Convert.ToHexStringLower(SHA256.HashData(data));

    public static IEnumerable<JsonElement> Items(string key) => Manifest.GetProperty(key).EnumerateArray();

    /// <summary>Describes how far <paramref name="actual"/> is from <paramref name="expected"/> (max |diff|, count, first position).</summary>
    public static string DiffReport(byte[] expected, byte[] actual, int width)
    {
        if (expected.Length != actual.Length) return $"length {actual.Length} != expected {expected.Length}";
        int max = 0, count = 0, first = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            int d = Math.Abs(expected[i] - actual[i]);
            if (d == 0) continue;
            count++; if (first < 0) first = i;
            max = Math.Max(max, d);
        }
        if (count == 0) return "identical";
        int px = first / 3;
        return $"max |diff| {max}, {count} of {expected.Length} samples differ, first at x={px % width} y={px / width} c={first % 3} (expected {expected[first]}, got {actual[first]})";
    }
}
