using System.Buffers.Binary;
using System.Text;
using MMSharp.Tests.IO;
using MMSharp.Training;

namespace MMSharp.Tests.Training;

public class MetricsWriterTests
{
    [Fact]
    public void Lines_RoundTripDoublesExactly_AndValLossOnlyWhenPresent()
    {
        using var dir = new TempDir();
        double loss = 2.3025850929940459 / 3;
        using (var w = new MetricsWriter(dir.File("metrics.jsonl")))
        {
            w.Write(new StepMetrics(1, loss, 1e-5, 0.5, 100, 2, 0.25));
            w.Write(new StepMetrics(2, loss * 0.9, 2e-5, double.NaN, 100, 2, 0.5, ValLoss: 1.25));
        }
        var lines = File.ReadAllLines(dir.File("metrics.jsonl"));
        Assert.Equal(2, lines.Length);
        Assert.DoesNotContain("val_loss", lines[0]);
        Assert.Contains("\"val_loss\":1.25", lines[1]);
        var back = MetricsWriter.Read(dir.File("metrics.jsonl"));
        Assert.Equal(BitConverter.DoubleToInt64Bits(loss), BitConverter.DoubleToInt64Bits(back[0].Loss));
        Assert.True(double.IsNaN(back[1].GradNorm));
    }

    [Fact]
    public void Resume_TruncatesLaterSteps_AndTornLastLine()
    {
        using var dir = new TempDir();
        string path = dir.File("metrics.jsonl");
        using (var w = new MetricsWriter(path))
            for (int s = 1; s <= 5; s++) w.Write(new StepMetrics(s, s, 0, 0, 0, 0, s));
        File.AppendAllText(path, "{\"step\":6,\"lo");     // a kill in the middle of a line
        using (var w = new MetricsWriter(path, resumeStep: 3))
            w.Write(new StepMetrics(4, 40, 0, 0, 0, 0, 4));
        Assert.Equal([1L, 2, 3, 4], MetricsWriter.Read(path).Select(m => m.Step));
        Assert.Equal(40, MetricsWriter.Read(path)[3].Loss);

        File.AppendAllText(path, "{\"step\":5,\"lo");
        using (new MetricsWriter(path, resumeStep: 10)) { }
        Assert.Equal(4, MetricsWriter.Read(path).Count);       // torn line dropped even with nothing to truncate
    }
}

public class TensorBoardWriterTests
{
    [Theory]
    [InlineData("123456789", 0xE3069283u)]
    [InlineData("", 0x00000000u)]
    [InlineData("a", 0xC1D04330u)]
    public void Crc32C_MatchesKnownVectors(string text, uint expected)
    {
        var bytes = Encoding.ASCII.GetBytes(text);
        Assert.Equal(expected, Crc32C.Compute(bytes));
        Assert.Equal(expected, Crc32C.ComputeTable(bytes));
    }

    [Fact]
    public void Crc32C_HardwareAndTablePathsAgree_OnOddLengths()
    {
        var rnd = new Random(3);
        foreach (int n in new[] { 1, 7, 8, 9, 33, 6 * 16 + 7 })
        {
            var b = new byte[n];
            rnd.NextBytes(b);
            Assert.Equal(Crc32C.ComputeTable(b), Crc32C.Compute(b));
        }
        // RFC 3720 B.4: 32 bytes of zeros
        Assert.Equal(0x8A9136AAu, Crc32C.Compute(new byte[32]));
    }

    static uint Mask(uint crc) => unchecked(((crc >> 15) | (crc << 17)) + 0xa282ead8u);

    /// <summary>An independent TFRecord + Event decoder: (wall_time, step, file_version, [(tag, value)]).</summary>
    static List<(double Wall, long Step, string? Version, List<(string Tag, float Value)> Values)> Parse(byte[] file)
    {
        var events = new List<(double, long, string?, List<(string, float)>)>();
        int pos = 0;
        while (pos < file.Length)
        {
            ulong len = BinaryPrimitives.ReadUInt64LittleEndian(file.AsSpan(pos));
            Assert.Equal(Mask(Crc32C.ComputeTable(file.AsSpan(pos, 8))), BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(pos + 8)));
            var data = file.AsSpan(pos + 12, (int)len);
            Assert.Equal(Mask(Crc32C.ComputeTable(data)), BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(pos + 12 + (int)len)));
            pos += 12 + (int)len + 4;

