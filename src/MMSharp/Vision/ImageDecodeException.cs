namespace MMSharp.Vision;

/// <summary>
/// A file could not be decoded: the message names the file (or "&lt;memory&gt;") and what is wrong
/// (bad signature, CRC mismatch, truncated data, unsupported feature, ...).
/// </summary>
public sealed class ImageDecodeException : IOException
{
    /// <summary>The file name (or a caller-supplied label) of the image that failed.</summary>
    public string ImageName { get; }

    /// <summary>Creates the exception; the message is "<paramref name="source"/>: <paramref name="problem"/>".</summary>
    public ImageDecodeException(string source, string problem, Exception? inner = null)
        : base($"{source}: {problem}", inner)
    {
        ImageName = source;
    }
}
