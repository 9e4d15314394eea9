using MMSharp.Text;

namespace MMSharp.Tests.Text;

/// <summary>Splits derived by hand from the Qwen2 pattern (alternatives tried in order, greedy with backtracking).</summary>
public class Qwen2PreTokenizerTests
{
    [Theory]
    [InlineData("Hello world", new[] { "Hello", " world" })]
    [InlineData("I'LL we're it's", new[] { "I", "'LL", " we", "'re", " it", "'s" })]
    [InlineData("'sam", new[] { "'s", "am" })]                       // contraction beats [^...]?\p{L}+
    [InlineData("12345", new[] { "1", "2", "3", "4", "5" })]          // \p{N} is a single digit
    [InlineData("x  y", new[] { "x", " ", " y" })]                   // \s+(?!\S) leaves one space for the word
    [InlineData("x   ", new[] { "x", "   " })]                       // trailing run at end of text
    [InlineData("a\n\n  b", new[] { "a", "\n\n", " ", " b" })]       // \s*[\r\n]+ stops after the last newline
    [InlineData("a \n b", new[] { "a", " \n", " b" })]
    [InlineData("\thello", new[] { "\thello" })]                     // any non-\r\n non-L/N char may lead a word
    [InlineData("\nhello", new[] { "\n", "hello" })]
    [InlineData("x ...\n\ny", new[] { "x", " ...\n\n", "y" })]       // symbols keep trailing newlines
    [InlineData("😀abc", new[] { "😀abc" })]                          // one code point (two UTF-16 units) leads the word
    [InlineData("a😀😀b", new[] { "a", "😀😀", "b" })]
    [InlineData("a𠀀b", new[] { "a𠀀b" })]                            // supplementary-plane letter is \p{L}
    [InlineData("ab2cd", new[] { "ab", "2", "cd" })]
    [InlineData(" \u00a0x", new[] { " ", "\u00a0x" })]
    [InlineData("", new string[0])]
    public void Split_FollowsPatternSemantics(string text, string[] expected)
    {
        Assert.Equal(expected, Qwen2PreTokenizer.SplitToStrings(text));
    }

    [Fact]
    public void Split_PiecesTileTheInput_ForArbitraryText()
    {
        var rng = new Random(7);
        string alphabet = "ab Z9\n\r\t'.,😀𠀀é\u3000\u00a0-_";
        for (int trial = 0; trial < 200; trial++)
        {
            var chars = new System.Text.StringBuilder();
            var elements = System.Globalization.StringInfo.GetTextElementEnumerator(alphabet);
            var list = new List<string>();
            while (elements.MoveNext()) list.Add((string)elements.Current);
            int len = rng.Next(0, 40);
            for (int k = 0; k < len; k++) chars.Append(list[rng.Next(list.Count)]);
            string text = chars.ToString();
            var pieces = Qwen2PreTokenizer.SplitToStrings(text);
            Assert.Equal(text, string.Concat(pieces));
            Assert.All(pieces, p => Assert.NotEmpty(p));
        }
    }

    /// <summary>
    /// On BMP-only text (no surrogates) code units are code points, so .NET's own regex engine running the literal
    /// Qwen2 pattern is an independent oracle for the hand-written scanner.
    /// </summary>
    [Fact]
    public void Split_EqualsDotNetRegex_OnRandomBmpText()
    {
        var regex = new System.Text.RegularExpressions.Regex(Qwen2PreTokenizer.Pattern);
        // Letters (Latin, Greek, CJK, Hangul, modifier), digits of several kinds, whitespace kinds, symbols, apostrophes,
        // contraction letters in both cases.
        string alphabet = "asStTrReEvVmMlLdDxZ\u00e9\u03a9\u4e2d\uac00\u02b0" + "09\u0663\u2460\u2167" +
                          " \t\n\r\u00a0\u3000\u2028\u000b" + "'.,!?-_()\u2014\u00b7\uff0c\u0301";
        var rng = new Random(12345);
        var sb = new System.Text.StringBuilder();
        for (int trial = 0; trial < 3000; trial++)
        {
            sb.Clear();
            int len = rng.Next(0, 24);
            for (int k = 0; k < len; k++) sb.Append(alphabet[rng.Next(alphabet.Length)]);
            string text = sb.ToString();
            var expected = regex.Matches(text).Select(m => m.Value).ToArray();
            Assert.True(string.Concat(expected) == text, "regex does not tile: " + Escape(text));
            var actual = Qwen2PreTokenizer.SplitToStrings(text);
            Assert.True(expected.SequenceEqual(actual),
                $"text {Escape(text)}: regex [{string.Join("|", expected.Select(Escape))}] scanner [{string.Join("|", actual.Select(Escape))}]");
        }
    }

    private static string Escape(string s) =>
        string.Concat(s.Select(c => c < 128 && !char.IsControl(c) ? c.ToString() : $"\\u{(int)c:x4}"));
}
