using System.Diagnostics;
using System.Globalization;
using MMSharp.Engine;
using MMSharp.Engine.Autograd;
using MMSharp.Engine.IO;
using MMSharp.Engine.Kernels;
using MMSharp.Generation;
using MMSharp.Models.InternVL;

namespace MMSharp.Bench;

/// <summary>
/// Whole-model generation speed on random BF16 weights of a real geometry (no download): one 448×448 tile, a chat
/// prompt of the usual length, greedy decoding on the KV cache (a few untimed warm-up steps, then the timed ones).
/// decode_bound_tps is what memory bandwidth allows:
/// measured copy bandwidth (bytes read + written per second, <see cref="BandwidthBench"/>) over the weight bytes one
/// decoded token reads — every LLM weight except the embedding table (one row), as the issue defines it; the cached keys
/// and values it also reads (~1% more at this prompt length) are printed on stderr, not counted.
/// The copy bandwidth of this host swings 44-74 GB/s from second to second, so it is sampled between the blocks of
/// timed decode steps (<see cref="BandwidthBench.CopyGBsQuick"/> before the first block and after each) and the bound
/// uses the median sample: bound and speed come from the same minute. The 1 GiB measurement taken before the model
/// is built is printed beside it.
/// The weights sit in a <see cref="WeightArena"/> (huge pages, as <c>chat --no-mmap</c> loads them), and the copy is
/// measured on huge pages too: like with like (through 4 KiB pages the same copy measured 46-64 against 72-82 GB/s in
/// one batch, the same in another). That copy and its bound are printed on stderr for reference, and
/// <c>--hugepages 0</c> runs weights and copies on 4 KiB pages.
/// </summary>
static unsafe class GenerateBench
{
    // Geometry of the presets (tests/MMSharp.Tests/Models/InternVLShapeApprovalTests.cs).
    const string InternVL3_1B = """
    {
      "architectures": ["InternVLChatModel"], "model_type": "internvl_chat", "torch_dtype": "bfloat16",
      "downsample_ratio": 0.5, "dynamic_image_size": true, "force_image_size": 448, "max_dynamic_patch": 12,
      "min_dynamic_patch": 1, "ps_version": "v2", "select_layer": -1, "system_message": null, "template": "internvl2_5",
      "tie_word_embeddings": false, "use_thumbnail": true,
      "vision_config": {
        "architectures": ["InternVisionModel"], "model_type": "intern_vit_6b",
        "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
        "image_size": 448, "patch_size": 14, "num_channels": 3, "qkv_bias": true, "qk_normalization": false,
        "norm_type": "layer_norm", "layer_norm_eps": 1e-06, "hidden_act": "gelu", "drop_path_rate": 0.0,
        "initializer_factor": 0.1, "use_flash_attn": true, "use_moe": false, "num_experts": 8
      },
      "llm_config": {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
        "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
        "num_key_value_heads": 2, "vocab_size": 151674, "max_position_embeddings": 32768, "max_window_layers": 70,
        "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "rope_scaling": {"factor": 2.0, "rope_type": "dynamic", "type": "dynamic"},
        "hidden_act": "silu", "bos_token_id": 151643, "eos_token_id": 151643, "sliding_window": null,
        "use_sliding_window": false, "tie_word_embeddings": false, "use_cache": false, "attention_dropout": 0.0
      }
    }
    """;

    const int ImgContextId = 151667, TextTokens = 60, DecodeBlock = 4;

