namespace MMSharp.Engine.IO;

/// <summary>
/// A checkpoint file (safetensors, index, npy) is malformed, truncated or unsupported.
/// The message always starts with the file path and, when one is involved, names the tensor;
/// both are also available as properties so callers and tests need not parse the text.
/// </summary>
public sealed class CheckpointFormatException : IOException
{
    public string FilePath { get; }
    public string? TensorName { get; }

    public CheckpointFormatException(string filePath, string? tensorName, string problem, Exception? inner = null)
        : base(Format(filePath, tensorName, problem), inner)
    {
        FilePath = filePath;
        TensorName = tensorName;
    }

    static string Format(string file, string? tensor, string problem) =>
        tensor == null ? $"{file}: {problem}" : $"{file}: tensor '{tensor}': {problem}";
}
