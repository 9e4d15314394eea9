using System.Text.RegularExpressions;
using MMSharp.Engine;
using MMSharp.Engine.IO;
using MMSharp.NN;
using MMSharp.Tests.IO;

namespace MMSharp.Tests.NN;

public sealed class ModuleTests : IDisposable
{
    readonly TempDir _dir = new();
    public void Dispose() => _dir.Dispose();

    static readonly string[] ExpectedNames =
    [
        "vision_model.embeddings.class_embedding",
        "mlp1.0.weight", "mlp1.1.weight", "mlp1.1.bias", "mlp1.3.weight", "mlp1.3.bias",
        "language_model.model.embed_tokens.weight",
        "language_model.model.layers.0.self_attn.q_proj.weight", "language_model.model.layers.0.self_attn.q_proj.bias",
        "language_model.model.layers.0.self_attn.k_proj.weight", "language_model.model.layers.0.self_attn.k_proj.bias",
        "language_model.model.layers.0.self_attn.v_proj.weight", "language_model.model.layers.0.self_attn.v_proj.bias",
        "language_model.model.layers.0.self_attn.o_proj.weight",
        "language_model.model.layers.0.input_layernorm.weight",
        "language_model.model.layers.1.self_attn.q_proj.weight", "language_model.model.layers.1.self_attn.q_proj.bias",
        "language_model.model.layers.1.self_attn.k_proj.weight", "language_model.model.layers.1.self_attn.k_proj.bias",
        "language_model.model.layers.1.self_attn.v_proj.weight", "language_model.model.layers.1.self_attn.v_proj.bias",
        "language_model.model.layers.1.self_attn.o_proj.weight",
        "language_model.model.layers.1.input_layernorm.weight",
        "language_model.model.norm.weight",
        "language_model.lm_head.weight",
    ];

    [Fact]
    public void NamedParameters_AreHuggingFaceDottedNames_InDefinitionOrder()
    {
        using var m = new TinyChat();
        Assert.Equal(ExpectedNames, m.NamedParameters().Select(p => p.Name));
        Assert.Equal([4, 4], m.GetParameter("language_model.model.layers.1.self_attn.q_proj.weight").Shape);
        Assert.Same(m.LanguageModel.Model.Layers[1].SelfAttn, m.GetSubmodule("language_model.model.layers.1.self_attn"));
        Assert.Equal(["vision_model.steps"], m.NamedBuffers().Where(b => b.Buffer.Persistent).Select(b => b.Name));
        // State dict = parameters + persistent buffers (inv_freq is not persistent).
        Assert.Equal(ExpectedNames.Length + 1, m.StateSlots().Count());
        Assert.DoesNotContain(m.StateSlots(), s => s.Name.EndsWith("inv_freq"));
    }

    [Fact]
    public void DeclaredModel_HasShapesWithoutMemory_AndDataThrowsNamingTheParameter()
    {
        using var m = new TinyChat();
        Assert.All(m.Parameters(), p => Assert.False(p.IsMaterialized));
        Assert.Equal(1 * 1 * 6 + 6 + 24 + 4 + 16 + 4 + 40 + 2 * (16 + 4 + 8 + 2 + 8 + 2 + 16 + 4) + 4 + 40, m.NumParameters());
        var ex = Assert.Throws<InvalidOperationException>(() => m.LanguageModel.LmHead.Weight.Data);
        Assert.Contains("'weight'", ex.Message);
        Assert.Contains("never loaded", ex.Message);
    }

    [Fact]
    public void StateDict_RoundTripsThroughSafetensors_KeepingBF16MemoryMapped()
    {
        string path = _dir.File("model.safetensors");
        using (var src = new TinyChat().Initialise(seed: 7))
            SafeTensorsWriter.Write(path, src.StateDict());

        using var expected = new TinyChat().Initialise(seed: 7);
        using var m = new TinyChat();
        using (var r = new SafeTensorsReader(path))
        {
            var report = m.LoadStateDict(r);
            Assert.Equal(ExpectedNames.Length + 1, report.Loaded);
            Assert.Empty(report.Missing);
            Assert.Empty(report.Unexpected);
        }
        // The reader is disposed; the parameters keep the mapping alive.
        var want = expected.StateDict();
        foreach (var (name, t) in m.StateDict())
        {
            SafeTensorsRoundTripTests.AssertSameValues(want[name], t);
            Assert.Equal(name, t.Name);
        }
        var q = m.LanguageModel.Model.Layers[0].SelfAttn.QProj.Weight;
        Assert.Equal(DType.BF16, q.DType);
        Assert.True(q.Data.Storage.ReadOnly);
        Assert.IsType<MappedFile>(q.Data.Storage.Owner); // a view of the file, not a copy
    }

