using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using MMSharp.Engine;
using MMSharp.Vision;

namespace MMSharp.Data;

/// <summary>
/// The demo's synthetic visual-question data: small PNG images (plain background) with 1-4 filled shapes (circle, square,
/// triangle, diamond) in 4 colours at 5 positions (left, right, top, bottom, center), and questions with a one-word
/// answer that needs the image: how many shapes, what colour (of the shape / of the &lt;shape&gt;), what shape (is this /
/// is &lt;colour&gt;), where the &lt;colour&gt; &lt;shape&gt; is. The shapes of one image all differ in shape and in colour, so
/// every question has one answer and names its target by one attribute. The attribute that picks the target is the last
/// word of every question ("Which shape is red?", not "What shape is the red shape?"): the small demo LLM learnt the
/// questions whose key word came last far sooner. Deterministic given the seed.
/// <para>
/// The canvas is a 3×3 grid of cells and each shape sits inside one cell (centre ± a small jitter). The demo model sees a
/// 42-pixel image as 6×6 patches, which pixel shuffle folds into 3×3 image tokens: one token per cell, so a shape is never
/// split across tokens.
/// </para>
/// </summary>
public static class ShapesDataset
{
    /// <summary>Shape names.</summary>
    public static readonly string[] Shapes = ["circle", "square", "triangle", "diamond"];
    /// <summary>Colour names and their RGB.</summary>
    public static readonly (string Name, byte R, byte G, byte B)[] Colors =
        [("red", 220, 30, 30), ("green", 30, 160, 50), ("blue", 30, 60, 220), ("yellow", 230, 200, 20)];
    /// <summary>
    /// Background colour: the ImageNet mean (0.485, 0.456, 0.406) × 255, which the model's normalisation maps to ≈ 0, so
    /// empty parts of the canvas add almost nothing to the patch embeddings and the shapes dominate the image tokens.
    /// </summary>
    public static readonly (byte R, byte G, byte B) Background = (124, 116, 104);

    /// <summary>Position names and their cell (column, row) on the 3×3 grid.</summary>
    public static readonly (string Name, int Col, int Row)[] Positions =
        [("left", 0, 1), ("right", 2, 1), ("top", 1, 0), ("bottom", 1, 2), ("center", 1, 1)];

    /// <summary>Side of the canvas the demo model is built for: 3 cells of 14 pixels (2×2 patches of 7 pixels each).</summary>
    public const int DefaultImageSize = 42;
    /// <summary>Count answers.</summary>
    public static readonly string[] CountWords = ["zero", "one", "two", "three", "four"];

    /// <summary>One drawn shape.</summary>
    public sealed record Item(int Shape, int Color, int Position, int Dx, int Dy);

    /// <summary>One question about an image, its one-word answer and its kind.</summary>
    public sealed record QA(string Question, string Answer, string Kind);

    /// <summary>One generated example: an image and one or more questions about it (a multi-turn conversation).</summary>
    public sealed record Example(RgbImage Image, IReadOnlyList<Item> Items, IReadOnlyList<QA> Questions)
    {
        public string Question => Questions[0].Question;
        public string Answer => Questions[0].Answer;
        public string Kind => Questions[0].Kind;
    }

    /// <summary>Every question template (with placeholders filled) and every answer: the text the tokenizer must cover.</summary>
    public static IEnumerable<string> CorpusTexts()
    {
        yield return "How many shapes are there?";
        yield return "What color is the shape?";
        yield return "What shape is this?";
        foreach (var s in Shapes) yield return $"What color is the {s}?";
        foreach (var c in Colors) yield return $"Which shape is {c.Name}?";
        foreach (var c in Colors) foreach (var s in Shapes) yield return $"Where is the {c.Name} {s}?";
        foreach (var a in Shapes.Concat(Colors.Select(c => c.Name)).Concat(Positions.Select(p => p.Name)).Concat(CountWords[1..])) yield return a;
    }

    /// <summary>All question kinds.</summary>
    public static readonly string[] Kinds = ["count", "color", "shape", "position"];

    /// <summary>Exact match of a generated reply with the answer (case, surrounding blanks and a final period ignored).</summary>
    public static bool IsCorrect(string generated, string answer) =>
        string.Equals(generated.Trim().TrimEnd('.').Trim(), answer, StringComparison.OrdinalIgnoreCase);

