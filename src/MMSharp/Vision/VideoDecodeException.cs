namespace MMSharp.Vision;

/// <summary>A video that ffprobe/ffmpeg cannot read, or that has no usable frames; the message names the file.</summary>
public sealed class VideoDecodeException : IOException
{
    /// <summary>File name of the video that failed.</summary>
    public string VideoName { get; }

    /// <summary>Creates the exception; the message is "<paramref name="source"/>: <paramref name="problem"/>".</summary>
    public VideoDecodeException(string source, string problem, Exception? inner = null)
        : base($"{source}: {problem}", inner)
    {
        VideoName = source;
    }
}
