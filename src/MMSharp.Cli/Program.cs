using MMSharp.Cli;

return CliApp.Run(args);
