using System.Diagnostics;
using MMSharp.Engine;
using MMSharp.Tests.IO;
using MMSharp.Training;

namespace MMSharp.Tests.Training;

/// <summary>
/// Entry point of the test assembly when it is started as a process of its own (<c>dotnet exec MMSharp.Tests.dll
/// train-child DIR</c>, or <c>mmsharp ARGS…</c> for the real command line), so a test can kill a real training run with
/// SIGKILL. The test runner never calls it.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length == 2 && args[0] == "train-child")
        {
            // slow steps and frequent saves, so a random kill lands in a step or in a save
            TrainerTests.Train(TrainerTests.Options(args[1]) with { SaveInterval = 5 }, _ => Thread.Sleep(15));
            return 0;
        }
        if (args.Length > 0 && args[0] == "mmsharp") return MMSharp.Cli.CliApp.Run(args[1..]);
        Console.Error.WriteLine("usage: MMSharp.Tests.dll train-child OUTPUT_DIR | mmsharp ARGS...");
        return 2;
    }
}

[Collection(nameof(TrainerCollection))]
public class KillTests
{
    [Fact]
    public void Kill9AtRandomMomentAfterStep20Save_ThenResume_GivesBitIdenticalLosses()
    {
        using var full = new TempDir();
        using var killed = new TempDir();
        TrainerTests.Train(TrainerTests.Options(full.Path));
        var rnd = new Random(Environment.TickCount);
        for (int attempt = 0; attempt < 2; attempt++)
        {
            using var work = new TempDir();
            var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            psi.ArgumentList.Add("exec");
            psi.ArgumentList.Add(typeof(Program).Assembly.Location);
            psi.ArgumentList.Add("train-child");
            psi.ArgumentList.Add(work.Path);
            psi.Environment["MMSHARP_THREADS"] = MMSharp.Engine.Kernels.Par.Threads.ToString();
            using var child = Process.Start(psi)!;
            child.OutputDataReceived += (_, _) => { };
            child.ErrorDataReceived += (_, _) => { };
            child.BeginOutputReadLine();
            child.BeginErrorReadLine();
            var mgr = new CheckpointManager(work.Path);
            var clock = Stopwatch.StartNew();
            while (!child.HasExited && SafeLatest(mgr) < 20 && clock.Elapsed < TimeSpan.FromSeconds(60)) Thread.Sleep(5);
            Assert.False(child.HasExited, "the child finished before it could be killed");
            Thread.Sleep(rnd.Next(0, 250));                        // ~15 steps left: kill somewhere in steps 21-40
            child.Kill();                                          // SIGKILL
            child.WaitForExit();
            Assert.True(SafeLatest(mgr) >= 20);
            Rng.Default.Reseed(999);
            TrainerTests.Train(TrainerTests.Options(work.Path) with { Resume = true });
            TrainerTests.AssertSameLosses(TrainerTests.Metrics(full.Path), TrainerTests.Metrics(work.Path));
        }
    }

    static long SafeLatest(CheckpointManager m)
    {
        try { return m.LatestIteration() ?? 0; }
        catch (IOException) { return 0; }
    }
}