    [Fact]
    public void LoadStateDict_ThrowsOneErrorListingMissingUnexpectedAndMisshapenTensors_AndChangesNothing()
    {
        using var src = new TinyChat().Initialise(seed: 1);
        var state = new Dictionary<string, Tensor>(src.StateDict());
        state.Remove("language_model.lm_head.weight");
        state.Remove("mlp1.1.bias");
        using var extra = Tensor.Zeros(3);
        state["language_model.model.rotary_emb.inv_freq"] = extra;
        using var wrong = Tensor.Zeros([5, 4], DType.BF16);
        state["language_model.model.layers.1.self_attn.k_proj.weight"] = wrong;
        using var wrongType = Tensor.Zeros([1], DType.F32);
        state["vision_model.steps"] = wrongType;

        using var m = new TinyChat();
        var ex = Assert.Throws<StateDictMismatchException>(() => m.LoadStateDict(state));
        Assert.Equal(["mlp1.1.bias", "language_model.lm_head.weight"], ex.Missing);
        Assert.Equal(["language_model.model.rotary_emb.inv_freq"], ex.Unexpected);
        Assert.Equal(["language_model.model.layers.1.self_attn.k_proj.weight", "vision_model.steps"], ex.Mismatched.Select(x => x.Name).Order());
        Assert.Contains("2 missing, 1 unexpected, 2 with wrong shape or dtype", ex.Message);
        Assert.Contains("language_model.model.layers.1.self_attn.k_proj.weight: BF16[2, 4] -> BF16[5, 4]", ex.Message);
        Assert.Contains("vision_model.steps: I64[1] -> F32[1]", ex.Message);
        Assert.Contains("language_model.lm_head.weight: BF16[10, 4]", ex.Message);
        Assert.Contains("language_model.model.rotary_emb.inv_freq", ex.Message);
        Assert.All(m.Parameters(), p => Assert.False(p.IsMaterialized)); // validated before anything was set
    }

    [Fact]
    public void LoadStateDict_FromCheckpoint_ThrowsForUnsupportedDType_AndShapeMismatchEvenWhenNotStrict()
    {
        using var src = new TinyChat().Initialise(seed: 1);
        var state = new Dictionary<string, Tensor>(src.StateDict());
        using var wrong = Tensor.Zeros(7);
        state["language_model.model.norm.weight"] = wrong;
        string path = _dir.File("bad.safetensors");
        SafeTensorsWriter.Write(path, state);
        using var r = CheckpointReader.Open(path);
        using var m = new TinyChat();
        var ex = Assert.Throws<StateDictMismatchException>(() => m.LoadStateDict(r, strict: false));
        Assert.Contains(path, ex.Message);
        Assert.Contains("language_model.model.norm.weight: F32[4] -> F32[7]", ex.Message);
    }

    [Fact]
    public void LoadStateDict_NonStrict_ReportsMissingAndUnexpected_AndLoadsTheRest()
    {
        using var src = new TinyChat().Initialise(seed: 3);
        var state = new Dictionary<string, Tensor>(src.StateDict());
        state.Remove("language_model.lm_head.weight");
        using var extra = Tensor.Zeros(2);
        state["extra"] = extra;
        using var m = new TinyChat();
        var report = m.LoadStateDict(state, strict: false);
        Assert.Equal(["language_model.lm_head.weight"], report.Missing);
        Assert.Equal(["extra"], report.Unexpected);
        Assert.True(m.LanguageModel.Model.Norm.Weight.IsMaterialized);
        Assert.False(m.LanguageModel.LmHead.Weight.IsMaterialized);
    }

    [Fact]
    public void LoadStateDict_WithPrefix_LoadsOneSubmoduleFromAFullCheckpoint()
    {
        using var src = new TinyChat().Initialise(seed: 5);
        using var lm = new TinyCausalLM(vocab: 10, hidden: 4, kv: 2, layers: 2);
        var report = lm.LoadStateDict(src.StateDict(), prefix: "language_model.");
        Assert.Empty(report.Missing);
        Assert.Equal(src.LanguageModel.Model.Norm.Weight.Data.ToFloatArray(), lm.Model.Norm.Weight.Data.ToFloatArray());
    }

