using System.CommandLine;
using MMSharp.Data;

namespace MMSharp.Cli;

/// <summary><c>mmsharp data make-shapes</c> and <c>mmsharp data convert-llava</c>.</summary>
static class DataCommands
{
    public static Command Build()
    {
        var data = new Command("data", "Prepare training data (synthetic shapes, LLaVA conversion).");

        var outDir = new Option<string>("--out") { Description = "Output directory (train.jsonl, val.jsonl, meta.json, images/).", Required = true };
        var train = new Option<int>("--train") { Description = "Training examples.", DefaultValueFactory = _ => 4000 };
        var val = new Option<int>("--val") { Description = "Held-out examples.", DefaultValueFactory = _ => 200 };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the example streams.", DefaultValueFactory = _ => 1 };
        var single = new Option<double>("--single-share") { Description = "Share of training images that show one shape (0-1; the demo uses 0.5).", DefaultValueFactory = _ => 0 };
        var questions = new Option<int>("--questions") { Description = "Questions per training image (turns of one conversation; held-out records ask one).", DefaultValueFactory = _ => 1 };
        var shapes = new Command("make-shapes", "Render a synthetic visual-question dataset (shapes, colours, positions, counts) as InternVL JSONL + PNG.");
        foreach (var o in new Option[] { outDir, train, val, seed, questions, single }) shapes.Options.Add(o);
        shapes.SetAction(r =>
        {
            var o = ShapesDataset.Generate(r.GetValue(outDir)!, r.GetValue(train), r.GetValue(val), r.GetValue(seed), trainQuestions: r.GetValue(questions), trainSingleShare: r.GetValue(single));
            Console.WriteLine($"make-shapes: {o.TrainCount} train ({o.TrainJsonl}), {o.ValCount} val ({o.ValJsonl}), meta {o.MetaJson}");
            return 0;
        });
        data.Subcommands.Add(shapes);

        var input = new Option<string>("--in") { Description = "LLaVA-Instruct JSON (e.g. llava_instruct_150k.json).", Required = true };
        var images = new Option<string>("--images") { Description = "Directory holding the images the records name.", Required = true };
        var output = new Option<string>("--out") { Description = "InternVL JSONL to write.", Required = true };
        var llava = new Command("convert-llava", "Convert LLaVA-Instruct JSON to InternVL JSONL; records whose image is missing are reported and skipped.");
        foreach (var o in new Option[] { input, images, output }) llava.Options.Add(o);
        llava.SetAction(r =>
        {
            var report = new DataReport { OnDetailed = m => Console.Error.WriteLine($"skipped: {m}") };
            var res = LlavaConverter.Convert(r.GetValue(input)!, r.GetValue(images)!, r.GetValue(output)!, report);
            Console.WriteLine($"convert-llava: {res.Written} written ({res.TextOnly} text-only), {res.Skipped} skipped");
            if (report.Total > 0) Console.WriteLine(report);
            return 0;
        });
        data.Subcommands.Add(llava);
        return data;
    }
}
