using System.Globalization;
using MMSharp.Engine;
using MMSharp.Engine.IO;

namespace MMSharp.Tests.Engine;

/// <summary>
/// The huge-page advice weights get: WeightArena blocks and memory-mapped checkpoints, as /proc/self/smaps shows it.
/// One class, so the tests that switch <see cref="HugePages.Enabled"/> off and on do not overlap.
/// </summary>
public sealed unsafe class HugePagesTests
{
    [Fact]
    public void ArenaBlocks_AreBackedByHugePages_WhereTheKernelOffersThem_AndNotWhenTurnedOff()
    {
        string mode = ThpMode();
        bool before = HugePages.Enabled;
        try
        {
            HugePages.Enabled = true;
            long onKb = TouchedBlockHugeKb(out long blockKb);
            HugePages.Enabled = false;
            long offKb = TouchedBlockHugeKb(out _);
            if (mode is "always" or "madvise")
                Assert.True(onKb >= blockKb / 2, $"THP mode {mode}: only {onKb} of {blockKb} kB on huge pages");
            if (mode is "madvise" or "never")
                Assert.Equal(0, offKb);
            if (mode == "never") Assert.Equal(0, onKb);
        }
        finally { HugePages.Enabled = before; }
    }

    [Fact]
    public void MappedCheckpoints_AreAdvisedHugePages_BeforeTheirPagesAreTouched_AndNotWhenTurnedOff()
    {
        // VmFlags "hg" (VM_HUGEPAGE) marks the advice; whether the page cache then holds 2 MiB folios depends on the
        // file system, so the advice is what is checked here (the generate bench's --weights mapped-cold measures the rest)
        using var dir = new IO.TempDir();
        using var t = Tensor.Full([6 << 20], 0.5f);
        SafeTensorsWriter.Write(dir.File("w.safetensors"), [new("w", t)]);
        bool before = HugePages.Enabled;
        try
        {
            HugePages.Enabled = true;
            bool on = MappingAdvised(dir.File("w.safetensors"));
            HugePages.Enabled = false;
            bool off = MappingAdvised(dir.File("w.safetensors"));
            Assert.Equal(ThpMode() != "unsupported", on);
            Assert.False(off);
        }
        finally { HugePages.Enabled = before; }
    }

    static bool MappingAdvised(string file)
    {
        using var reader = new SafeTensorsReader(file);
        using var w = reader.Get("w");
        Assert.Equal(0.5f, w.ToFloatArray()[123]);
        return Smaps((nint)w.DataPtr, (nint)w.DataPtr + 1).Any(vma => vma.Flags.Split(' ').Contains("hg"));
    }

    /// <summary>AnonHugePages (kB) of the mappings under a freshly touched 32 MiB arena tensor.</summary>
    static long TouchedBlockHugeKb(out long blockKb)
    {
        var arena = new WeightArena();
        using var t = arena.Empty([8 << 20], DType.F32);
        new Span<float>(t.F32Ptr, 8 << 20).Fill(1f);
        blockKb = 32 << 10;
        return Smaps((nint)t.DataPtr, (nint)t.DataPtr + (32 << 20)).Sum(vma => vma.AnonHugeKb);
    }

    /// <summary>The bracketed mode of /sys/kernel/mm/transparent_hugepage/enabled ("unsupported" without the file).</summary>
    static string ThpMode()
    {
        const string path = "/sys/kernel/mm/transparent_hugepage/enabled";
        if (!File.Exists(path)) return "unsupported";
        string s = File.ReadAllText(path);
        int a = s.IndexOf('['), b = s.IndexOf(']');
        return a >= 0 && b > a ? s[(a + 1)..b] : "unsupported";
    }

    /// <summary>The /proc/self/smaps entries overlapping [start, end): AnonHugePages (kB) and VmFlags of each.</summary>
    static List<(long AnonHugeKb, string Flags)> Smaps(nint start, nint end)
    {
        var found = new List<(long, string)>();
        bool inside = false;
        long kb = 0;
        foreach (var line in File.ReadLines("/proc/self/smaps"))
        {
            int dash = line.IndexOf('-'), space = line.IndexOf(' ');
            if (dash > 0 && space > dash
                && long.TryParse(line.AsSpan(0, dash), NumberStyles.HexNumber, null, out long lo)
                && long.TryParse(line.AsSpan(dash + 1, space - dash - 1), NumberStyles.HexNumber, null, out long hi))
            {
                inside = lo < end && hi > start;
                kb = 0;
            }
            else if (inside && line.StartsWith("AnonHugePages:"))
                kb = long.Parse(line["AnonHugePages:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
            else if (inside && line.StartsWith("VmFlags:"))
                found.Add((kb, line["VmFlags:".Length..].Trim()));        // the last line of an entry
        }
        return found;
    }
}
