using MMSharp.Generation;

namespace MMSharp.Tests.Generation;

public sealed class GenerationConfigTests
{
    [Fact]
    public void Defaults_AreHfDefaultsWithModelCardMaxNewTokens()
    {
        var c = new GenerationConfig();
        Assert.Equal((1024, false, 1.0, 50, 1.0, 1.0), (c.MaxNewTokens, c.DoSample, c.Temperature, c.TopK, c.TopP, c.RepetitionPenalty));
        Assert.True(c.IsGreedy);
        Assert.Equal(new[] { 151645 }, GenerationConfig.InternVLChat.EosTokenIds);
        Assert.True(GenerationConfig.InternVL3ModelCard.DoSample);
        Assert.True(GenerationConfig.InternVL3ModelCard.IsEos(151645));
        Assert.False(GenerationConfig.InternVL3ModelCard.IsEos(151643));
    }

    [Fact]
    public void Parse_ReadsHfGenerationConfigJson_KeepingDefaultsForMissingKeys()
    {
        // The InternVL3 -hf conversions ship this file (spec 5.4).
        var c = GenerationConfig.Parse("""{"_from_model_config": true, "bos_token_id": 151643, "eos_token_id": 151645, "transformers_version": "4.52.0"}""");
        Assert.Equal(new[] { 151645 }, c.EosTokenIds);
        Assert.Equal(151643, c.BosTokenId);
        Assert.Equal(50, c.TopK);
        Assert.False(c.DoSample);
    }

    [Fact]
    public void Parse_ReadsSamplingKeys_EosList_AndNulls()
    {
        var c = GenerationConfig.Parse("""
            {"do_sample": true, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "repetition_penalty": 1.05,
             "max_new_tokens": 64, "eos_token_id": [151645, 151643], "pad_token_id": 151643, "max_length": null}
            """, GenerationConfig.InternVLChat);
        Assert.Equal((64, true, 0.7, 20, 0.8, 1.05), (c.MaxNewTokens, c.DoSample, c.Temperature, c.TopK, c.TopP, c.RepetitionPenalty));
        Assert.Equal(new[] { 151645, 151643 }, c.EosTokenIds);
        Assert.Equal(151643, c.PadTokenId);
    }

    [Fact]
    public void Load_ThrowsNamingFileAndKey_WhenTypeIsWrong()
    {
        string path = Path.Combine(Path.GetTempPath(), $"mmsharp-genconfig-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, """{"top_k": "fifty"}""");
        try
        {
            var e = Assert.Throws<ArgumentException>(() => GenerationConfig.Load(path));
            Assert.Contains(Path.GetFileName(path), e.Message);
            Assert.Contains("top_k", e.Message);
        }
        finally { File.Delete(path); }
    }

    [Theory]
    [InlineData("""{"top_p": 1.5}""", "top_p")]
    [InlineData("""{"temperature": -1}""", "temperature")]
    [InlineData("""{"repetition_penalty": 0}""", "repetition_penalty")]
    [InlineData("""{"eos_token_id": "x"}""", "eos_token_id")]
    public void Parse_Throws_WhenValueIsInvalid(string json, string key)
    {
        var e = Assert.Throws<ArgumentException>(() => GenerationConfig.Parse(json));
        Assert.Contains(key, e.Message);
    }
}
