using MMSharp.Generation;
using MMSharp.Models.InternVL;
using MMSharp.Tests.Cli;
using MMSharp.Text;

namespace MMSharp.Tests.Generation;

public class ChatSessionTests
{
    /// <summary>The CLI fixture checkpoint loaded with a generator; counts the tiles its vision encoder encodes.</summary>
    sealed class Loaded : IDisposable
    {
        readonly IO.TempDir _dir = CliFixtures.ModelDir();
        public readonly InternVLChatModel Model;
        public readonly Generator Gen;
        public int Encoded;

        public Loaded()
        {
            Model = InternVLChatModel.FromPretrained(_dir.Path);
            Gen = new Generator(Model, Qwen2Tokenizer.FromDirectory(_dir.Path), ChatTemplate.InternVL2_5);
            Model.Tap = (name, t) => { if (name == "vision_features") Encoded += t.Shape[0]; };
        }

        public void Dispose()
        {
            Model.Dispose();
            _dir.Dispose();
        }
    }

    [Fact]
    public void SecondTurn_PromptIsChatWithHistory_AsTheOfficialCode()
    {
        using var m = new Loaded();
        var (model, gen) = (m.Model, m.Gen);
        using var session = new ChatSession(gen, maxTiles: 2);
        session.AddImage(CliFixtures.Image("opt_64x48.jpg"));
        int tiles = session.NumPatchesList[0];
        var first = session.Ask("What is it?", 4);
        Assert.Equal("<image>\nWhat is it?", session.History[0].Question);
        Assert.Equal(first.Text, session.History[0].Answer);

        // model.chat(tokenizer, pixel_values, 'And?', history=[('<image>\nWhat is it?', answer)]): no new placeholder,
        // the one in the history takes the tiles
        string expected = InternVLPrompt.BuildChatQuery(ChatTemplate.InternVL2_5, "And?", [tiles], model.Config.NumImageToken,
            [("<image>\nWhat is it?", first.Text)]);
        Assert.Equal(expected, session.BuildPrompt(session.PrepareQuestion("And?")));
        session.Ask("And?", 2);

        // an image attached later is numbered after the first one
        session.AddImage(CliFixtures.Image("opt_37x23.jpg"));
        Assert.Equal("Image-2: <image>\nCompare.", session.PrepareQuestion("Compare."));

        session.Reset();
        Assert.Empty(session.History);
        Assert.Empty(session.NumPatchesList);
        Assert.Null(session.PixelValues());
    }

    /// <summary>Greedy picks that keep a copy of the first logits row of each answer.</summary>
    sealed class RecordingChooser : ITokenChooser
    {
        public readonly List<float[]> FirstLogits = [];

        public int Choose(ReadOnlySpan<float> logits, ReadOnlySpan<int> generated)
        {
            if (generated.Length == 0) FirstLogits.Add(logits.ToArray());
            return GreedyChooser.Instance.Choose(logits, generated);
        }
    }

    [Fact]
    public void FollowUpTurns_ReuseTheConversationsCache_AndAnswerAsAFullRecompute()
    {
        using var m = new Loaded();
        var gen = m.Gen;
        using var cached = new ChatSession(gen, maxTiles: 2);
        using var recomputed = new ChatSession(gen, maxTiles: 2, reusePrefix: false);
        var (cachedPicks, recomputedPicks) = (new RecordingChooser(), new RecordingChooser());
        string[] questions = ["What is it?", "And?", "Compare.", "Once more, longer please."];
        string[] images = ["opt_64x48.jpg", "", "opt_37x23.jpg", ""];
        int previousPrompt = 0, tilesSoFar = 0;
        for (int turn = 0; turn < questions.Length; turn++)
        {
            int newTiles = 0;
            if (images[turn] != "")
            {
                cached.AddImage(CliFixtures.Image(images[turn]));
                recomputed.AddImage(CliFixtures.Image(images[turn]));
                newTiles = cached.NumPatchesList[^1];
                tilesSoFar += newTiles;
            }
            m.Encoded = 0;
            var a = cached.Ask(questions[turn], 6, cachedPicks);
            int encodedCached = m.Encoded;
            m.Encoded = 0;
            var b = recomputed.Ask(questions[turn], 6, recomputedPicks);
            Assert.Equal(b.Tokens, a.Tokens);
            Assert.Equal(b.Text, a.Text);
            Assert.Equal(b.PromptTokens, a.PromptTokens);
            Assert.Equal(0, b.ReusedPromptTokens);
            Assert.Equal(tilesSoFar, m.Encoded);                                // the recompute encodes every image again
            Assert.Equal(newTiles, encodedCached);                              // the cached session only the new one
            if (turn == 0) Assert.Equal(0, a.ReusedPromptTokens);
            else Assert.InRange(a.ReusedPromptTokens, previousPrompt, a.PromptTokens - 1);
            previousPrompt = a.PromptTokens;
            // the first answer token's logits: reused keys and values differ from a recompute by float rounding only
            double num = 0, den = 0;
            var (x, y) = (cachedPicks.FirstLogits[turn], recomputedPicks.FirstLogits[turn]);
            for (int i = 0; i < x.Length; i++) { num += (x[i] - y[i]) * (double)(x[i] - y[i]); den += y[i] * (double)y[i]; }
            Assert.True(Math.Sqrt(num / den) <= 1e-5, $"turn {turn}: rel err {Math.Sqrt(num / den):E2}");
        }

        // a new conversation reuses nothing
        cached.Reset();
        var fresh = cached.Ask("Hi.", 3);
        Assert.Equal(0, fresh.ReusedPromptTokens);
    }

    [Fact]
    public void NewConversation_AsksAsAFreshSessionDoes_WithoutEncodingTheImagesAgain()
    {
        using var m = new Loaded();
        var (model, gen) = (m.Model, m.Gen);
        string[] images = [CliFixtures.Image("opt_64x48.jpg"), CliFixtures.Image("opt_37x23.jpg")];
        using var shared = new ChatSession(gen, maxTiles: 2);
        foreach (var f in images) shared.AddImage(f);
        shared.Ask("Describe both.", 5);
        int tiles = shared.NumPatchesList.Sum();
        Assert.Equal(tiles, m.Encoded);

        var picks = new RecordingChooser();
        shared.NewConversation();
        Assert.Empty(shared.History);
        string prepared = shared.PrepareQuestion("Which is larger?");
        m.Encoded = 0;
        var second = shared.Ask("Which is larger?", 5, picks);
        Assert.Equal(0, m.Encoded);                                             // the images' tokens were all kept
        Assert.InRange(second.ReusedPromptTokens, tiles * model.Config.NumImageToken, second.PromptTokens - 1);

        using var fresh = new ChatSession(gen, maxTiles: 2, reusePrefix: false);
        foreach (var f in images) fresh.AddImage(f);
        Assert.Equal(fresh.PrepareQuestion("Which is larger?"), prepared);     // Image-1: <image>\nImage-2: <image>\n…
        var freshPicks = new RecordingChooser();
        var expected = fresh.Ask("Which is larger?", 5, freshPicks);
        Assert.Equal(expected.Tokens, second.Tokens);
        Assert.Equal(expected.PromptTokens, second.PromptTokens);
        // the kept start was computed by the first prompt's prefill, as a fresh prefill computes it
        Assert.Equal(freshPicks.FirstLogits[0], picks.FirstLogits[0]);
    }
}
