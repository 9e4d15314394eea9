using MMSharp.Text;

namespace MMSharp.Tests.Text;

/// <summary>
/// Prompts derived by hand from conversation.py (MPT get_prompt) and modeling_internvl_chat.py chat()/batch_chat()
/// (spec internvl.md §5), and cross-checked with the prompt strings of the tokenizer fixture (make_fixtures.mjs builds
/// them independently with the same rules).
/// </summary>
public class ChatTemplateTests
{
    private const string Sys = "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。";
    private static readonly ChatTemplate T = ChatTemplate.InternVL2_5;

    [Fact]
    public void SystemMessage_IsInternVL3Default()
    {
        Assert.Equal(Sys, T.SystemMessage);
        Assert.Equal(58, Sys.Length);
        Assert.Equal(157, System.Text.Encoding.UTF8.GetByteCount(Sys));
    }

    [Fact]
    public void Chat_SingleImage_PrependsImagePlaceholder_AndExpandsTiles()
    {
        string prompt = InternVLPrompt.BuildChatQuery(T, "What is this?", numPatchesList: [2], numImageToken: 2);
        Assert.Equal(
            "<|im_start|>system\n" + Sys + "<|im_end|>\n" +
            "<|im_start|>user\n<img><IMG_CONTEXT><IMG_CONTEXT><IMG_CONTEXT><IMG_CONTEXT></img>\nWhat is this?<|im_end|>\n" +
            "<|im_start|>assistant\n", prompt);
    }

    [Fact]
    public void Chat_SingleImage_MatchesFixturePrompt_With256TokensPerTile()
    {
        string prompt = InternVLPrompt.BuildChatQuery(T, "Please describe the image shortly.", [1], 256);
        Assert.Equal(TokenizerFixtures.Items["chat_single_image"].Text, prompt);
        int[] ids = TokenizerFixtures.Fast.Encode(prompt);
        Assert.Equal(TokenizerFixtures.Items["chat_single_image"].Ids, ids);
        Assert.Equal(256, ids.Count(id => id == 151667));
    }

    [Fact]
    public void Chat_QuestionWithPlaceholder_IsNotPrefixed()
    {
        string prompt = InternVLPrompt.BuildChatQuery(T, "Look: <image> ok?", [1], 1);
        Assert.EndsWith("<|im_start|>user\nLook: <img><IMG_CONTEXT></img> ok?<|im_end|>\n<|im_start|>assistant\n", prompt);
    }

    [Fact]
    public void Chat_WithHistory_ExpandsPlaceholderOfFirstQuestion_AndDoesNotPrefix()
    {
        var history = new List<(string, string)> { ("<image>\nWhat is this?", "It is a red panda.") };
        string prompt = InternVLPrompt.BuildChatQuery(T, "Where does it live?", [1], 8, history);
        Assert.Equal(TokenizerFixtures.Items["chat_multi_turn"].Text, prompt);
        Assert.Equal(
            "<|im_start|>system\n" + Sys + "<|im_end|>\n" +
            "<|im_start|>user\n<img>" + string.Concat(Enumerable.Repeat("<IMG_CONTEXT>", 8)) + "</img>\nWhat is this?<|im_end|>\n" +
            "<|im_start|>assistant\nIt is a red panda.<|im_end|>\n" +
            "<|im_start|>user\nWhere does it live?<|im_end|>\n<|im_start|>assistant\n", prompt);
    }

    [Fact]
    public void Chat_EmptyHistory_IsNotNull_SoNoPlaceholderIsPrepended()
    {
        string prompt = InternVLPrompt.BuildChatQuery(T, "Hi", [1], 4, history: []);
        Assert.DoesNotContain("<img>", prompt);
        Assert.EndsWith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", prompt);
    }

    [Fact]
    public void Chat_MultiImage_ExpandsEachImageWithItsOwnTileCount()
    {
        Assert.Equal("Image-1: <image>\nImage-2: <image>\n", InternVLPrompt.MultiImagePrefix(2));
        string q = InternVLPrompt.MultiImagePrefix(2) + "What are the similarities and differences between these two images.";
        string prompt = InternVLPrompt.BuildChatQuery(T, q, [1, 2], 4);
        Assert.Equal(TokenizerFixtures.Items["chat_multi_image"].Text, prompt);
        Assert.Contains("Image-1: <img>" + string.Concat(Enumerable.Repeat("<IMG_CONTEXT>", 4)) + "</img>\nImage-2: <img>" +
                        string.Concat(Enumerable.Repeat("<IMG_CONTEXT>", 8)) + "</img>\nWhat", prompt);
    }

