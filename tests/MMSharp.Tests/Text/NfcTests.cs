using MMSharp.Text;

namespace MMSharp.Tests.Text;

public class NfcTests
{
    [Theory]
    [MemberData(nameof(TokenizerFixtures.NfcCases), MemberType = typeof(TokenizerFixtures))]
    public void Normalize_MatchesIcu(string input, string expected)
    {
        Assert.Equal(expected, Nfc.Normalize(input));
        Assert.Equal(expected, Nfc.Normalize(expected));   // idempotent
    }

    [Fact]
    public void Normalize_ReturnsSameInstance_WhenAlreadyNormalized()
    {
        string s = "Hello 世界 😀 é";
        Assert.Same(s, Nfc.Normalize(s));
    }

    [Fact]
    public void Normalize_PassesLoneSurrogatesThrough()
    {
        string s = "e\u0301\uD800x";
        Assert.Equal("é\uD800x", Nfc.Normalize(s));
    }
}