    /// <summary>Example <paramref name="index"/> of the stream seeded by <paramref name="seed"/>.</summary>
    /// <param name="seed">Stream seed.</param>
    /// <param name="index">Example number.</param>
    /// <param name="imageSize">Canvas side in pixels (the 3×3 cell geometry scales with it).</param>
    /// <param name="maxCount">Shapes per image at most (1-4).</param>
    /// <param name="kinds">Question kinds to draw from (default all of <see cref="Kinds"/>), to make the task easier or harder.</param>
    /// <param name="questions">Questions about the image (turns of one conversation); kinds are drawn without repetition
    /// while there are unused ones.</param>
    public static Example Make(ulong seed, long index, int imageSize = DefaultImageSize, int maxCount = 4, IReadOnlyList<string>? kinds = null,
        int questions = 1)
    {
        if (questions < 1) throw new ArgumentException($"ShapesDataset: questions per image must be >= 1, got {questions}");
        if (maxCount is < 1 or > 4) throw new ArgumentException($"ShapesDataset: maxCount must be 1..4, got {maxCount}");
        var rng = new Rng(seed * 0x9E3779B97F4A7C15UL + (ulong)index * 0xBF58476D1CE4E5B9UL + 1);
        int count = 1 + rng.NextInt(maxCount);
        var positions = Permutation(rng, Positions.Length);
        var shapes = Permutation(rng, Shapes.Length);
        var colors = Permutation(rng, Colors.Length);
        var items = new List<Item>();
        for (int k = 0; k < count; k++)
            items.Add(new Item(shapes[k], colors[k], positions[k], rng.NextInt(3) - 1, rng.NextInt(3) - 1));
        var image = Render(items, imageSize);

        // Question kinds drawn evenly; shapes and colours differ within an image, so every kind has one answer.
        kinds ??= Kinds;
        var qas = new List<QA>();
        var unused = new List<string>();
        for (int q = 0; q < questions; q++)
        {
            if (unused.Count == 0) unused.AddRange(kinds);
            int pick = rng.NextInt(unused.Count);
            string kind = unused[pick];
            unused.RemoveAt(pick);
            qas.Add(Ask(kind, items, items[rng.NextInt(items.Count)]));
        }
        return new Example(image, items, qas);
    }

    static QA Ask(string kind, List<Item> items, Item target) => kind switch
    {
        "color" => new(items.Count == 1 ? "What color is the shape?" : $"What color is the {Shapes[target.Shape]}?", Colors[target.Color].Name, kind),
        "shape" => new(items.Count == 1 ? "What shape is this?" : $"Which shape is {Colors[target.Color].Name}?", Shapes[target.Shape], kind),
        "count" => new("How many shapes are there?", CountWords[items.Count], kind),
        "position" => new($"Where is the {Colors[target.Color].Name} {Shapes[target.Shape]}?", Positions[target.Position].Name, kind),
        _ => throw new ArgumentException($"ShapesDataset: unknown question kind '{kind}' (known: {string.Join(", ", Kinds)})"),
    };

    /// <summary>A random permutation of 0…n−1 (Fisher–Yates).</summary>
    static int[] Permutation(Rng rng, int n)
    {
        var p = Enumerable.Range(0, n).ToArray();
        for (int i = n - 1; i > 0; i--) { int j = rng.NextInt(i + 1); (p[i], p[j]) = (p[j], p[i]); }
        return p;
    }

    /// <summary>
    /// Draws <paramref name="items"/> on a white square canvas (pixel centres tested against each shape). Sizes are in
    /// cell units: circle radius 0.34, square half-side 0.28, triangle ±0.34, diamond 0.38, jitter 0.04 — at most 0.46 from
    /// the cell centre, so a shape stays inside its cell and two shapes never touch.
    /// </summary>
    public static RgbImage Render(IReadOnlyList<Item> items, int imageSize = DefaultImageSize)
    {
        double cell = imageSize / 3.0;
        var px = new byte[imageSize * imageSize * 3];
        for (int i = 0; i < px.Length; i += 3) { px[i] = Background.R; px[i + 1] = Background.G; px[i + 2] = Background.B; }
        foreach (var it in items)
        {
            var (_, r, g, b) = Colors[it.Color];
            double cx = Positions[it.Position].Col + 0.5 + 0.04 * it.Dx, cy = Positions[it.Position].Row + 0.5 + 0.04 * it.Dy;
            for (int y = 0; y < imageSize; y++)
                for (int x = 0; x < imageSize; x++)
                {
                    double dx = (x + 0.5) / cell - cx, dy = (y + 0.5) / cell - cy;   // in cell units
                    bool inside = it.Shape switch
                    {
                        0 => dx * dx + dy * dy <= 0.34 * 0.34,
                        1 => Math.Abs(dx) <= 0.28 && Math.Abs(dy) <= 0.28,
                        2 => dy >= -0.34 && dy <= 0.34 && Math.Abs(dx) <= (dy + 0.34) / 0.68 * 0.36,
                        _ => Math.Abs(dx) + Math.Abs(dy) <= 0.38,
                    };
                    if (!inside) continue;
                    int o = (y * imageSize + x) * 3;
                    px[o] = r; px[o + 1] = g; px[o + 2] = b;
                }
        }
        return new RgbImage(imageSize, imageSize, px);
    }

