using System.Text.Json;

namespace MMSharp.Generation;

/// <summary>
/// The decoding settings of HF transformers' <c>GenerationConfig</c> that InternVL's <c>chat()</c> uses.
/// The record's defaults are transformers' class defaults (do_sample false, temperature 1, top_k 50, top_p 1,
/// repetition_penalty 1) except <see cref="MaxNewTokens"/> = 1024, the value every InternVL model-card example passes.
/// </summary>
/// <remarks>
/// InternVL <c>chat(tokenizer, pixel_values, question, generation_config)</c> takes the dict the caller passes and sets
/// <c>eos_token_id</c> to the template separator <c>&lt;|im_end|&gt;</c> (151645 for InternVL3), overriding the LLM's
/// own config (spec 5.4). The InternVL3 model card passes <c>dict(max_new_tokens=1024, do_sample=True)</c>
/// (<see cref="InternVL3ModelCard"/>), the GitHub README <c>do_sample=False</c> (<see cref="InternVLChat"/>, greedy:
/// the only mode whose text can be compared with Python's, see <see cref="Sampler"/>).
/// </remarks>
public sealed record GenerationConfig
{
    /// <summary>Most tokens to generate after the prompt (<c>max_new_tokens</c>).</summary>
    public int MaxNewTokens { get; init; } = 1024;
    /// <summary>Sample (true) or take the argmax (false) (<c>do_sample</c>).</summary>
    public bool DoSample { get; init; }
    /// <summary>Logits are divided by this before top-k/top-p when sampling; 1 = off; 0 = greedy.</summary>
    public double Temperature { get; init; } = 1.0;
    /// <summary>Keep the k highest scores when sampling (ties with the k-th kept); 0 = off.</summary>
    public int TopK { get; init; } = 50;
    /// <summary>Nucleus sampling mass; 1 = off.</summary>
    public double TopP { get; init; } = 1.0;
    /// <summary>CTRL repetition penalty on tokens already in the sequence; 1 = off.</summary>
    public double RepetitionPenalty { get; init; } = 1.0;
    /// <summary>Generation stops after any of these tokens (it is kept in the output, as in HF).</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];
    /// <summary><c>bos_token_id</c> from generation_config.json (informational).</summary>
    public int? BosTokenId { get; init; }
    /// <summary><c>pad_token_id</c> (used for left padding in batch_chat).</summary>
    public int? PadTokenId { get; init; }

    /// <summary>InternVL3's <c>&lt;|im_end|&gt;</c>, the stop token chat() sets.</summary>
    public const int InternVL3ImEndId = 151645;

    /// <summary>Greedy chat as in the GitHub README: <c>dict(max_new_tokens=1024, do_sample=False)</c>, eos &lt;|im_end|&gt;.</summary>
    public static GenerationConfig InternVLChat { get; } = new() { EosTokenIds = [InternVL3ImEndId] };

    /// <summary>The InternVL3 model card: <c>dict(max_new_tokens=1024, do_sample=True)</c> with HF's sampling defaults
    /// (temperature 1, top_k 50, top_p 1), eos &lt;|im_end|&gt;.</summary>
    public static GenerationConfig InternVL3ModelCard { get; } = InternVLChat with { DoSample = true };

    /// <summary>True when the next token is the argmax: do_sample false or temperature 0.</summary>
    public bool IsGreedy => !DoSample || Temperature == 0;

    /// <summary>Whether <paramref name="token"/> ends generation.</summary>
    public bool IsEos(int token)
    {
        for (int i = 0; i < EosTokenIds.Count; i++) if (EosTokenIds[i] == token) return true;
        return false;
    }

