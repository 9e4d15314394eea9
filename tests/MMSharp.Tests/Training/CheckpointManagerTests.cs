using System.Text.Json.Nodes;
using MMSharp.Engine;
using MMSharp.Engine.IO;
using MMSharp.NN;
using MMSharp.Tests.IO;
using MMSharp.Training;

namespace MMSharp.Tests.Training;

public class CheckpointManagerTests
{
    sealed class Net : Module
    {
        public Net(ulong seed)
        {
            RegisterParameter("weight", Tensor.RandN([4, 5], seed));
            RegisterParameter("bias", Tensor.RandN([4], seed + 1));
        }
    }

    static CheckpointContent Content(long it, Net net, AdamW? opt) => new()
    {
        Iteration = it,
        Model = net.NamedParameters().Select(x => KeyValuePair.Create(x.Name, x.Parameter.Data)),
        Optimizer = opt,
        RngState = [1, 2, 3, ulong.MaxValue],
        DataState = new JsonObject { ["epoch"] = 2, ["index"] = it },
        Config = new JsonObject { ["lr"] = 1e-5 },
        TrainerState = new JsonObject { ["elapsed_s"] = 1.5 },
    };

    [Fact]
    public void SaveThenLoad_RoundTripsEverything_AndWritesLatestLast()
    {
        using var dir = new TempDir();
        using var net = new Net(1);
        var opt = new AdamW(net.NamedParameters());
        var mgr = new CheckpointManager(dir.Path);
        Assert.Null(mgr.LatestIteration());
        string d = mgr.Save(Content(100, net, opt));
        Assert.Equal(Path.Combine(dir.Path, "iter_0000100"), d);
        Assert.Equal("100\n", File.ReadAllText(dir.File("latest_checkpointed_iteration.txt")));
        var c = mgr.Load();
        Assert.Equal(100, c.Iteration);
        Assert.Equal(new ulong[] { 1, 2, 3, ulong.MaxValue }, c.RngState);
        Assert.Equal(100, c.DataState!["index"]!.GetValue<long>());
        Assert.Equal(1e-5, c.Config!["lr"]!.GetValue<double>());
        Assert.Equal(1.5, c.TrainerState!["elapsed_s"]!.GetValue<double>());
        Assert.NotNull(c.OptimizerPath);
        using var r = CheckpointReader.Open(c.ModelPath);
        using var w = r.Get("weight");
        Assert.Equal(net.GetParameter("weight").Data.ToFloatArray(), w.ToFloatArray());
        Assert.Empty(Directory.GetDirectories(dir.Path, ".tmp_*"));
    }

    [Fact]
    public void CrashMidSave_LeavesPreviousCheckpointLatestAndLoadable()
    {
        using var dir = new TempDir();
        using var net = new Net(1);
        var opt = new AdamW(net.NamedParameters());
        var mgr = new CheckpointManager(dir.Path);
        mgr.Save(Content(10, net, opt));
        int files = 0;
        mgr.AfterFileWritten = _ => { if (++files == 2) throw new IOException("simulated crash after the optimizer file"); };
        Assert.Throws<IOException>(() => mgr.Save(Content(20, net, opt)));
        Assert.Equal(10, mgr.LatestIteration());
        Assert.False(Directory.Exists(dir.File("iter_0000020")));
        Assert.True(Directory.Exists(dir.File(".tmp_iter_0000020"))); // what a kill leaves behind
        Assert.Equal(10, mgr.Load().Iteration);
        Assert.Equal([10L], mgr.ListIterations());                  // .tmp_* is not a checkpoint

        mgr.AfterFileWritten = null;
        mgr.Save(Content(20, net, opt));                             // the next save cleans up
        Assert.Equal(20, mgr.Load().Iteration);
        Assert.Empty(Directory.GetDirectories(dir.Path, ".tmp_*"));
    }

