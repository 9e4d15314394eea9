using MMSharp.NN;

namespace MMSharp.Models.InternVL;

/// <summary>
/// The tensor names of an InternVL chat checkpoint saved with unmerged LoRA adapters, as the official training writes
/// it: <c>config.json</c> holds <c>use_llm_lora = r</c> / <c>use_backbone_lora = r</c>, and the wrapped towers'
/// tensors carry PEFT's names.
/// </summary>
/// <remarks>
/// Confirmed from the official sources (read with the repository look-up tools):
/// <list type="bullet">
/// <item>OpenGVLab/InternVL <c>internvl_chat/internvl/model/internvl_chat/modeling_internvl_chat.py</c>:
/// <c>__init__</c> calls <c>wrap_backbone_lora(r=config.use_backbone_lora, lora_alpha=2 * r)</c> and then
/// <c>wrap_llm_lora(r=config.use_llm_lora, lora_alpha=2 * r)</c> when the fields are non-zero; both default
/// <c>lora_dropout=0.05</c>; the ViT targets are <c>attn.qkv, attn.proj, mlp.fc1, mlp.fc2</c>, the Qwen2/Llama targets
/// <c>self_attn.{q,k,v,o}_proj, mlp.{gate,down,up}_proj</c>; each wrap replaces the attribute by
/// <c>get_peft_model(tower, config)</c>, so every tensor of the tower (adapted or not) moves under the PeftModel.</item>
/// <item>huggingface/peft <c>src/peft/peft_model.py</c>: <c>PeftModel.__init__</c> sets
/// <c>self.base_model = cls(model, {adapter_name: peft_config}, adapter_name)</c> (the LoRA tuner, which keeps the
/// wrapped model as <c>.model</c>) → prefix <c>base_model.model.</c>; the adapter name is <c>"default"</c>.</item>
/// <item>huggingface/peft <c>src/peft/tuners/lora/layer.py</c>: <c>LoraLayer.__init__</c> keeps the original layer as
/// <c>self.base_layer</c>, and <c>update_layer</c> creates <c>self.lora_A[adapter_name] = nn.Linear(in_features, r, bias=False)</c>
/// and <c>self.lora_B[adapter_name] = nn.Linear(r, out_features, bias=lora_bias)</c> (ModuleDicts), scaling
/// <c>lora_alpha / r</c> → <c>….base_layer.weight</c> / <c>.base_layer.bias</c>, <c>….lora_A.default.weight</c> [r, in],
/// <c>….lora_B.default.weight</c> [out, r].</item>
/// </list>
/// Example: <c>language_model.model.layers.0.self_attn.q_proj.weight</c> →
/// <c>language_model.base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight</c>;
/// <c>language_model.lm_head.weight</c> → <c>language_model.base_model.model.lm_head.weight</c>;
/// <c>mlp1.*</c> is never wrapped. Our modules keep the plain HF names (<c>….q_proj.lora_A.weight</c>); this class maps
/// them to the stored keys for writing and loading.
/// Because the official loader re-wraps with alpha = 2r, an adapter trained with another alpha is written with its
/// scaling folded into lora_B (see <see cref="ExportScaleOfB"/>).
/// </remarks>
public static class InternVLPeftLayout
{
    /// <summary>PEFT's default adapter name, part of every adapter key.</summary>
    public const string AdapterName = "default";

    /// <summary>The dropout of the official wrap functions (training only; no effect on logits).</summary>
    public const float OfficialDropout = 0.05f;

    const string Llm = "language_model", Vision = "vision_model", Wrapped = ".base_model.model.";

    /// <summary>The official re-wrap of a loaded model: rank r, alpha 2r, dropout 0.05 on the official targets (0 = none).</summary>
    public static void Wrap(InternVLChatModel model, int llmRank, int visionRank, ulong seed = 0)
    {
        if (visionRank > 0)
            LoraLinear.Apply(model, Vision, LoraLinear.VisionTargets, visionRank, 2f * visionRank, OfficialDropout, seed + 1);
        if (llmRank > 0)
            LoraLinear.Apply(model, Llm, LoraLinear.LlmTargets, llmRank, 2f * llmRank, OfficialDropout, seed);
    }

    /// <summary>The module paths of the layers carrying an adapter.</summary>
    public static HashSet<string> AdaptedLayers(Module model) =>
        model.NamedModules().Where(x => x.Module is Linear { Lora: not null }).Select(x => x.Name).ToHashSet(StringComparer.Ordinal);

