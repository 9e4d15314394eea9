using System.Text;

namespace MMSharp.Text;

/// <summary>
/// Incremental detokenizer for generation: <see cref="Push"/> one id at a time and get only the text that became
/// complete. A character whose UTF-8 bytes are spread over several tokens (emoji, rare CJK) is emitted once its last
/// byte arrives. Concatenating all returned strings plus <see cref="Flush"/> equals
/// <see cref="Qwen2Tokenizer.Decode"/> of the whole sequence.
/// </summary>
/// <remarks>
/// Only a trailing lead byte (C2..F4) whose sequence is still short is held back. Cutting there never changes how the
/// earlier bytes decode: a lead byte always starts a new maximal subpart, so U+FFFD replacement of any malformed
/// earlier bytes is the same as in the one-shot decode.
/// </remarks>
public sealed class StreamingDecoder
{
    private readonly Qwen2Tokenizer _tokenizer;
    private readonly bool _skipSpecial;
    private readonly List<byte> _pending = new();

    internal StreamingDecoder(Qwen2Tokenizer tokenizer, bool skipSpecial)
    {
        _tokenizer = tokenizer;
        _skipSpecial = skipSpecial;
    }

    /// <summary>Adds one token; returns the newly completed text (possibly empty).</summary>
    public string Push(int id)
    {
        _tokenizer.AppendBytes(id, _skipSpecial, _pending);
        int complete = CompletePrefixLength(_pending);
        return Take(complete);
    }

    /// <summary>Returns whatever is left, decoding an unfinished character as U+FFFD (end of generation).</summary>
    public string Flush() => Take(_pending.Count);

    private string Take(int count)
    {
        if (count == 0) return "";
        string text = Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_pending)[..count]);
        _pending.RemoveRange(0, count);
        return text;
    }

    /// <summary>Length of the prefix that ends before a trailing, still-incomplete UTF-8 sequence.</summary>
    internal static int CompletePrefixLength(List<byte> bytes)
    {
        int n = bytes.Count;
        // The lead byte of an incomplete sequence is at most 3 bytes from the end.
        for (int k = n - 1; k >= 0 && k >= n - 3; k--)
        {
            byte b = bytes[k];
            if ((b & 0xC0) == 0x80) continue;                     // continuation byte: keep looking for the lead
            int need = b >= 0xF0 && b <= 0xF4 ? 4 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xC2 && b <= 0xDF ? 2 : 1;
            return n - k < need ? k : n;
        }
        return n;
    }
}
