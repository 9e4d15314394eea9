using MMSharp.Engine;
using MMSharp.Engine.IO;

namespace MMSharp.Tests.Models;

/// <summary>
/// The tiny InternVL checkpoints of tests/fixtures/internvl_tiny (written with their PyTorch reference outputs by
/// make_fixtures.py): "vit300m" (LayerNorm ViT with qkv bias, two BF16 shards + index, untied head) and "vit6b"
/// (RMSNorm ViT with q/k norm, one file, no lm_head tensor, dynamic NTK RoPE active).
/// </summary>
static class InternVLFixtures
{
    public const int ImgContext = 297;
    public const int Eos = 298;

    static string? _root;

    public static string Root
    {
        get
        {
            if (_root != null) return _root;
            for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            {
                var p = Path.Combine(d.FullName, "tests", "fixtures", "internvl_tiny");
                if (File.Exists(Path.Combine(p, "vit300m", "config.json"))) return _root = p;
            }
            throw new DirectoryNotFoundException("tests/fixtures/internvl_tiny not found above " + AppContext.BaseDirectory);
        }
    }

    public static string Dir(string name) => Path.Combine(Root, name);

    public static Tensor Ref(string fixture, string name) => Npy.Read(Path.Combine(Root, fixture, "reference", name + ".npy"));

    /// <summary>max |a − b| / max |b| over all elements (the scale-relative error used for every stage).</summary>
    public static double RelErr(Tensor actual, Tensor expected)
    {
        Assert.Equal(expected.Shape, actual.Shape);
        var a = actual.ToFloatArray();
        var e = expected.ToFloatArray();
        double maxDiff = 0, maxRef = 0;
        for (int i = 0; i < a.Length; i++)
        {
            Assert.False(float.IsNaN(a[i]), $"NaN at {i}");
            maxDiff = Math.Max(maxDiff, Math.Abs((double)a[i] - e[i]));
            maxRef = Math.Max(maxRef, Math.Abs((double)e[i]));
        }
        return maxDiff / Math.Max(maxRef, 1e-30);
    }

    /// <summary>A copy of a fixture checkpoint in a temp directory (to corrupt it in error tests).</summary>
    public static IO.TempDir Copy(string name)
    {
        var t = new IO.TempDir();
        foreach (var f in Directory.GetFiles(Dir(name)))
            File.Copy(f, Path.Combine(t.Path, Path.GetFileName(f)));
        return t;
    }
}
