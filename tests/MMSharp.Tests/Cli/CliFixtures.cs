using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using MMSharp.Cli;
using MMSharp.Tests.IO;
using MMSharp.Tests.Models;

namespace MMSharp.Tests.Cli;

/// <summary>
/// Model directories for the command tests: a tiny checkpoint of tests/fixtures/internvl_tiny (vocab 300) plus slow
/// Qwen2 tokenizer files whose vocabulary is exactly [0, 300): the 256 byte symbols of the real Qwen2.5 vocabulary
/// (from tests/fixtures/tokenizer/qwen2_5_internvl_trimmed), its first applicable merges up to id 293, and the special
/// tokens at the ids the tiny config uses (<c>&lt;img&gt;</c> 295, <c>&lt;/img&gt;</c> 296, <c>&lt;IMG_CONTEXT&gt;</c> 297,
/// <c>&lt;|im_end|&gt;</c> 298, <c>&lt;|im_start|&gt;</c> 299, <c>&lt;|endoftext|&gt;</c> 294).
/// </summary>
static class CliFixtures
{
    public const int EndOfText = 294, ImStart = 299;

    static readonly (string Token, int Id)[] Specials =
    [
        ("<|endoftext|>", EndOfText), ("<img>", 295), ("</img>", 296), ("<IMG_CONTEXT>", InternVLFixtures.ImgContext),
        ("<|im_end|>", InternVLFixtures.Eos), ("<|im_start|>", ImStart),
    ];

    /// <summary>A temp copy of fixture <paramref name="name"/> with tokenizer files; <paramref name="editConfig"/> may change config.json.</summary>
    public static TempDir ModelDir(string name = "vit300m", Action<JsonObject>? editConfig = null)
    {
        var dir = InternVLFixtures.Copy(name);
        WriteTokenizer(dir.Path);
        if (editConfig != null)
        {
            var cfg = JsonNode.Parse(File.ReadAllText(dir.File("config.json")))!.AsObject();
            editConfig(cfg);
            File.WriteAllText(dir.File("config.json"), cfg.ToJsonString());
        }
        return dir;
    }

    static string TokenizerRoot()
    {
        string fixtures = Path.GetDirectoryName(InternVLFixtures.Root)!;
        return Path.Combine(fixtures, "tokenizer", "qwen2_5_internvl_trimmed");
    }

    public static void WriteTokenizer(string dir)
    {
        var full = JsonNode.Parse(File.ReadAllText(Path.Combine(TokenizerRoot(), "vocab.json")))!.AsObject();
        var vocab = new Dictionary<string, int>();
        foreach (var (tok, id) in full) if (id!.GetValue<int>() < 256) vocab[tok] = id.GetValue<int>();
        Assert.Equal(256, vocab.Count);
        var merges = new List<string>();
        foreach (var line in File.ReadLines(Path.Combine(TokenizerRoot(), "merges.txt")).Skip(1))
        {
            if (vocab.Count == EndOfText) break;
            var parts = line.Split(' ');
            if (parts.Length != 2 || !vocab.ContainsKey(parts[0]) || !vocab.ContainsKey(parts[1]) || vocab.ContainsKey(parts[0] + parts[1])) continue;
            vocab[parts[0] + parts[1]] = vocab.Count;
            merges.Add(line);
        }
        Assert.Equal(EndOfText, vocab.Count);
        File.WriteAllText(Path.Combine(dir, "vocab.json"), JsonSerializer.Serialize(vocab));
        File.WriteAllText(Path.Combine(dir, "merges.txt"), "#version: 0.2\n" + string.Join("\n", merges) + "\n", new UTF8Encoding(false));
        var added = new JsonObject();
        var decoder = new JsonObject();
        foreach (var (t, id) in Specials)
        {
            added[t] = id;
            decoder[id.ToString()] = new JsonObject { ["content"] = t, ["lstrip"] = false, ["normalized"] = false, ["rstrip"] = false, ["single_word"] = false, ["special"] = true };
        }
        File.WriteAllText(Path.Combine(dir, "added_tokens.json"), added.ToJsonString());
        var config = new JsonObject
        {
            ["added_tokens_decoder"] = decoder,
            ["eos_token"] = "<|im_end|>",
            ["pad_token"] = "<|endoftext|>",
            ["model_max_length"] = 32768,
            ["tokenizer_class"] = "Qwen2Tokenizer",
        };
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), config.ToJsonString());
    }

    /// <summary>Runs <c>mmsharp</c> in-process: exit code, stdout, stderr.</summary>
    public static (int Code, string Out, string Err) Run(params string[] args) => RunWithInput(null, args);

    public static (int Code, string Out, string Err) RunWithInput(string? stdin, params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = CliApp.Run(args, o, e, new StringReader(stdin ?? ""));
        return (code, o.ToString(), e.ToString());
    }

    /// <summary>An image of tests/fixtures/images/src.</summary>
    public static string Image(string name) => Path.Combine(Path.GetDirectoryName(InternVLFixtures.Root)!, "images", "src", name);
}