    [Fact]
    public void Chat_Video_UsesFramePrefixes()
    {
        Assert.Equal("Frame1: <image>\nFrame2: <image>\nFrame3: <image>\n", InternVLPrompt.VideoPrefix(3));
        string prompt = InternVLPrompt.BuildChatQuery(T, InternVLPrompt.VideoPrefix(2) + "What is the red panda doing?", [1, 1], 2);
        Assert.Equal(TokenizerFixtures.Items["chat_video"].Text, prompt);
    }

    [Fact]
    public void Chat_TextOnly_HasNoImageTokens()
    {
        var history = new List<(string, string)> { ("Hello, who are you?", "I am an AI assistant whose name is InternVL.") };
        string prompt = InternVLPrompt.BuildChatQuery(T, "Tell me a story", numPatchesList: null, numImageToken: 256, history);
        Assert.Equal(TokenizerFixtures.Items["chat_text_only"].Text, prompt);
    }

    [Fact]
    public void Chat_CustomSystemMessage_ReplacesDefault()
    {
        string prompt = InternVLPrompt.BuildChatQuery(T, "Hi", null, 256, systemMessage: "Be brief.");
        Assert.Equal("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", prompt);
    }

    [Fact]
    public void BatchChat_OneImagePerQuestion_AlwaysPrefixed()
    {
        var prompts = InternVLPrompt.BuildBatchQueries(T, ["A?", "<image> B?"], [1, 2], 1);
        Assert.EndsWith("<|im_start|>user\n<img><IMG_CONTEXT></img>\nA?<|im_end|>\n<|im_start|>assistant\n", prompts[0]);
        Assert.EndsWith("<|im_start|>user\n<img><IMG_CONTEXT><IMG_CONTEXT></img> B?<|im_end|>\n<|im_start|>assistant\n", prompts[1]);
        Assert.Throws<ArgumentException>(() => InternVLPrompt.BuildBatchQueries(T, ["A?"], [1, 2], 1));
    }

    [Fact]
    public void Hermes2_And_InternLM2Chat_SeparatorHasNoNewline()
    {
        foreach (var t in new[] { ChatTemplate.Hermes2, ChatTemplate.InternLM2Chat })
        {
            var conv = new Conversation(t).AppendUser("hi").AppendAssistant("yo").AppendUser("again").AppendAssistant(null);
            Assert.Equal(
                "<|im_start|>system\n你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, 是一个有用无害的人工智能助手。<|im_end|>" +
                "<|im_start|>user\nhi<|im_end|><|im_start|>assistant\nyo<|im_end|><|im_start|>user\nagain<|im_end|><|im_start|>assistant\n",
                conv.GetPrompt());
            Assert.Equal("<|im_end|>", t.StopToken);
        }
        Assert.Equal("<|endoftext|>", ChatTemplate.Hermes2.StopString);
    }

    [Fact]
    public void GetPrompt_EmptyMessage_LeavesRoleOpen_LikePythonTruthiness()
    {
        var conv = new Conversation(T, "S").AppendUser("q").AppendAssistant("");
        Assert.Equal("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n", conv.GetPrompt());
    }

    [Fact]
    public void Get_ReturnsTemplatesByConfigName_AndThrowsNamingUnknown()
    {
        Assert.Same(ChatTemplate.InternVL2_5, ChatTemplate.Get("internvl2_5"));
        Assert.Same(ChatTemplate.Hermes2, ChatTemplate.Get("Hermes-2"));
        Assert.Same(ChatTemplate.InternLM2Chat, ChatTemplate.Get("internlm2-chat"));
        var ex = Assert.Throws<ArgumentException>(() => ChatTemplate.Get("vicuna_v1.1"));
        Assert.Contains("vicuna_v1.1", ex.Message);
    }

    [Fact]
    public void StopTokenIds_ResolveImEnd_FromTokenizerFiles_PlusConfigEos()
    {
        var tok = TokenizerFixtures.Fast;
        Assert.Equal([151645], InternVLPrompt.StopTokenIds(tok, T));
        Assert.Equal([151645, 151643], InternVLPrompt.StopTokenIds(tok, T, 151643, 151645));
    }

    [Fact]
    public void ExtractResponse_CutsAtImEnd_AndTrims()
    {
        Assert.Equal("A red panda.", InternVLPrompt.ExtractResponse("  A red panda. <|im_end|>\nrest", T));
        Assert.Equal("no stop", InternVLPrompt.ExtractResponse("no stop\n", T));
    }

    [Fact]
    public void ExpandImages_IgnoresSurplusEntries_WhenNoPlaceholderLeft()
    {
        Assert.Equal("<img><IMG_CONTEXT></img> x", InternVLPrompt.ExpandImages("<image> x", [1, 3], 1));
    }
}