    /// <summary>What <see cref="Generate"/> wrote.</summary>
    public sealed record Output(string TrainJsonl, string ValJsonl, string MetaJson, string ImagesDir, int TrainCount, int ValCount);

    /// <summary>
    /// Writes <c>train.jsonl</c>, <c>val.jsonl</c> (InternVL records with <c>image</c> relative to <paramref name="outDir"/>),
    /// <c>images/{train,val}_NNNNNN.png</c> and a <c>meta.json</c> naming the training file. Train and validation use disjoint
    /// example streams of the same seed. A training record asks <paramref name="trainQuestions"/> questions about its image
    /// (one conversation, loss on every answer); a held-out record asks one. <paramref name="trainSingleShare"/> of the
    /// training images (evenly spread) show a single shape: the easy cases from which shape and colour are learnt before
    /// the model can pick one shape out of several. Held-out images always follow the full 1…maxCount distribution.
    /// </summary>
    public static Output Generate(string outDir, int trainCount, int valCount, ulong seed, int imageSize = DefaultImageSize, int maxCount = 4,
        IReadOnlyList<string>? kinds = null, int trainQuestions = 1, double trainSingleShare = 0)
    {
        Directory.CreateDirectory(outDir);
        string images = Path.Combine(outDir, "images");
        Directory.CreateDirectory(images);
        string train = Path.Combine(outDir, "train.jsonl"), val = Path.Combine(outDir, "val.jsonl");
        WriteSplit(train, "train", trainCount, seed, 0, imageSize, maxCount, kinds, trainQuestions, trainSingleShare, outDir);
        WriteSplit(val, "val", valCount, seed, 1L << 40, imageSize, maxCount, kinds, 1, 0, outDir);
        string meta = Path.Combine(outDir, "meta.json");
        DatasetSpec.WriteMeta(meta, [new DatasetSpec("shapes_train", Path.GetFullPath(outDir), Path.GetFullPath(train), 1, false, 1, trainCount)]);
        return new Output(train, val, meta, images, trainCount, valCount);
    }

    private static void WriteSplit(string path, string split, int count, ulong seed, long indexBase, int imageSize, int maxCount,
        IReadOnlyList<string>? kinds, int questions, double singleShare, string outDir)
    {
        var options = new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        using var file = new StreamWriter(path, false, new UTF8Encoding(false)) { NewLine = "\n" };
        var buffer = new MemoryStream();
        for (int i = 0; i < count; i++)
        {
            bool single = (i * 0.6180339887498949) % 1.0 < singleShare;   // evenly spread share of one-shape images
            var ex = Make(seed, indexBase + i, imageSize, single ? 1 : maxCount, kinds, questions);
            string name = $"{split}_{i:D6}";
            string rel = $"images/{name}.png";
            PngEncoder.Save(ex.Image, Path.Combine(outDir, rel));
            buffer.SetLength(0);
            using (var w = new Utf8JsonWriter(buffer, options))
            {
                w.WriteStartObject();
                w.WriteString("id", name);
                w.WriteString("image", rel);
                w.WriteNumber("width", imageSize);
                w.WriteNumber("height", imageSize);
                w.WriteString("kind", ex.Kind);
                w.WriteNumber("shapes", ex.Items.Count);
                w.WriteStartArray("conversations");
                for (int q = 0; q < ex.Questions.Count; q++)
                {
                    w.WriteStartObject(); w.WriteString("from", "human"); w.WriteString("value", (q == 0 ? "<image>\n" : "") + ex.Questions[q].Question); w.WriteEndObject();
                    w.WriteStartObject(); w.WriteString("from", "gpt"); w.WriteString("value", ex.Questions[q].Answer); w.WriteEndObject();
                }
                w.WriteEndArray();
                w.WriteEndObject();
            }
            file.WriteLine(Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length));
        }
    }
}
