using System.CommandLine;

namespace MMSharp.Cli;

/// <summary>
/// The <c>mmsharp</c> command tree, callable in-process: <see cref="Run"/> parses <c>args</c>, runs the command with the
/// given console streams and returns the exit code (0 success, 1 a reported error, 2 a usage error).
/// </summary>
public static class CliApp
{
    /// <summary><c>--verbose</c> (any command): print the full exception (stack trace) on errors.</summary>
    internal static readonly Option<bool> Verbose = new("--verbose") { Description = "Print stack traces on errors.", Recursive = true };

    public static int Run(string[] args, TextWriter? stdout = null, TextWriter? stderr = null, TextReader? stdin = null)
    {
        var io = new CliConsole(stdout ?? Console.Out, stderr ?? Console.Error, stdin ?? Console.In);
        var root = new RootCommand("MMSharp: multimodal (vision-language) model suite for .NET — run, fine-tune, convert and scale out InternVL and Qwen-VL models.");
        root.Options.Add(Verbose);
        root.Subcommands.Add(InfoCommand.Build());
        root.Subcommands.Add(ChatCommand.Build(io));
        root.Subcommands.Add(InferCommand.Build(io));
        root.Subcommands.Add(EvalCommand.Build(io));
        root.Subcommands.Add(FinetuneCommands.Finetune(io));
        root.Subcommands.Add(FinetuneCommands.Init());
        root.Subcommands.Add(FinetuneCommands.Export());
        root.Subcommands.Add(FinetuneCommands.Demo());
        root.Subcommands.Add(DataCommands.Build());
        return root.Parse(args).Invoke(new InvocationConfiguration { Output = io.Out, Error = io.Err, EnableDefaultExceptionHandler = false });
    }
}

/// <summary>The streams a command writes to and reads from (the process console, or a test's buffers).</summary>
internal sealed record CliConsole(TextWriter Out, TextWriter Err, TextReader In)
{
    /// <summary>
    /// Runs a command body and turns any exception into one line <c>error: …</c> on stderr and exit code 1
    /// (the full exception with --verbose). Messages from the loaders, decoders and the generator already name the problem.
    /// </summary>
    public int Guard(ParseResult parse, Func<int> body)
    {
        try { return body(); }
        catch (Exception e)
        {
            Out.Flush();
            bool verbose = parse.GetValue(CliApp.Verbose);
            Err.WriteLine("error: " + OneLine(e));
            if (verbose) Err.WriteLine(e.ToString());
            Err.Flush();
            return 1;
        }
    }

    static string OneLine(Exception e)
    {
        // unwrap reflection/aggregate wrappers so the line names the real problem
        while (e is AggregateException or System.Reflection.TargetInvocationException && e.InnerException != null)
            e = e.InnerException!;
        return string.Join("; ", e.Message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
    }
}

/// <summary>A user error with a message to print as is (bad arguments, missing files).</summary>
internal sealed class CliException(string message) : Exception(message);