    /// <summary>Options: --preset internvl3-1b --threads T --tokens 32 (timed decode steps, in blocks of 4: rounded down to
    /// a multiple of 4, at least 4)
    /// --warmup 3 (untimed decode steps before them: the first step compiles the M = 1 kernels and the decode-only ops,
    /// tens of ms of JIT, which is not the steady-state speed the bound is compared with) --team on|off
    /// --prefetch BYTES (<see cref="GemmSmallM.PrefetchBytes"/>, 0 = none) --profile 1 (the team step's time per phase)
    /// --hugepages 0 (weights on 4 KiB pages instead of transparent huge pages)
    /// --weights arena|mapped|mapped-cold|copied (written to a temporary safetensors file and loaded back memory-mapped, as
    /// chat does by default, from the pages its writing left in the cache or, mapped-cold, after dropping them; or copied
    /// into an arena, as chat --no-mmap does; stderr shows the load time).</summary>
    public static void Run(Options opts)
    {
        string preset = opts.Get("preset") ?? "internvl3-1b";
        int warmupTokens = opts.Ints("warmup", [3])[0];
        // timed steps in whole blocks of DecodeBlock (the bandwidth samples sit between blocks)
        int blocks = Math.Max(1, opts.Ints("tokens", [32])[0] / DecodeBlock), decodeTokens = blocks * DecodeBlock;
        if (preset != "internvl3-1b") throw new ArgumentException($"generate: unknown preset '{preset}' (known: internvl3-1b)");
        int threads = opts.Ints("threads", [Par.Threads])[0];
        // --team off: the op-by-op decode step, for a side-by-side comparison with the default one-region step
        Qwen2ForCausalLM.TeamDecode = (opts.Get("team") ?? "on") != "off";
        if (opts.Get("prefetch") is { } pf) GemmSmallM.PrefetchBytes = int.Parse(pf);
        // --hugepages 0: the weights (and the copy-bandwidth buffers) on 4 KiB pages, for comparison
        if (opts.Get("hugepages") == "0") HugePages.Enabled = false;
        double copyGBs = BandwidthBench.CopyGBs(threads);
        // for reference: the same copy through 4 KiB pages (what a plain malloc'd STREAM-style copy measures here)
        bool huge = HugePages.Enabled;
        HugePages.Enabled = false;
        double copy4kGBs = BandwidthBench.CopyGBs(threads);
        HugePages.Enabled = huge;
        Par.Threads = threads;
        // peak RSS from here on: the model's, not the 2 GiB of the copy above (VmHWM reset, Linux 4.0+)
        bool hwmReset = TryResetPeakRss();

        var config = InternVLChatConfig.Parse(InternVL3_1B, "preset internvl3-1b");
        using var model = new InternVLChatModel(config, DType.BF16) { ImgContextTokenId = ImgContextId };
        Randomize(model, new WeightArena());
        // --weights mapped | mapped-cold | copied: the same weights written to a safetensors file and loaded back,
        // memory-mapped as chat loads a checkpoint by default, or copied into an arena as chat --no-mmap does
        string weights = opts.Get("weights") ?? "arena";
        double loadS = weights switch
        {
            "arena" => 0,
            "mapped" or "mapped-cold" or "copied" => Reload(model, copy: weights == "copied", evict: weights == "mapped-cold"),
            _ => throw new ArgumentException($"generate: --weights must be arena, mapped, mapped-cold or copied, got '{weights}'"),
        };
        model.Eval();
        using var noGrad = GradMode.NoGrad();

        // prompt as chat() builds it for one tile: text around <img> + 256 × <IMG_CONTEXT> + </img>
        int nImg = config.NumImageToken;
        var ids = new long[TextTokens + nImg + 2];
        var rng = new Random(1);
        for (int i = 0; i < ids.Length; i++) ids[i] = rng.Next(0, 151643);
        int at = 20;
        for (int i = 0; i < nImg; i++) ids[at + 1 + i] = ImgContextId;
        int T = ids.Length;
        using var pixels = Tensor.RandN([1, 3, 448, 448], 7);
        using var idsT = Tensor.FromArray(ids, 1, T);

        // vision: ExtractFeature of one tile (second run; the first warms up the pools)
        double visionMs = 0;
        for (int rep = 0; rep < 2; rep++)
        {
            var sw = Stopwatch.StartNew();
            using var f = model.ExtractFeature(pixels);
            visionMs = sw.Elapsed.TotalMilliseconds;
        }

        // prefill of the LLM alone (the same token count with text ids) so vision time is not counted twice
        var textIds = ids.Select(i => i == ImgContextId ? 9707L : i).ToArray();
        using var textT = Tensor.FromArray(textIds, 1, T);
        double prefillS = double.MaxValue;
        for (int rep = 0; rep < 2; rep++)
        {
            using var c = model.NewCache(1, T + decodeTokens + 1);
            var sw = Stopwatch.StartNew();
            using var l = model.Prefill(textT, null, c);
            prefillS = Math.Min(prefillS, sw.Elapsed.TotalSeconds);
        }

        // full chat-style generation: prefill with the image, then greedy decode steps
        using var cache = model.NewCache(1, T + warmupTokens + decodeTokens + FollowUpTokens);
        var logits = model.Prefill(idsT, pixels, cache);
        using var step = Tensor.Empty([1], DType.I64);
        var fed = new List<long>();
        void Decode()
        {
            // the greedy pick of chat / infer / eval (Generator's default chooser)
            step.SetFlat(0, GreedyChooser.Instance.Choose(new ReadOnlySpan<float>(logits.F32Ptr, checked((int)logits.NumEl)), default));
            fed.Add(step.GetFlatLong(0));
            logits.Dispose();
            logits = model.DecodeStep(step, cache);
        }
        for (int i = 0; i < warmupTokens; i++) Decode();
        // the decode steps allocate nothing from here on; read before the bandwidth samples' buffers exist
        double peakMb = hwmReset ? PeakRssMb() : Process.GetCurrentProcess().PeakWorkingSet64 / (1024.0 * 1024.0);
        double hugeMb = (ProcKb("/proc/self/smaps_rollup", "AnonHugePages:") + ProcKb("/proc/self/smaps_rollup", "FilePmdMapped:")) / 1024.0;
        Qwen2TeamDecode.ProfilePhases = opts.Get("profile") == "1";
        // timed blocks of DecodeBlock steps, a copy-bandwidth sample before the first and after each
        var samples = new List<double> { BandwidthBench.CopyGBsQuick(threads) };
        var readSamples = new List<double> { BandwidthBench.ReadGBsQuick(threads) };
        var blockTps = new List<double>();
        double decodeS = 0;
        for (int b = 0; b < blocks; b++)
        {
            long t0 = Stopwatch.GetTimestamp();
            for (int i = 0; i < DecodeBlock; i++) Decode();
            double s = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            decodeS += s;
            blockTps.Add(DecodeBlock / s);
            samples.Add(BandwidthBench.CopyGBsQuick(threads));
            readSamples.Add(BandwidthBench.ReadGBsQuick(threads));
        }
        logits.Dispose();
        if (Qwen2TeamDecode.ProfilePhases)
        {
            Qwen2TeamDecode.ProfilePhases = false;
            Console.Error.WriteLine(DecodeAbBench.PhaseReport(config.Llm, decodeTokens));
        }
        double sampledGBs = BandwidthBench.Median([.. samples]), readGBs = BandwidthBench.Median([.. readSamples]);
        var (followCachedS, followFullS) = FollowUp(model, ids, fed, pixels, cache);

        var llm = config.Llm;
        long weightBytes = model.LanguageModel.NamedParameters()
            .Where(p => p.Name != "model.embed_tokens.weight")
            .Sum(p => p.Parameter.NumEl * p.Parameter.DType.SizeOf())
            + (long)llm.HiddenSize * DType.BF16.SizeOf();                         // the one embedding row
        long avgCached = T + warmupTokens + decodeTokens / 2;                   // cached positions of the average timed step
        long kvBytes = 2L * llm.NumHiddenLayers * llm.NumKeyValueHeads * avgCached * llm.HeadDim * sizeof(float);
        double bound = sampledGBs * 1e9 / weightBytes;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"generate preset={preset} tiles=1 prompt_tokens={T} prefill_tps={T / prefillS:F1} decode_tps={decodeTokens / decodeS:F2} vision_ms_per_tile={visionMs:F0} peak_rss_mb={peakMb:F0} decode_bound_tps={bound:F2}"));
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  threads={threads} team={(Qwen2ForCausalLM.TeamDecode ? "on" : "off")} copy_gbs={sampledGBs:F1} (samples {string.Join("/", samples.Select(g => g.ToString("F0", CultureInfo.InvariantCulture)))}; 1 GiB before: {copyGBs:F1}; on 4 KiB pages: {copy4kGBs:F1}, bound {copy4kGBs * 1e9 / weightBytes:F2}) " +
            $"huge_pages_mb={hugeMb:F0} weights={weights}{(loadS > 0 ? $" (loaded in {loadS:F2} s)" : "")} weight_bytes_per_token={weightBytes / 1e6:F1}MB (kv read besides, not in the bound: {kvBytes / 1e6:F1}MB) block_tps={string.Join("/", blockTps.Select(t => t.ToString("F1", CultureInfo.InvariantCulture)))} team_steps={Qwen2TeamDecode.StepsRun}"));
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  read_gbs={readGBs:F1} (a plain read of the same buffer, sampled beside each copy: {string.Join("/", readSamples.Select(g => g.ToString("F0", CultureInfo.InvariantCulture)))}) read_bound_tps={readGBs * 1e9 / weightBytes:F2} decode/read_bound={decodeTokens / decodeS / (readGBs * 1e9 / weightBytes):F2}"));
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  follow-up turn ({FollowUpTokens} new tokens after the {T}-token prompt and {fed.Count} answer tokens): from the kept KV cache {followCachedS * 1e3:F0} ms, recomputed with the image {followFullS * 1e3:F0} ms"));
    }

    /// <summary>New tokens of the follow-up turn measured after the decode.</summary>
    const int FollowUpTokens = 24;

    /// <summary>A follow-up question's prefill two ways: on the conversation's cache (which holds the prompt and every fed
    /// answer token; what chat's <see cref="PromptCache"/> does), and recomputed from scratch with the image (what the
    /// official model.chat() and chat --no-prefix-cache do). Returns the seconds of each.</summary>
    static (double Cached, double Full) FollowUp(InternVLChatModel model, long[] prompt, List<long> answer, Tensor pixels, KvCache cache)
    {
        var rng = new Random(2);
        var question = Enumerable.Range(0, FollowUpTokens).Select(_ => (long)rng.Next(0, 151643)).ToArray();
        long[] all = [.. prompt, .. answer, .. question];
        var sw = Stopwatch.StartNew();
        using (var q = Tensor.FromArray(question, 1, question.Length))
        using (model.Prefill(q, null, cache)) { }
        double cached = sw.Elapsed.TotalSeconds;
        using var full = model.NewCache(1, all.Length);
        using var allT = Tensor.FromArray(all, 1, all.Length);
        sw.Restart();
        using (model.Prefill(allT, pixels, full)) { }
        return (cached, sw.Elapsed.TotalSeconds);
    }

    /// <summary>Writes the model's parameters to a temporary safetensors file and loads them back, memory-mapped or copied into
    /// a new arena (the file is unlinked once loaded; a mapping stays valid); returns the seconds the load took. With
    /// <paramref name="evict"/> the file's pages are dropped from the page cache first, so the load reads it as from a cold
    /// disk cache (large folios), not as the small folios its writing left.</summary>
    static double Reload(InternVLChatModel model, bool copy, bool evict)
    {
        string path = Path.Combine(Path.GetTempPath(), $"mmsharp-generate-{Environment.ProcessId}.safetensors");
        var sw = new Stopwatch();
        try
        {
            SafeTensorsWriter.Write(path, model.StateDict());                    // written durably: its cached pages are clean
            if (evict)
                using (var fs = new FileStream(path, FileMode.Open, FileAccess.Read))
                    PosixFadvise((int)fs.SafeFileHandle.DangerousGetHandle(), 0, 0, PosixFadvDontNeed);
            sw.Start();
            using var reader = CheckpointReader.Open(path);
            model.LoadStateDict(reader, copyInto: copy ? new WeightArena() : null);
            sw.Stop();
        }
        finally { File.Delete(path); }
        GC.Collect();                                       // the first arena's blocks, no longer viewed, are freed
        GC.WaitForPendingFinalizers();
        return sw.Elapsed.TotalSeconds;
    }

    const int PosixFadvDontNeed = 4;
    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "posix_fadvise")]
    static extern int PosixFadvise(int fd, long offset, long length, int advice);

    static bool TryResetPeakRss()
    {
        try { File.WriteAllText("/proc/self/clear_refs", "5"); return PeakRssMb() > 0; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    /// <summary>VmHWM of /proc/self/status in MiB (0 when absent).</summary>
    static double PeakRssMb() => ProcKb("/proc/self/status", "VmHWM:") / 1024.0;

    /// <summary>The kB value of the line starting with <paramref name="key"/> in a /proc file (0 when absent).</summary>
    static long ProcKb(string file, string key)
    {
        foreach (var line in File.ReadLines(file))
            if (line.StartsWith(key))
                return long.Parse(line[key.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
        return 0;
    }

    /// <summary>Allocates every parameter in its declared dtype in <paramref name="arena"/> (where <c>chat --no-mmap</c> puts a
    /// checkpoint's weights): matrices uniform in ±0.02·√3 (std 0.02), vectors 1 (norm
    /// weights, layer scales) or 0 (biases), so activations stay finite through all layers.</summary>
    static void Randomize(InternVLChatModel model, WeightArena arena)
    {
        ulong seed = 1;
        foreach (var (name, p) in model.NamedParameters())
        {
            var t = arena.Empty(p.Shape, p.DeclaredDType);
            long n = t.NumEl;
            bool vector = p.Shape.Length == 1;
            float constant = name.EndsWith(".bias") ? 0f : 1f;
            ulong s0 = seed++ * 0x9E3779B97F4A7C15UL;
            byte* data = t.DataPtr;
            bool bf16 = t.DType == DType.BF16;
            Par.ForChunks(n, 1 << 16, (a, b) =>
            {
                ulong x = s0 ^ (ulong)a * 0xD1B54A32D192ED03UL | 1;
                for (long i = a; i < b; i++)
                {
                    float v;
                    if (vector) v = constant;
                    else
                    {
                        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                        v = ((x >> 40) / (float)(1 << 24) * 2f - 1f) * 0.0346f;
                    }
                    if (bf16) ((ushort*)data)[i] = Half16.FloatToBF16(v);
                    else ((float*)data)[i] = v;
                }
            });
            p.Set(t);
            t.Dispose();
        }
    }
}
