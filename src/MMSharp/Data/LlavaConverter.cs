using System.Text;
using System.Text.Json;
using MMSharp.Vision;

namespace MMSharp.Data;

/// <summary>
/// <c>mmsharp data convert-llava</c>: LLaVA-Instruct JSON (a list of <c>{id, image, conversations: [{from, value}]}</c>) to
/// InternVL JSONL. Records whose image is missing under the images folder are reported (file:line of the record in the JSON)
/// and skipped; records without an image are written as text-only. <c>width</c>/<c>height</c> are added when the image
/// header can be read.
/// </summary>
public static class LlavaConverter
{
    /// <summary>Result counts.</summary>
    public sealed record Result(int Written, int Skipped, int TextOnly);

    /// <summary>Converts <paramref name="inputJson"/> to <paramref name="outputJsonl"/>.</summary>
    /// <param name="inputJson">LLaVA JSON file.</param>
    /// <param name="imagesDir">Folder the records' <c>image</c> paths are relative to.</param>
    /// <param name="outputJsonl">Output file (written atomically through a temporary file).</param>
    /// <param name="report">Skipped records.</param>
    /// <param name="readImageSize">Decode each image to record width/height (slower; off = only existence is checked).</param>
    public static Result Convert(string inputJson, string imagesDir, string outputJsonl, DataReport report, bool readImageSize = false)
    {
        byte[] data = File.ReadAllBytes(inputJson);
        var reader = new Utf8JsonReader(data, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip });
        if (!reader.Read() || reader.TokenType != JsonTokenType.StartArray)
            throw new InvalidDataException($"{inputJson}: a LLaVA instruction file is a JSON list of records");
        string tmp = outputJsonl + ".tmp";
        int written = 0, skipped = 0, textOnly = 0;
        long lineCounted = 1, countedUpTo = 0;
        using (var outStream = new StreamWriter(tmp, false, new UTF8Encoding(false)) { NewLine = "\n" })
        {
            while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
            {
                long start = reader.TokenStartIndex;
                lineCounted += data.AsSpan((int)countedUpTo, (int)(start - countedUpTo)).Count((byte)'\n');
                countedUpTo = start;
                var where = new SourceLocation(inputJson, lineCounted, start);
                using var doc = JsonDocument.ParseValue(ref reader);
                var rec = doc.RootElement;
                string? line = ConvertRecord(rec, imagesDir, where, report, readImageSize, out bool isText);
                if (line == null) { skipped++; continue; }
                outStream.WriteLine(line);
                written++;
                if (isText) textOnly++;
            }
        }
        File.Move(tmp, outputJsonl, overwrite: true);
        return new Result(written, skipped, textOnly);
    }

    private static string? ConvertRecord(JsonElement rec, string imagesDir, SourceLocation where, DataReport report, bool readSize, out bool textOnly)
    {
        textOnly = false;
        if (rec.ValueKind != JsonValueKind.Object) { report.Add(BadRecordKind.MalformedJson, where, "record is not a JSON object"); return null; }
        if (!rec.TryGetProperty("conversations", out var conv) || conv.ValueKind != JsonValueKind.Array || conv.GetArrayLength() == 0)
        {
            report.Add(BadRecordKind.EmptyConversation, where, "no conversations"); return null;
        }
        var turns = new List<(string From, string Value)>();
        foreach (var t in conv.EnumerateArray())
        {
            if (!t.TryGetProperty("from", out var f) || !t.TryGetProperty("value", out var v) || f.ValueKind != JsonValueKind.String || v.ValueKind != JsonValueKind.String)
            {
                report.Add(BadRecordKind.MalformedJson, where, "a turn lacks string from/value"); return null;
            }
            string from = f.GetString()!;
            if (from is not ("human" or "gpt" or "system")) { report.Add(BadRecordKind.UnknownRole, where, $"unknown role '{from}'"); return null; }
            turns.Add((from, v.GetString()!));
        }
        if (!turns.Any(t => t.From == "gpt")) { report.Add(BadRecordKind.EmptyConversation, where, "no gpt turn"); return null; }

        var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            if (rec.TryGetProperty("id", out var id)) { w.WritePropertyName("id"); id.WriteTo(w); }
            if (rec.TryGetProperty("image", out var img) && img.ValueKind == JsonValueKind.String)
            {
                string rel = img.GetString()!;
                string full = Path.Combine(imagesDir, rel);
                if (!File.Exists(full)) { report.Add(BadRecordKind.MissingImage, where, $"image not found: {full}"); return null; }
                int tags = turns.Where(t => t.From == "human").Sum(t => CountImageTags(t.Value));
                if (tags > 1) { report.Add(BadRecordKind.ImageTagMismatch, where, $"{tags} <image> tags for one image"); return null; }
                w.WriteString("image", rel);
                if (readSize)
                {
                    try { var im = RgbImage.Load(full); w.WriteNumber("width", im.Width); w.WriteNumber("height", im.Height); }
                    catch (Exception e) when (e is ImageDecodeException or InvalidDataException or NotSupportedException)
                    {
                        report.Add(BadRecordKind.UndecodableImage, where, $"cannot decode {full}: {e.Message}"); return null;
                    }
                }
            }
            else textOnly = true;
            w.WriteStartArray("conversations");
            foreach (var (from, value) in turns)
            {
                w.WriteStartObject();
                w.WriteString("from", from);
                w.WriteString("value", value);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    private static int CountImageTags(string s)
    {
        int n = 0;
        for (int at = s.IndexOf("<image>", StringComparison.Ordinal); at >= 0; at = s.IndexOf("<image>", at + 7, StringComparison.Ordinal)) n++;
        return n;
    }
}
