using System.Diagnostics;
using System.Text.Json;
using MMSharp.Cli;
using MMSharp.Data;
using MMSharp.Models.InternVL;
using MMSharp.Training;
using Xunit.Abstractions;

namespace MMSharp.Tests.Finetune;

/// <summary>The demo model and a small shapes data set, made once for the CLI resume tests.</summary>
public sealed class FinetuneCliFixture : IDisposable
{
    public IO.TempDir Dir { get; } = new();
    public string Model { get; }
    public string Data { get; }
    /// <summary>Output of the uninterrupted 40-step run (made on first use).</summary>
    public string Full => _full.Value;
    readonly Lazy<string> _full;

    public FinetuneCliFixture()
    {
        // 30 samples, 2 per step: epochs end at steps 15 and 30, so the resume at 20 starts inside the second epoch
        Data = ShapesDataset.Generate(Dir.File("data"), 30, 0, 3).TrainJsonl;
        Model = Dir.File("model");
        InternVLPresets.WriteShapesDemoModel(Model, "demo", 1, out _);
        _full = new(() =>
        {
            string dir = Dir.File("full");
            FinetuneCliResumeTests.Cli(Args(dir));
            return dir;
        });
    }

    /// <summary>The finetune command line of every run in these tests (tiny settings, the same schedule of 40 steps).</summary>
    public string[] Args(string output, params string[] extra) =>
    [
        "finetune", "--model", Model, "--data", Data, "--output", output, "--max-steps", "40",
        "--micro-batch-size", "2", "--max-seq-length", "256", "--lr", "3e-3", "--min-lr", "1e-4", "--warmup-steps", "4",
        "--loss-reduction", "square", "--seed", "7", "--no-progress", "--no-tensorboard", .. extra,
    ];

    public void Dispose() => Dir.Dispose();
}

/// <summary>
/// Issue 4 acceptance through the real <c>mmsharp finetune</c> command on the demo preset: 40 steps in one go equal
/// 20 steps (<c>--stop-after-step 20</c>) then <c>--resume</c>, bit for bit in metrics.jsonl, also after a SIGKILL at a
/// random moment after the step-20 save; a killed run's <c>latest_checkpointed_iteration.txt</c> names a complete checkpoint.
/// </summary>
[Collection(nameof(MMSharp.Tests.Training.TrainerCollection))]
public sealed class FinetuneCliResumeTests(FinetuneCliFixture f, ITestOutputHelper output) : IClassFixture<FinetuneCliFixture>
{
    internal static void Cli(string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = CliApp.Run(args, o, e);
        Assert.True(code == 0, $"mmsharp {string.Join(' ', args)} exited with {code}:\n{e}\n{o}");
        Assert.False(o.ToString().Contains("warning"), o.ToString()); // e.g. "resuming with changed settings" would mean a different curve
    }

    /// <summary>metrics.jsonl by step: the raw JSON text of loss, grad_norm and lr (bit-exact comparison of the doubles).</summary>
    static SortedDictionary<long, (string Loss, string GradNorm, string Lr)> Metrics(string dir)
    {
        var m = new SortedDictionary<long, (string, string, string)>();
        foreach (var line in File.ReadAllLines(Path.Combine(dir, MetricsWriter.FileName)))
        {
            var r = JsonDocument.Parse(line).RootElement;
            m[r.GetProperty("step").GetInt64()] = (r.GetProperty("loss").GetRawText(), r.GetProperty("grad_norm").GetRawText(), r.GetProperty("lr").GetRawText());
        }
        return m;
    }

    void AssertSameSteps21To40(string dir)
    {
        var a = Metrics(f.Full);
        var b = Metrics(dir);
        Assert.Equal(Enumerable.Range(1, 40).Select(i => (long)i), a.Keys);
        Assert.Equal(Enumerable.Range(1, 40).Select(i => (long)i), b.Keys);   // a resume truncates metrics after the checkpoint
        for (long s = 21; s <= 40; s++)
            Assert.True(a[s] == b[s], $"step {s}: uninterrupted {a[s]} vs resumed {b[s]}");
        Assert.NotEqual(a[21].Loss, a[40].Loss);                               // it trains
        output.WriteLine($"loss step 21 {a[21].Loss}, step 40 {a[40].Loss}");
    }

    [Fact]
    public void Finetune_StopAfterStep20ThenResumeTo40_GivesBitIdenticalMetricsForSteps21To40()
    {
        using var split = new IO.TempDir();
        Cli(f.Args(split.Path, "--stop-after-step", "20"));
        Assert.Equal(20, new CheckpointManager(split.Path).LatestIteration());
        Assert.Equal(20, Metrics(split.Path).Count);
        Cli(f.Args(split.Path, "--resume"));
        AssertSameSteps21To40(split.Path);
    }

