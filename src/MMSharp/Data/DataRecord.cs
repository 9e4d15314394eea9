using System.Text.Json;
using MMSharp.Text;

namespace MMSharp.Data;

/// <summary>
/// One InternVL chat JSONL record (spec internvl.md 6.2): text-only, single image (<c>"image": "a.jpg"</c>),
/// multi-image (<c>"image": ["a.jpg", "b.jpg"]</c>) or video (<c>"video"</c>, optional <c>"clip": [start_s, end_s]</c>),
/// with <c>conversations</c> of <c>{"from": "system"|"human"|"gpt", "value": ...}</c>.
/// </summary>
public sealed record DataRecord(string? Id, IReadOnlyList<string> Images, string? Video, (double Start, double End)? Clip,
    IReadOnlyList<ConversationTurn> Conversations, int? Length, SourceLocation Source)
{
    /// <summary>True when the record names neither images nor a video.</summary>
    public bool IsTextOnly => Images.Count == 0 && Video == null;

    /// <summary>Parses one JSONL line; throws <see cref="BadRecordException"/> (MalformedJson, EmptyConversation, UnknownRole).</summary>
    public static DataRecord Parse(ReadOnlySpan<byte> line, SourceLocation source)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(line.ToArray()); }
        catch (JsonException e) { throw new BadRecordException(BadRecordKind.MalformedJson, "invalid JSON: " + e.Message); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new BadRecordException(BadRecordKind.MalformedJson, $"expected a JSON object, got {root.ValueKind}");
            string? id = root.TryGetProperty("id", out var idEl) ? idEl.ValueKind == JsonValueKind.String ? idEl.GetString() : idEl.GetRawText() : null;

            var images = new List<string>();
            if (root.TryGetProperty("image", out var img) && img.ValueKind != JsonValueKind.Null)
            {
                if (img.ValueKind == JsonValueKind.String) images.Add(img.GetString()!);
                else if (img.ValueKind == JsonValueKind.Array)
                    foreach (var e in img.EnumerateArray())
                    {
                        if (e.ValueKind != JsonValueKind.String) throw new BadRecordException(BadRecordKind.MalformedJson, "\"image\" list holds a non-string");
                        images.Add(e.GetString()!);
                    }
                else throw new BadRecordException(BadRecordKind.MalformedJson, $"\"image\" must be a string or a list, got {img.ValueKind}");
            }
            string? video = null;
            if (root.TryGetProperty("video", out var vid) && vid.ValueKind != JsonValueKind.Null)
            {
                if (vid.ValueKind != JsonValueKind.String) throw new BadRecordException(BadRecordKind.MalformedJson, "\"video\" must be a string");
                video = vid.GetString();
                if (images.Count > 0) throw new BadRecordException(BadRecordKind.MalformedJson, "a record has both \"image\" and \"video\"");
            }
            (double, double)? clip = null;
            if (root.TryGetProperty("clip", out var cl) && cl.ValueKind == JsonValueKind.Array && cl.GetArrayLength() == 2)
                clip = (cl[0].GetDouble(), cl[1].GetDouble());
            int? length = root.TryGetProperty("length", out var len) && len.ValueKind == JsonValueKind.Number && len.TryGetInt32(out int l) ? l : null;

            if (!root.TryGetProperty("conversations", out var conv) || conv.ValueKind != JsonValueKind.Array || conv.GetArrayLength() == 0)
                throw new BadRecordException(BadRecordKind.EmptyConversation, "no \"conversations\" (missing, not a list, or empty)");
            var turns = new List<ConversationTurn>();
            foreach (var t in conv.EnumerateArray())
            {
                if (t.ValueKind != JsonValueKind.Object || !t.TryGetProperty("from", out var from) || from.ValueKind != JsonValueKind.String
                    || !t.TryGetProperty("value", out var value) || value.ValueKind != JsonValueKind.String)
                    throw new BadRecordException(BadRecordKind.MalformedJson, "a conversation turn lacks string \"from\"/\"value\"");
                string role = from.GetString()!;
                if (role is not ("human" or "gpt" or "system"))
                    throw new BadRecordException(BadRecordKind.UnknownRole, $"unknown turn role '{role}' (expected system, human or gpt)");
                if (role == "system" && turns.Count > 0)
                    throw new BadRecordException(BadRecordKind.UnknownRole, "a \"system\" turn is only allowed first");
                turns.Add(new ConversationTurn(role, value.GetString()!));
            }
            if (!turns.Any(t => t.From == "gpt"))
                throw new BadRecordException(BadRecordKind.EmptyConversation, "the conversation has no \"gpt\" turn (nothing to learn)");
            if (!turns.Any(t => t.From == "human"))
                throw new BadRecordException(BadRecordKind.EmptyConversation, "the conversation has no \"human\" turn");
            return new DataRecord(id, images, video, clip, turns, length, source);
        }
    }
}