    /// <summary>Our parameter name → the stored PEFT key, for a model whose adapters are already attached.</summary>
    public static Func<string, string> StoredName(Module model, bool llmWrapped, bool visionWrapped)
    {
        var adapted = AdaptedLayers(model);
        return name => ToPeft(name, adapted, llmWrapped, visionWrapped);
    }

    /// <summary>
    /// One name → its PEFT key: inside a wrapped tower <c>T.rest</c> → <c>T.base_model.model.rest</c>, with
    /// <c>.weight</c>/<c>.bias</c> of an adapted layer under <c>.base_layer</c> and <c>lora_A</c>/<c>lora_B</c> under
    /// the adapter name. Names outside the wrapped towers are unchanged.
    /// </summary>
    public static string ToPeft(string name, IReadOnlySet<string> adaptedLayers, bool llmWrapped, bool visionWrapped)
    {
        string? tower = llmWrapped && name.StartsWith(Llm + ".", StringComparison.Ordinal) ? Llm
            : visionWrapped && name.StartsWith(Vision + ".", StringComparison.Ordinal) ? Vision : null;
        if (tower == null) return name;
        int dot = name.LastIndexOf('.');
        string module = name[..dot], leaf = name[(dot + 1)..];
        string path;
        if (module.EndsWith(".lora_A", StringComparison.Ordinal) || module.EndsWith(".lora_B", StringComparison.Ordinal))
            path = $"{module}.{AdapterName}.{leaf}";
        else if (adaptedLayers.Contains(module))
            path = $"{module}.base_layer.{leaf}";
        else
            path = name;
        return tower + Wrapped + path[(tower.Length + 1)..];
    }

    /// <summary>
    /// The LoRA ranks to write as <c>use_llm_lora</c> / <c>use_backbone_lora</c>. Every official target layer of an
    /// adapted tower must carry an adapter, all of one rank, and nothing else may (the official loader re-creates
    /// exactly those); otherwise the model cannot be written in this layout and the error says why.
    /// </summary>
    public static (int LlmRank, int VisionRank) Ranks(Module model)
    {
        foreach (var name in AdaptedLayers(model))
            if (!name.StartsWith(Llm + ".", StringComparison.Ordinal) && !name.StartsWith(Vision + ".", StringComparison.Ordinal))
                throw new InvalidOperationException($"export: '{name}' carries a LoRA adapter outside language_model and vision_model; the unmerged PEFT layout cannot hold it (use --merge-lora)");
        return (TowerRank(model, Llm, LoraLinear.LlmTargets, "use_llm_lora"), TowerRank(model, Vision, LoraLinear.VisionTargets, "use_backbone_lora"));
    }

    static int TowerRank(Module model, string tower, string[] targets, string field)
    {
        var ranks = new SortedSet<int>();
        foreach (var (name, m) in model.NamedModules())
        {
            if (m is not Linear lin || !name.StartsWith(tower + ".", StringComparison.Ordinal)) continue;
            bool target = targets.Any(t => name.EndsWith("." + t, StringComparison.Ordinal));
            if (lin.Lora is { } lora)
            {
                if (!target)
                    throw new InvalidOperationException($"export: '{name}' carries a LoRA adapter but is not an official {field} target; the unmerged PEFT layout cannot hold it (use --merge-lora)");
                ranks.Add(lora.Rank);
            }
        }
        if (ranks.Count == 0) return 0;
        if (ranks.Count > 1)
            throw new InvalidOperationException($"export: the {tower} adapters have ranks {{{string.Join(", ", ranks)}}}; {field} holds one rank (use --merge-lora)");
        foreach (var (name, m) in model.NamedModules())
            if (m is Linear { Lora: null } && name.StartsWith(tower + ".", StringComparison.Ordinal) && targets.Any(t => name.EndsWith("." + t, StringComparison.Ordinal)))
                throw new InvalidOperationException($"export: '{name}' is an official {field} target without an adapter; the official loader would add a fresh one (use --merge-lora)");
        return ranks.Min;
    }

    /// <summary>
    /// The factor to multiply a stored lora_B by so that the official re-wrap (scaling 2r / r = 2) computes the trained
    /// update: (alpha/r)·B·A = 2·(B·alpha/(2r))·A. 1 for adapters trained with the official alpha = 2r.
    /// </summary>
    public static float ExportScaleOfB(LoraAdapter lora) => lora.Alpha == 2f * lora.Rank ? 1f : lora.Alpha / (2f * lora.Rank);
}