    /// <summary>Throws <see cref="ArgumentException"/> naming the field when a value is outside what HF accepts.</summary>
    public GenerationConfig Validate()
    {
        if (MaxNewTokens < 0) throw new ArgumentException($"GenerationConfig: max_new_tokens must be >= 0, got {MaxNewTokens}");
        if (!(Temperature >= 0) || double.IsInfinity(Temperature)) throw new ArgumentException($"GenerationConfig: temperature must be >= 0, got {Temperature}");
        if (TopK < 0) throw new ArgumentException($"GenerationConfig: top_k must be >= 0, got {TopK}");
        if (!(TopP >= 0 && TopP <= 1)) throw new ArgumentException($"GenerationConfig: top_p must be in [0, 1], got {TopP}");
        if (!(RepetitionPenalty > 0) || double.IsInfinity(RepetitionPenalty))
            throw new ArgumentException($"GenerationConfig: repetition_penalty must be a positive number, got {RepetitionPenalty}");
        return this;
    }

    /// <summary>
    /// Reads an HF <c>generation_config.json</c>. Keys not in the file (or null) keep the values of
    /// <paramref name="defaults"/> (the record defaults when null); <c>eos_token_id</c> may be a number or a list.
    /// Unknown keys are ignored, as HF keeps them as attributes that generate() does not read for these processors.
    /// </summary>
    /// <exception cref="ArgumentException">A known key has the wrong JSON type or an invalid value (message names the key and file).</exception>
    public static GenerationConfig Load(string path, GenerationConfig? defaults = null)
    {
        try { return Parse(File.ReadAllText(path), defaults); }
        catch (ArgumentException e) { throw new ArgumentException($"{Path.GetFileName(path)}: {e.Message}", e); }
        catch (JsonException e) { throw new ArgumentException($"{Path.GetFileName(path)}: not valid JSON ({e.Message})", e); }
    }

    /// <summary>As <see cref="Load"/>, from JSON text.</summary>
    public static GenerationConfig Parse(string json, GenerationConfig? defaults = null)
    {
        var c = defaults ?? new GenerationConfig();
        using var doc = JsonDocument.Parse(json);
        if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new ArgumentException("generation config must be a JSON object");
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            if (p.Value.ValueKind == JsonValueKind.Null) continue;
            c = p.Name switch
            {
                "max_new_tokens" => c with { MaxNewTokens = Int(p) },
                "do_sample" => c with { DoSample = Bool(p) },
                "temperature" => c with { Temperature = Num(p) },
                "top_k" => c with { TopK = Int(p) },
                "top_p" => c with { TopP = Num(p) },
                "repetition_penalty" => c with { RepetitionPenalty = Num(p) },
                "eos_token_id" => c with { EosTokenIds = IntOrList(p) },
                "bos_token_id" => c with { BosTokenId = Int(p) },
                "pad_token_id" => c with { PadTokenId = Int(p) },
                _ => c,
            };
        }
        return c.Validate();
    }

    static int Int(JsonProperty p) => p.Value.ValueKind == JsonValueKind.Number && p.Value.TryGetInt32(out int v) ? v
        : throw new ArgumentException($"generation config key '{p.Name}' must be an integer, got {p.Value.GetRawText()}");

    static double Num(JsonProperty p) => p.Value.ValueKind == JsonValueKind.Number ? p.Value.GetDouble()
        : throw new ArgumentException($"generation config key '{p.Name}' must be a number, got {p.Value.GetRawText()}");

    static bool Bool(JsonProperty p) => p.Value.ValueKind switch
    {
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => throw new ArgumentException($"generation config key '{p.Name}' must be true or false, got {p.Value.GetRawText()}"),
    };

    static int[] IntOrList(JsonProperty p)
    {
        if (p.Value.ValueKind == JsonValueKind.Number) return [Int(p)];
        if (p.Value.ValueKind != JsonValueKind.Array)
            throw new ArgumentException($"generation config key '{p.Name}' must be an integer or a list of integers, got {p.Value.GetRawText()}");
        var ids = new List<int>();
        foreach (var e in p.Value.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out int v))
                throw new ArgumentException($"generation config key '{p.Name}' must hold integers, got {e.GetRawText()}");
            ids.Add(v);
        }
        return ids.ToArray();
    }
}
