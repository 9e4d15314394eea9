using MMSharp.Generation;
using MMSharp.Models.InternVL;
using MMSharp.Tests.Cli;
using MMSharp.Text;

namespace MMSharp.Tests.Generation;

public class ChatSessionTests
{
    [Fact]
    public void SecondTurn_PromptIsChatWithHistory_AsTheOfficialCode()
    {
        using var dir = CliFixtures.ModelDir();
        using var model = InternVLChatModel.FromPretrained(dir.Path);
        var gen = new Generator(model, Qwen2Tokenizer.FromDirectory(dir.Path), ChatTemplate.InternVL2_5);
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
}
