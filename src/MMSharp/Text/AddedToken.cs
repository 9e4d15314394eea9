namespace MMSharp.Text;

/// <summary>
/// A token matched verbatim in the raw text before pre-tokenization (HF <c>AddedToken</c>): chat markers such as
/// <c>&lt;|im_end|&gt;</c>, InternVL's <c>&lt;img&gt;</c>/<c>&lt;IMG_CONTEXT&gt;</c>, tool-call tags.
/// </summary>
/// <param name="Id">Token id (from the checkpoint's files).</param>
/// <param name="Content">Exact text matched.</param>
/// <param name="Special">Skipped by <c>Decode(..., skipSpecial: true)</c>.</param>
/// <param name="LStrip">The match also swallows whitespace on its left.</param>
/// <param name="RStrip">The match also swallows whitespace on its right.</param>
/// <param name="SingleWord">Only matched when not inside a word.</param>
/// <param name="Normalized">HF matches normalized tokens after normalization; for the NFC normaliser and the ASCII
/// contents of every token we know of this makes no difference, so it is recorded but not acted upon.</param>
public sealed record AddedToken(int Id, string Content, bool Special, bool LStrip = false, bool RStrip = false,
                                bool SingleWord = false, bool Normalized = false);

/// <summary>
/// Finds added tokens in text, leftmost first and longest first at the same position (HF's Aho-Corasick
/// <c>LeftmostLongest</c>), so added tokens are never split by BPE.
/// </summary>
internal sealed class AddedTokenSplitter
{
    // Candidates by first character, longest first.
    private readonly Dictionary<char, AddedToken[]> _byFirstChar;

    public AddedTokenSplitter(IEnumerable<AddedToken> tokens)
    {
        _byFirstChar = tokens.Where(t => t.Content.Length > 0)
            .GroupBy(t => t.Content[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Content.Length).ToArray());
    }

    /// <summary>
    /// Splits <paramref name="text"/> into segments; a segment is either plain text (token null) or one added token.
    /// With lstrip/rstrip the whitespace the token swallows is dropped from the neighbouring plain text.
    /// </summary>
    public List<(int Start, int Length, AddedToken? Token)> Split(string text)
    {
        var segments = new List<(int, int, AddedToken?)>();
        int plainStart = 0;
        int i = 0;
        while (i < text.Length)
        {
            AddedToken? hit = null;
            if (_byFirstChar.TryGetValue(text[i], out var candidates))
            {
                foreach (var t in candidates)
                {
                    if (t.Content.Length > text.Length - i) continue;
                    if (string.CompareOrdinal(text, i, t.Content, 0, t.Content.Length) != 0) continue;
                    if (t.SingleWord && !IsWordBoundary(text, i, i + t.Content.Length)) continue;
                    hit = t;
                    break;
                }
            }
            if (hit == null) { i++; continue; }

            int start = i, end = i + hit.Content.Length;
            if (hit.LStrip) while (start > plainStart && char.IsWhiteSpace(text[start - 1])) start--;
            if (hit.RStrip) while (end < text.Length && char.IsWhiteSpace(text[end])) end++;
            if (start > plainStart) segments.Add((plainStart, start - plainStart, null));
            segments.Add((start, end - start, hit));
            plainStart = i = end;
        }
        if (plainStart < text.Length) segments.Add((plainStart, text.Length - plainStart, null));
        return segments;
    }

    private static bool IsWordBoundary(string s, int start, int end)
    {
        bool Word(char c) => char.IsLetterOrDigit(c) || c == '_';
        return (start == 0 || !Word(s[start - 1])) && (end == s.Length || !Word(s[end]));
    }
}
