using System.CommandLine;
using System.Runtime.Intrinsics;
using MMSharp.Engine.Kernels;

namespace MMSharp.Cli;

/// <summary><c>mmsharp info</c>: what the engine sees on this machine (SIMD paths, threads).</summary>
static class InfoCommand
{
    public static Command Build()
    {
        var cmd = new Command("info", "Show the engine's view of this machine: vector instruction sets in use and worker threads.");
        cmd.SetAction(_ =>
        {
            Console.WriteLine($"mmsharp {typeof(InfoCommand).Assembly.GetName().Version}");
            Console.WriteLine($"runtime      .NET {Environment.Version}");
            Console.WriteLine($"cores        {Environment.ProcessorCount}");
            Console.WriteLine($"threads      {Par.Threads} (MMSHARP_THREADS overrides)");
            Console.WriteLine($"avx512       {Vector512.IsHardwareAccelerated}");
            Console.WriteLine($"avx2         {Vector256.IsHardwareAccelerated}");
            return 0;
        });
        return cmd;
    }
}
