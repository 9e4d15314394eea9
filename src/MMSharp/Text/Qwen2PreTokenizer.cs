using System.Globalization;
using System.Text;

namespace MMSharp.Text;

/// <summary>
/// Qwen2's pre-tokenizer: splits normalised text into the pieces that BPE encodes independently. It is a hand-written
/// scanner equivalent to HF's <c>Split</c> pre-tokenizer (behaviour Isolated) with the Qwen2 pattern
/// <code>(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+</code>
/// </summary>
/// <remarks>
/// Why not System.Text.RegularExpressions: .NET regexes match UTF-16 code units, so a supplementary-plane letter
/// (U+20000, math alphanumerics) is two surrogates rather than one <c>\p{L}</c>, and the optional leading character of
/// alternative 2 could take half an emoji. Oniguruma (HF tokenizers), Python <c>regex</c> and JavaScript <c>/u</c>
/// regexes work on code points; this scanner does too, and it is several times faster than the regex.
/// Character classes: <c>\p{L}</c> = Lu Ll Lt Lm Lo, <c>\p{N}</c> = Nd Nl No, <c>\s</c> = Unicode White_Space
/// (= <see cref="char.IsWhiteSpace(char)"/>). The contraction alternative is matched ASCII case-insensitively.
/// Every alternative is evaluated in pattern order with the regex's greedy/backtracking outcome worked out by hand
/// (see the comments in <see cref="MatchAt"/>); every code point is covered by some alternative, so the pieces tile
/// the input.
/// </remarks>
public static class Qwen2PreTokenizer
{
    /// <summary>The pattern this scanner implements, exactly as it appears in Qwen2's tokenizer.json.</summary>
    public const string Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private const byte Other = 0, Letter = 1, Number = 2, Space = 3;

    // Class of every BMP code unit; surrogates get Other and are resolved per code point in ClassAt.
    private static readonly byte[] BmpClass = BuildBmpClass();

    /// <summary>Splits <paramref name="text"/> into pieces; each piece is reported as (start, length) in UTF-16 units.</summary>
    public static List<(int Start, int Length)> Split(ReadOnlySpan<char> text)
    {
        var pieces = new List<(int, int)>();
        int i = 0;
        while (i < text.Length)
        {
            int end = MatchAt(text, i);
            pieces.Add((i, end - i));
            i = end;
        }
        return pieces;
    }

    /// <summary>Convenience overload returning the pieces as strings.</summary>
    public static string[] SplitToStrings(string text)
    {
        var pieces = Split(text);
        var result = new string[pieces.Count];
        for (int k = 0; k < result.Length; k++) result[k] = text.Substring(pieces[k].Start, pieces[k].Length);
        return result;
    }

    /// <summary>End (exclusive) of the match that the pattern finds at position <paramref name="i"/>.</summary>
    internal static int MatchAt(ReadOnlySpan<char> s, int i)
    {
        int n = s.Length;
        byte c0 = ClassAt(s, i, out int len0);
        char ch0 = s[i];

        // 1. (?i:'s|'t|'re|'ve|'m|'ll|'d)
        if (ch0 == '\'' && i + 1 < n)
        {
            char a = (char)(s[i + 1] | 0x20);   // ASCII lower case; non-letters never equal the letters below
            if (a is 's' or 't' or 'm' or 'd') return i + 2;
            if (i + 2 < n)
            {
                char b = (char)(s[i + 2] | 0x20);
                if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
            }
        }

        // 2. [^\r\n\p{L}\p{N}]?\p{L}+ : a letter run, optionally preceded by one character that is not \r, \n or N.
        if (c0 == Letter) return SkipClass(s, i, Letter);
        if (c0 != Number && ch0 != '\r' && ch0 != '\n' && i + len0 < n && ClassAt(s, i + len0, out _) == Letter)
            return SkipClass(s, i + len0, Letter);

        // 3. \p{N} : a single digit (numbers are never merged across digits).
        if (c0 == Number) return i + len0;

        // 4. ' ?[^\s\p{L}\p{N}]+[\r\n]*' : symbols, optionally after one space, then trailing newlines.
        int j = -1;
        if (c0 == Other) j = i;
        else if (ch0 == ' ' && i + 1 < n && ClassAt(s, i + 1, out _) == Other) j = i + 1;
        if (j >= 0)
        {
            j = SkipClass(s, j, Other);
            while (j < n && (s[j] == '\r' || s[j] == '\n')) j++;
            return j;
        }

        // c0 is whitespace from here on. All whitespace is in the BMP, so code units = code points.
        int runEnd = i;
        int lastNewline = -1;
        while (runEnd < n && BmpClass[s[runEnd]] == Space)
        {
            if (s[runEnd] == '\r' || s[runEnd] == '\n') lastNewline = runEnd;
            runEnd++;
        }
        // 5. \s*[\r\n]+ : greedy \s* backs off to the LAST newline of the run; [\r\n]+ then takes just that one.
        if (lastNewline >= 0) return lastNewline + 1;
        // 6. \s+(?!\S) : the whole run at the end of text, else the run minus its last character (which stays to
        //    prefix the next word, e.g. "  x" -> " ", " x").
        if (runEnd == n) return runEnd;
        if (runEnd - 1 > i) return runEnd - 1;
        // 7. \s+
        return runEnd;
    }

    private static int SkipClass(ReadOnlySpan<char> s, int i, byte cls)
    {
        while (i < s.Length && ClassAt(s, i, out int len) == cls) i += len;
        return i;
    }

    private static byte ClassAt(ReadOnlySpan<char> s, int i, out int length)
    {
        char c = s[i];
        if (!char.IsSurrogate(c)) { length = 1; return BmpClass[c]; }
        if (char.IsHighSurrogate(c) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
        {
            length = 2;
            return ClassOf(CharUnicodeInfo.GetUnicodeCategory(char.ConvertToUtf32(c, s[i + 1])), false);
        }
        length = 1;   // lone surrogate: not L, N or whitespace
        return Other;
    }

    private static byte ClassOf(UnicodeCategory cat, bool whiteSpace)
    {
        if (whiteSpace) return Space;
        return cat switch
        {
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => Letter,
            UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => Number,
            _ => Other,
        };
    }

    private static byte[] BuildBmpClass()
    {
        var t = new byte[65536];
        for (int c = 0; c < 65536; c++)
            t[c] = char.IsSurrogate((char)c) ? Other
                : ClassOf(CharUnicodeInfo.GetUnicodeCategory((char)c), char.IsWhiteSpace((char)c));
        return t;
    }
}