    [Fact]
    public void CrashAtEveryPointOfASave_NeverMovesLatestToAnIncompleteCheckpoint()
    {
        using var dir = new TempDir();
        using var net = new Net(1);
        var opt = new AdamW(net.NamedParameters());
        var mgr = new CheckpointManager(dir.Path);
        mgr.Save(Content(10, net, opt));
        int filesPerSave = 4; // model, optimizer, run config, trainer state
        for (int k = 1; k <= filesPerSave; k++)
        {
            int seen = 0;
            mgr.AfterFileWritten = _ => { if (++seen == k) throw new IOException($"crash after file {k}"); };
            Assert.Throws<IOException>(() => mgr.Save(Content(20, net, opt)));
            Assert.Equal(10, mgr.LatestIteration());
            Assert.Equal(10, mgr.Load().Iteration);
        }
        mgr.AfterFileWritten = null;

        // crash after the rename, before "latest" moves: the complete iter_0000020 exists but is not latest
        mgr.BeforeLatestUpdated = () => throw new IOException("crash before latest");
        Assert.Throws<IOException>(() => mgr.Save(Content(20, net, opt)));
        Assert.Equal(10, mgr.LatestIteration());
        Assert.True(Directory.Exists(mgr.IterationDirectory(20)));
        // the resumed run saves iteration 20 again over it
        mgr.BeforeLatestUpdated = null;
        mgr.Save(Content(20, net, opt));
        Assert.Equal(20, mgr.Load().Iteration);
        Assert.Empty(Directory.GetDirectories(dir.Path, ".tmp_*"));
    }

    [Fact]
    public void Load_ThrowsNamingMissingFile_WhenCheckpointIncomplete()
    {
        using var dir = new TempDir();
        using var net = new Net(1);
        var mgr = new CheckpointManager(dir.Path);
        mgr.Save(Content(5, net, new AdamW(net.NamedParameters())));
        File.Delete(Path.Combine(mgr.IterationDirectory(5), "optimizer.safetensors"));
        var e = Assert.Throws<FileNotFoundException>(() => mgr.Load());
        Assert.Contains("optimizer.safetensors is missing", e.Message);
        File.Delete(Path.Combine(mgr.IterationDirectory(5), "trainer_state.json"));
        e = Assert.Throws<FileNotFoundException>(() => mgr.Load());
        Assert.Contains("trainer_state.json is missing", e.Message);
    }

    [Fact]
    public void Load_Throws_WhenFileTruncated()
    {
        using var dir = new TempDir();
        using var net = new Net(1);
        var mgr = new CheckpointManager(dir.Path);
        mgr.Save(Content(5, net, null));
        string model = Path.Combine(mgr.IterationDirectory(5), "model.safetensors");
        using (var fs = new FileStream(model, FileMode.Open)) fs.SetLength(fs.Length - 4);
        var e = Assert.Throws<InvalidDataException>(() => mgr.Load());
        Assert.Contains("model.safetensors", e.Message);
    }

    [Fact]
    public void SaveTotalLimit_KeepsNewestK_AndNoSaveOptimWritesNone()
    {
        using var dir = new TempDir();
        using var net = new Net(1);
        var mgr = new CheckpointManager(dir.Path, saveTotalLimit: 2);
        foreach (var it in new long[] { 10, 20, 30, 40 }) mgr.Save(Content(it, net, null));
        Assert.Equal([30L, 40L], mgr.ListIterations());
        var c = mgr.Load();
        Assert.Equal(40, c.Iteration);
        Assert.Null(c.OptimizerPath);
        Assert.False(File.Exists(Path.Combine(c.Directory, "optimizer.safetensors")));
    }

    [Fact]
    public void Load_Throws_WhenNothingToResume()
    {
        using var dir = new TempDir();
        var e = Assert.Throws<FileNotFoundException>(() => new CheckpointManager(dir.Path).Load());
        Assert.Contains("latest_checkpointed_iteration.txt", e.Message);
    }
}