            double wall = 0; long step = 0; string? version = null; var values = new List<(string, float)>();
            int i = 0;
            var d = data.ToArray();
            while (i < d.Length)
            {
                ulong key = ReadVarint(d, ref i);
                int field = (int)(key >> 3), wire = (int)(key & 7);
                if (field == 1 && wire == 1) { wall = BitConverter.ToDouble(d, i); i += 8; }
                else if (field == 2 && wire == 0) step = (long)ReadVarint(d, ref i);
                else if (field == 3 && wire == 2) { int n = (int)ReadVarint(d, ref i); version = Encoding.UTF8.GetString(d, i, n); i += n; }
                else if (field == 5 && wire == 2)
                {
                    int n = (int)ReadVarint(d, ref i);
                    int end = i + n;
                    while (i < end)
                    {
                        Assert.Equal(0x0Aul, ReadVarint(d, ref i)); // Summary.value, length-delimited
                        int vn = (int)ReadVarint(d, ref i);
                        int vend = i + vn;
                        string tag = ""; float val = float.NaN;
                        while (i < vend)
                        {
                            ulong k = ReadVarint(d, ref i);
                            if (k == 0x0A) { int tn = (int)ReadVarint(d, ref i); tag = Encoding.UTF8.GetString(d, i, tn); i += tn; }
                            else if (k == 0x15) { val = BitConverter.ToSingle(d, i); i += 4; }
                            else throw new InvalidDataException($"unexpected Value key {k}");
                        }
                        values.Add((tag, val));
                    }
                }
                else if (field == 6 && wire == 2)
                {
                    int n = (int)ReadVarint(d, ref i);
                    Assert.Equal(2, n);
                    Assert.Equal(0x08ul, ReadVarint(d, ref i));           // SessionLog.status
                    version = "session_log:" + ReadVarint(d, ref i);
                }
                else throw new InvalidDataException($"unexpected Event field {field} wire {wire}");
            }
            events.Add((wall, step, version, values));
        }
        return events;
    }

    static ulong ReadVarint(byte[] d, ref int i)
    {
        ulong v = 0;
        for (int shift = 0; ; shift += 7)
        {
            byte b = d[i++];
            v |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80) return v;
        }
    }

    [Fact]
    public void Events_ParseBack_WithFileVersionFirst()
    {
        using var dir = new TempDir();
        string path;
        using (var w = new TensorBoardWriter(dir.File("tb")))
        {
            path = w.FilePath;
            w.AddScalars(1, [new("train/loss", 2.5), new("train/lr", 1e-5)]);
            w.AddScalar(300, "val/loss", 0.125);
            w.AddSessionStart(21);
        }
        Assert.Matches(@"events\.out\.tfevents\.\d+\..+", Path.GetFileName(path));
        var ev = Parse(File.ReadAllBytes(path));
        Assert.Equal(4, ev.Count);
        Assert.Equal((21L, "session_log:1"), (ev[3].Step, ev[3].Version));   // START
        Assert.Equal("brain.Event:2", ev[0].Version);
        Assert.True(ev[0].Wall > 1.6e9);
        Assert.Equal(1, ev[1].Step);
        Assert.Equal([("train/loss", 2.5f), ("train/lr", 1e-5f)], ev[1].Values);
        Assert.Equal(300, ev[2].Step);                 // multi-byte varint
        Assert.Equal([("val/loss", 0.125f)], ev[2].Values);
    }
}

public class ProgressReporterTests
{
    [Fact]
    public void NonInteractive_PrintsEveryLogIntervalAndLastStep()
    {
        var sw = new StringWriter();
        var p = new ProgressReporter(10, logInterval: 4, sw, interactive: false);
        for (int s = 1; s <= 10; s++) p.Report(s, 1.0 / s, 1e-5, 1000, s, s);
        var lines = sw.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3, lines.Length);
        Assert.StartsWith("step 4/10 loss 0.2500 lr 1e-05 1000 tok/s ETA 00:06", lines[0]);
        Assert.StartsWith("step 10/10", lines[2]);
    }

    [Fact]
    public void Interactive_RewritesOneLine()
    {
        var sw = new StringWriter();
        var p = new ProgressReporter(3, 1, sw, interactive: true);
        for (int s = 1; s <= 3; s++) p.Report(s, 1, 1e-5, 10, s, s);
        string text = sw.ToString();
        Assert.Equal(3, text.Count(c => c == '\r'));
        Assert.Equal(1, text.Count(c => c == '\n'));
        Assert.Contains("[====================] step 3/3", text);
    }
}
