using System.Text;

namespace MMSharp.Text;

/// <summary>
/// A conversation being built for a prompt: system message plus (role, message) turns, rendered like
/// <c>Conversation.get_prompt</c> for <c>SeparatorStyle.MPT</c>.
/// </summary>
public sealed class Conversation
{
    private readonly List<(string Role, string? Message)> _messages = new();

    /// <summary>The template (roles, separator, system template).</summary>
    public ChatTemplate Template { get; }

    /// <summary>System message substituted into <see cref="ChatTemplate.SystemTemplate"/>.</summary>
    public string SystemMessage { get; set; }

    /// <summary>Turns appended so far.</summary>
    public IReadOnlyList<(string Role, string? Message)> Messages => _messages;

    /// <summary>Starts an empty conversation; <paramref name="systemMessage"/> null = the template's default.</summary>
    public Conversation(ChatTemplate template, string? systemMessage = null)
    {
        Template = template;
        SystemMessage = systemMessage ?? template.SystemMessage;
    }

    /// <summary>Appends a turn (<c>append_message</c>); a null or empty message leaves the role open for generation.</summary>
    public Conversation Append(string role, string? message)
    {
        _messages.Add((role, message));
        return this;
    }

    /// <summary>Appends a user turn.</summary>
    public Conversation AppendUser(string message) => Append(Template.UserRole, message);

    /// <summary>Appends an assistant turn; null opens the assistant turn for generation.</summary>
    public Conversation AppendAssistant(string? message) => Append(Template.AssistantRole, message);

    /// <summary>Renders the prompt.</summary>
    /// <remarks>
    /// <code>
    /// ret = system_template.format(system_message=system_message) + sep
    /// for role, message in messages:
    ///     ret += role + message + sep  if message else  role
    /// </code>
    /// (Python's truthiness: an empty message also counts as "no message".)
    /// </remarks>
    public string GetPrompt()
    {
        var sb = new StringBuilder();
        sb.Append(Template.SystemTemplate.Replace(ChatTemplate.SystemMessagePlaceholder, SystemMessage, StringComparison.Ordinal));
        sb.Append(Template.Separator);
        foreach (var (role, message) in _messages)
        {
            sb.Append(role);
            if (!string.IsNullOrEmpty(message)) sb.Append(message).Append(Template.Separator);
        }
        return sb.ToString();
    }
}