    [Fact]
    public void LoadStateDict_AppliesDTypePolicy()
    {
        using var src = new TinyChat().Initialise(seed: 2);
        var state = new Dictionary<string, Tensor>(src.StateDict());
        using var f32 = Ops.To(state["mlp1.1.weight"], DType.BF16);  // declared F32, stored BF16
        state["mlp1.1.weight"] = f32;

        using (var keep = new TinyChat())
        {
            keep.LoadStateDict(state);
            Assert.Equal(DType.BF16, keep.Mlp1[1].NamedParameters().First().Parameter.DType);
        }
        using (var exact = new TinyChat())
        {
            var ex = Assert.Throws<StateDictMismatchException>(() => exact.LoadStateDict(state, dtypes: DTypePolicy.Exact));
            Assert.Equal("mlp1.1.weight", Assert.Single(ex.Mismatched).Name);
        }
        using (var convert = new TinyChat())
        {
            convert.LoadStateDict(state, dtypes: DTypePolicy.ConvertToDeclared);
            var w = convert.GetParameter("mlp1.1.weight");
            Assert.Equal(DType.F32, w.DType);
            Assert.Equal(f32.ToFloatArray(), w.Data.ToFloatArray());
        }
    }

    [Fact]
    public void ConvertTo_ReplacesAFrozenMappedBF16WeightByAWritableF32Copy_KeepingNameAndFlags()
    {
        string path = _dir.File("m.safetensors");
        using (var src = new TinyChat().Initialise(seed: 9)) SafeTensorsWriter.Write(path, src.StateDict());
        using var m = new TinyChat();
        using (var r = CheckpointReader.Open(path)) m.LoadStateDict(r);
        var q = m.GetParameter("language_model.model.layers.0.self_attn.q_proj.weight");
        var before = q.Data.ToFloatArray();
        q.ConvertTo(DType.F32);
        Assert.Same(q, m.GetParameter("language_model.model.layers.0.self_attn.q_proj.weight"));
        Assert.Equal(DType.F32, q.DType);
        Assert.False(q.Data.Storage.ReadOnly);
        Assert.True(q.RequiresGrad);
        Assert.True(q.Data.RequiresGrad);
        Assert.Equal(before, q.Data.ToFloatArray());
        Assert.Throws<ArgumentException>(() => q.Set(Tensor.Zeros(3)));
    }

    [Fact]
    public void PrepareTrainableParameters_CopiesOnlyTrainableOnesToF32_AndParametersReadAsTensors()
    {
        string path = _dir.File("train.safetensors");
        using (var src = new TinyChat().Initialise(seed: 11)) SafeTensorsWriter.Write(path, src.StateDict());
        using var m = new TinyChat();
        using (var r = CheckpointReader.Open(path)) m.LoadStateDict(r);
        m.Freeze("*");
        m.Unfreeze("language_model.model.layers.1.self_attn.q_proj");
        Assert.Equal(2, m.PrepareTrainableParameters());
        var q = m.LanguageModel.Model.Layers[1].SelfAttn.QProj;
        Tensor w = q.Weight; // implicit conversion for model code
        Assert.Equal(DType.F32, w.DType);
        Assert.False(w.Storage.ReadOnly);
        Assert.True(w.RequiresGrad);
        Assert.Equal(DType.BF16, m.LanguageModel.Model.Layers[0].SelfAttn.QProj.Weight.DType);
        Assert.True(m.LanguageModel.Model.Layers[0].SelfAttn.QProj.Weight.Data.Storage.ReadOnly);
        Assert.Equal(0, m.PrepareTrainableParameters());
    }

