using System.Text;
using MMSharp.Data;
using MMSharp.Text;
using MMSharp.Vision;

namespace MMSharp.Tests.Data;

/// <summary>Temporary folders, a tiny tokenizer and small PNGs for the data tests.</summary>
internal static class DataTestUtil
{
    private static readonly Lazy<Qwen2Tokenizer> LazyTokenizer = new(() =>
    {
        string dir = NewTempDir("tok");
        TinyTokenizer.Write(dir, ShapesDataset.CorpusTexts());
        return Qwen2Tokenizer.FromDirectory(dir);
    });

    /// <summary>The shapes-dataset tokenizer.</summary>
    public static Qwen2Tokenizer Tokenizer => LazyTokenizer.Value;

    public static string NewTempDir(string tag)
    {
        string dir = Path.Combine(Path.GetTempPath(), "mmsharp-data-tests", tag + "-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        return dir;
    }

    public static void WriteLines(string path, IEnumerable<string> lines) =>
        File.WriteAllText(path, string.Concat(lines.Select(l => l + "\n")), new UTF8Encoding(false));

    public static string TextRecord(string id, string q = "What shape is this?", string a = "circle") =>
        $"{{\"id\":\"{id}\",\"conversations\":[{{\"from\":\"human\",\"value\":\"{q}\"}},{{\"from\":\"gpt\",\"value\":\"{a}\"}}]}}";

    public static string ImageRecord(string id, string image, string q = "<image>\\nWhat shape is this?", string a = "circle") =>
        $"{{\"id\":\"{id}\",\"image\":\"{image}\",\"conversations\":[{{\"from\":\"human\",\"value\":\"{q}\"}},{{\"from\":\"gpt\",\"value\":\"{a}\"}}]}}";

    public static void SavePng(string path, int w, int h, byte r, byte g, byte b)
    {
        var px = new byte[w * h * 3];
        for (int i = 0; i < w * h; i++) { px[3 * i] = r; px[3 * i + 1] = g; px[3 * i + 2] = b; }
        PngEncoder.Save(new RgbImage(w, h, px), path);
    }

    /// <summary>Small tiles and few context tokens so tests stay fast.</summary>
    public static SampleBuilderOptions SmallOptions(int maxSeq = 512) => new()
    {
        ImageSize = 28, NumImageToken = 4, MaxDynamicPatch = 4, MaxSeqLength = maxSeq, MinNumFrame = 2, MaxNumFrame = 4,
    };
}
