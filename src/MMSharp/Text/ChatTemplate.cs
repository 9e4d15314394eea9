namespace MMSharp.Text;

/// <summary>
/// A conversation template of InternVL's <c>conversation.py</c> (FastChat style), restricted to the templates the
/// InternVL checkpoints use. All of them use <c>SeparatorStyle.MPT</c>; see <see cref="Conversation.GetPrompt"/>.
/// </summary>
/// <param name="Name">Template name as in the checkpoint's config.json (<c>template</c>).</param>
/// <param name="SystemTemplate">Contains <c>{system_message}</c>.</param>
/// <param name="SystemMessage">Default system message.</param>
/// <param name="UserRole">Role prefix of user turns (<c>roles[0]</c>).</param>
/// <param name="AssistantRole">Role prefix of assistant turns (<c>roles[1]</c>).</param>
/// <param name="Separator">Appended after the system prompt and after every non-empty message (<c>sep</c>).</param>
/// <param name="StopString">The template's <c>stop_str</c> (informational; <c>chat()</c> does not use it).</param>
public sealed record ChatTemplate(string Name, string SystemTemplate, string SystemMessage, string UserRole,
                                  string AssistantRole, string Separator, string? StopString = null)
{
    /// <summary>The <c>{system_message}</c> placeholder in <see cref="SystemTemplate"/>.</summary>
    public const string SystemMessagePlaceholder = "{system_message}";

    /// <summary>InternVL3's (and InternVL2.5's) default system message.</summary>
    public const string InternVLSystemMessage =
        "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。";

    /// <summary>InternVL2's system message (Hermes-2 and internlm2-chat templates).</summary>
    public const string InternVL2SystemMessage =
        "你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, 是一个有用无害的人工智能助手。";

    /// <summary><c>internvl2_5</c>: InternVL2.5 and InternVL3. Separator <c>"&lt;|im_end|&gt;\n"</c>.</summary>
    public static ChatTemplate InternVL2_5 { get; } = new(
        "internvl2_5", "<|im_start|>system\n{system_message}", InternVLSystemMessage,
        "<|im_start|>user\n", "<|im_start|>assistant\n", "<|im_end|>\n");

    /// <summary><c>Hermes-2</c>: InternVL2-1B/40B. Separator <c>"&lt;|im_end|&gt;"</c> without newline.</summary>
    public static ChatTemplate Hermes2 { get; } = new(
        "Hermes-2", "<|im_start|>system\n{system_message}", InternVL2SystemMessage,
        "<|im_start|>user\n", "<|im_start|>assistant\n", "<|im_end|>", StopString: "<|endoftext|>");

    /// <summary><c>internlm2-chat</c>: InternVL2-2B/8B/26B/76B. Separator <c>"&lt;|im_end|&gt;"</c> without newline.</summary>
    public static ChatTemplate InternLM2Chat { get; } = new(
        "internlm2-chat", "<|im_start|>system\n{system_message}", InternVL2SystemMessage,
        "<|im_start|>user\n", "<|im_start|>assistant\n", "<|im_end|>");

    /// <summary>Looks a template up by its config.json name; throws listing the known names otherwise.</summary>
    public static ChatTemplate Get(string name) => name switch
    {
        "internvl2_5" => InternVL2_5,
        "Hermes-2" => Hermes2,
        "internlm2-chat" => InternLM2Chat,
        _ => throw new ArgumentException(
            $"Unknown conversation template '{name}'; known: internvl2_5, Hermes-2, internlm2-chat.", nameof(name)),
    };

    /// <summary>
    /// The token that ends an assistant reply: <c>sep.strip()</c> (<c>&lt;|im_end|&gt;</c> for all three templates).
    /// <c>chat()</c> passes its id as the only <c>eos_token_id</c>.
    /// </summary>
    public string StopToken => Separator.Trim();
}
