using System.Text.Json;
using MMSharp.Text;

namespace MMSharp.Tests.Text;

/// <summary>
/// The checked-in tokenizer fixtures (tests/fixtures/tokenizer, written by make_fixtures.mjs from transformers.js and the
/// real Qwen2.5 tokenizer, trimmed to the corpus).
/// </summary>
internal static class TokenizerFixtures
{
    public sealed record Item(string Name, string Text, int[] Ids, string Decoded, string DecodedSkipSpecial);

    public static readonly string Root = FindRoot();
    public static string TrimmedDir => Path.Combine(Root, "qwen2_5_internvl_trimmed");

    private static readonly Lazy<Dictionary<string, Item>> LazyItems = new(LoadItems);
    private static readonly Lazy<Qwen2Tokenizer> LazyFast = new(() => Qwen2Tokenizer.FromDirectory(TrimmedDir));
    private static readonly Lazy<Qwen2Tokenizer> LazySlow = new(() => Qwen2Tokenizer.FromSlowFiles(TrimmedDir));

    public static IReadOnlyDictionary<string, Item> Items => LazyItems.Value;
    public static Qwen2Tokenizer Fast => LazyFast.Value;
    public static Qwen2Tokenizer Slow => LazySlow.Value;

    /// <summary>(input, NFC by the JavaScript engine's ICU).</summary>
    public static IEnumerable<object[]> NfcCases()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Root, "expected_ids.json")));
        return doc.RootElement.GetProperty("nfc").EnumerateArray()
            .Select(e => new object[] { e.GetProperty("input").GetString()!, e.GetProperty("nfc").GetString()! }).ToList();
    }

    public static IEnumerable<object[]> ItemNames() => Items.Keys.Select(k => new object[] { k });

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "tests", "fixtures", "tokenizer");
            if (Directory.Exists(candidate)) return candidate;
        }
        throw new DirectoryNotFoundException("tests/fixtures/tokenizer not found above " + AppContext.BaseDirectory);
    }

    private static Dictionary<string, Item> LoadItems()
    {
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Root, "expected_ids.json")));
        var items = new Dictionary<string, Item>();
        foreach (var e in doc.RootElement.GetProperty("items").EnumerateArray())
        {
            var item = new Item(e.GetProperty("name").GetString()!, e.GetProperty("text").GetString()!,
                e.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray(),
                e.GetProperty("decoded").GetString()!, e.GetProperty("decoded_skip_special").GetString()!);
            items.Add(item.Name, item);
        }
        return items;
    }
}
