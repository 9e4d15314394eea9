using System.Text.Json;
using MMSharp.Text;

namespace MMSharp.Data;

/// <summary>
/// Per-record lengths for <c>--group-by-length</c>, computed as the official <c>LazySupervisedDataset</c> does: the record's
/// <c>"length"</c> field if present, else <c>len(tokenize('\n'.join(values))) + num_image_token * (max_dynamic_patch + use_thumbnail)</c>,
/// cached by the joined string's length in code points (an official quirk, kept so the grouping matches).
/// </summary>
public static class SampleLengths
{
    /// <summary>Lengths of every record of <paramref name="source"/> (a malformed record gets 0; it is reported when loaded).</summary>
    public static int[] Compute(IRecordSource source, Qwen2Tokenizer tokenizer, SampleBuilderOptions options)
    {
        var lengths = new int[source.Count];
        var cache = new Dictionary<(int Dataset, int StrLen), int>();
        for (int i = 0; i < source.Count; i++)
        {
            var line = source.Read(i);
            int maxPatch = source.Datasets[line.DatasetIndex].MaxDynamicPatch ?? options.MaxDynamicPatch;
            lengths[i] = Length(line.Bytes, tokenizer, options.NumImageToken * (maxPatch + (options.UseThumbnail ? 1 : 0)), cache, line.DatasetIndex);
        }
        return lengths;
    }

    private static int Length(byte[] json, Qwen2Tokenizer tokenizer, int imageTokens, Dictionary<(int, int), int> cache, int dataset)
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            var root = doc.RootElement;
            if (root.TryGetProperty("length", out var l) && l.TryGetInt32(out int given)) return given;
            var values = root.GetProperty("conversations").EnumerateArray().Select(t => t.GetProperty("value").GetString() ?? "");
            string joined = string.Join("\n", values);
            int strLen = 0;
            foreach (var _ in joined.EnumerateRunes()) strLen++;
            // The official cache is per dataset object and keyed by the string length only.
            if (cache.TryGetValue((dataset, strLen), out int cached)) return cached;
            int length = tokenizer.Encode(joined).Length + imageTokens;
            cache[(dataset, strLen)] = length;
            return length;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or KeyNotFoundException)
        {
            return 0;
        }
    }
}