    [Fact]
    public void Freeze_ByGlobOrRegex_SetsRequiresGradOnMatchingParametersOnly()
    {
        using var m = new TinyChat(layers: 11);
        Assert.All(m.Parameters(), p => Assert.True(p.RequiresGrad));

        int n = m.Freeze("vision_model");
        Assert.Equal(1, n);
        Assert.False(m.VisionModel.ClassEmbedding.RequiresGrad);

        // "layers.1" is a module path: it must not catch layers.10.
        m.Freeze("language_model.model.layers.1");
        Assert.All(m.LanguageModel.Model.Layers[1].Parameters(), p => Assert.False(p.RequiresGrad));
        Assert.All(m.LanguageModel.Model.Layers[10].Parameters(), p => Assert.True(p.RequiresGrad));

        m.Unfreeze();
        m.Freeze("*.self_attn.*_proj.bias");
        Assert.Equal(11 * 3, m.NamedParameters().Count(p => !p.Parameter.RequiresGrad));

        m.Unfreeze();
        m.Freeze("language_model");
        m.Unfreeze(new Regex(@"layers\.(9|10)\."));          // --unfreeze_vit_layers style
        var trainable = m.NamedParameters().Where(p => p.Parameter.RequiresGrad).Select(p => p.Name).ToList();
        Assert.All(trainable, name => Assert.True(!name.StartsWith("language_model") || Regex.IsMatch(name, @"layers\.(9|10)\.")));
        Assert.Equal(2 * 8, trainable.Count(x => x.StartsWith("language_model")));

        var ex = Assert.Throws<ArgumentException>(() => m.Freeze("vison_model"));
        Assert.Contains("vison_model", ex.Message);
    }

    [Fact]
    public void TrainAndEval_PropagateToEveryDescendant()
    {
        using var m = new TinyChat();
        Assert.True(m.LanguageModel.Model.Layers[1].SelfAttn.Training);
        m.Eval();
        Assert.All(m.NamedModules(), x => Assert.False(x.Module.Training));
        m.LanguageModel.Train();
        Assert.True(m.LanguageModel.Model.Layers[0].Training);
        Assert.False(m.VisionModel.Training);
    }

    [Fact]
    public void TiedParameter_AppearsOnceInParameters_UnderBothNamesInStateDict_AndLoadsFromEither()
    {
        using var m = new Tied();
        Assert.Equal(["embed.weight"], m.NamedParameters().Select(p => p.Name));
        using var w = Tensor.FromArray([1f, 2f, 3f, 4f, 5f, 6f], 3, 2);
        m.LoadStateDict(new Dictionary<string, Tensor> { ["head.weight"] = w });
        Assert.Equal(["embed.weight", "head.weight"], m.StateDict().Keys);
        Assert.Same(m.StateDict()["embed.weight"], m.StateDict()["head.weight"]);
    }

    sealed class Tied : Module
    {
        public Tied()
        {
            var embed = RegisterModule("embed", new TinyLinear(2, 3, bias: false));
            var head = RegisterModule("head", new HeadLike(embed.Weight));
        }
        sealed class HeadLike : Module
        {
            public HeadLike(Parameter shared) => RegisterParameter("weight", shared);
        }
    }

    [Fact]
    public void Register_ThrowsForDuplicateOrDottedNames()
    {
        Assert.Throws<ArgumentException>(() => new BadNames(dup: true));
        Assert.Throws<ArgumentException>(() => new BadNames(dup: false));
    }

    sealed class BadNames : Module
    {
        public BadNames(bool dup)
        {
            RegisterParameter("w", [1]);
            if (dup) RegisterModule("w", new TinyGelu());
            else RegisterParameter("a.b", [1]);
        }
    }

    [Fact]
    public void LoadedParameters_SurviveTheTensorScopeTheyWereLoadedIn()
    {
        using var src = new TinyChat().Initialise(seed: 4);
        using var m = new TinyChat();
        using (TensorScope.Begin())
        {
            using var t = Tensor.FromArray([1f, 2f, 3f, 4f], 4);
            m.LanguageModel.Model.Norm.Weight.Set(t);
            m.LoadStateDict(src.StateDict(), strict: false);
        }
        Assert.Equal(src.LanguageModel.Model.Norm.Weight.Data.ToFloatArray(), m.LanguageModel.Model.Norm.Weight.Data.ToFloatArray());
        Assert.Equal(ExpectedNames.Length + 1, m.Summary().Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
    }

    [Fact]
    public void DeclaredShapes_MatchCheckpointHeaders_WithoutLoading()
    {
        // Shape approval: a model built from its config, with no weights, against a checkpoint's header.
        string path = _dir.File("approve.safetensors");
        using (var src = new TinyChat().Initialise(seed: 6)) SafeTensorsWriter.Write(path, src.StateDict());
        using var r = CheckpointReader.Open(path);
        using var m = new TinyChat();
        var declared = m.StateSlots().Select(s => $"{s.Name} {Tensor.ShapeString(s.Slot.Shape)}").Order();
        var stored = r.Names.Select(n => $"{n} {Tensor.ShapeString(r.Info(n).Shape)}").Order();
        Assert.Equal(stored, declared);
    }
}