    [Fact]
    public void Finetune_Kill9AtRandomMomentAfterStep20Save_LatestStaysComplete_AndResumeGivesBitIdenticalMetrics()
    {
        _ = f.Full;
        var rnd = new Random(Environment.TickCount);
        for (int attempt = 0; ; attempt++)
        {
            using var work = new IO.TempDir();
            if (!KillAfterStep20(work.Path, rnd, out long latest))
            {
                // the run ended before the kill (it can only when the target was step 34 and the machine sped up): again
                Assert.True(attempt < 3, "the child finished before it could be killed, three times");
                continue;
            }
            Assert.InRange(latest, 20, 40);
            var mgr = new CheckpointManager(work.Path);
            var ckpt = mgr.Load(latest);                      // complete: every file trainer_state.json lists, with its size
            Assert.Equal(latest, ckpt.Iteration);
            using (var r = MMSharp.Engine.IO.CheckpointReader.Open(ckpt.ModelPath)) Assert.NotEmpty(r.Names);

            Cli(f.Args(work.Path, "--save-interval", "2", "--save-total-limit", "3", "--resume"));
            AssertSameSteps21To40(work.Path);
            return;
        }
    }

    /// <summary>
    /// Starts <c>mmsharp finetune</c> in a child process saving every 2 steps (so a kill often lands inside a save), waits
    /// for the step-20 checkpoint and a random step 20-34 in metrics.jsonl, and kills it with SIGKILL up to two steps'
    /// time later; false when the run had finished by then.
    /// </summary>
    bool KillAfterStep20(string dir, Random rnd, out long latest)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add("exec");
        psi.ArgumentList.Add(typeof(MMSharp.Tests.Training.Program).Assembly.Location);
        psi.ArgumentList.Add("mmsharp");
        foreach (var a in f.Args(dir, "--save-interval", "2", "--save-total-limit", "3")) psi.ArgumentList.Add(a);
        psi.Environment["MMSHARP_THREADS"] = MMSharp.Engine.Kernels.Par.Threads.ToString();
        using var child = Process.Start(psi)!;
        var childOut = new System.Text.StringBuilder();
        child.OutputDataReceived += (_, e) => { lock (childOut) childOut.AppendLine(e.Data); };
        child.ErrorDataReceived += (_, e) => { lock (childOut) childOut.AppendLine(e.Data); };
        child.BeginOutputReadLine();
        child.BeginErrorReadLine();

        var mgr = new CheckpointManager(dir);
        string metrics = Path.Combine(dir, MetricsWriter.FileName);
        int target = rnd.Next(20, 35);                        // kill while step target + 1 or + 2 (or its save) runs
        var clock = Stopwatch.StartNew();
        TimeSpan lastLine = TimeSpan.Zero, stepTime = TimeSpan.FromMilliseconds(50);
        int lines = 0;
        while (!child.HasExited && (lines < target || SafeLatest(mgr) < 20) && clock.Elapsed < TimeSpan.FromSeconds(120))
        {
            int n = MetricLines(metrics);
            if (n > lines) { if (lines > 0) stepTime = (clock.Elapsed - lastLine) / (n - lines); (lines, lastLine) = (n, clock.Elapsed); }
            Thread.Sleep(1);
        }
        Assert.False(child.HasExited && child.ExitCode != 0, $"the child failed:\n{childOut}");
        Assert.True(child.HasExited || SafeLatest(mgr) >= 20, $"no step-20 checkpoint after {clock.Elapsed.TotalSeconds:F0} s:\n{childOut}");
        int delayMs = rnd.Next(0, (int)Math.Max(1, 2 * stepTime.TotalMilliseconds));
        Thread.Sleep(delayMs);
        bool killed = !child.HasExited;
        child.Kill();                                         // SIGKILL
        child.WaitForExit();
        killed &= child.ExitCode != 0;
        latest = mgr.LatestIteration() ?? 0;
        bool inSave = Directory.GetDirectories(dir, ".tmp_*").Length > 0;   // a save's temporary folder was left behind
        output.WriteLine($"step {stepTime.TotalMilliseconds:F0} ms; kill {delayMs} ms after step {target}{(inSave ? ", inside a save" : "")}; " +
                         $"latest {latest}; exit {child.ExitCode}{(killed ? "" : " (finished first)")}");
        return killed;
    }

    static int MetricLines(string path)
    {
        try
        {
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            var bytes = new byte[fs.Length];
            fs.ReadExactly(bytes);
            return bytes.Count(b => b == (byte)'\n');
        }
        catch (IOException) { return 0; }
    }

    static long SafeLatest(CheckpointManager m)
    {
        try { return m.LatestIteration() ?? 0; }
        catch (IOException) { return 0; }
    }
}
