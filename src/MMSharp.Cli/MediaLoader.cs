using MMSharp.Engine;
using MMSharp.Vision;

namespace MMSharp.Cli;

/// <summary>Video frames for a prompt: pixel values of all frames' tiles, tiles per frame and the sampled frame indices.</summary>
internal sealed record VideoFrames(Tensor PixelValues, int[] NumPatches, int[] FrameIndices);

internal static class MediaLoader
{
    /// <summary>
    /// The model card's <c>load_video(path, num_segments, max_num)</c>: <paramref name="numSegments"/> frames picked by
    /// get_index, each tiled with <paramref name="maxNum"/>.
    /// </summary>
    public static VideoFrames LoadVideo(string path, int numSegments, int maxNum, int inputSize)
    {
        if (!File.Exists(path)) throw new CliException($"video '{path}' does not exist");
        if (numSegments < 1) throw new CliException($"--num-segments must be >= 1, got {numSegments}");
        var v = InternVLVideoLoader.Load(path, numSegments, maxNum, bound: null, inputSize: inputSize);
        return new VideoFrames(v.PixelValues, v.NumPatchesList, v.FrameIndices.Select(i => (int)i).ToArray());
    }
}
