using System.CommandLine;
using MMSharp.Cli;

var root = new RootCommand("MMSharp: multimodal (vision-language) model suite for .NET — run, fine-tune, convert and scale out InternVL and Qwen-VL models.");
root.Subcommands.Add(InfoCommand.Build());
root.Subcommands.Add(FinetuneCommands.Finetune());
root.Subcommands.Add(FinetuneCommands.Init());
root.Subcommands.Add(FinetuneCommands.Export());
root.Subcommands.Add(FinetuneCommands.Demo());
root.Subcommands.Add(DataCommands.Build());
return root.Parse(args).Invoke();
