using MMSharp.Engine;

namespace MMSharp.Vision;

/// <summary>
/// Result of <see cref="InternVLVideoLoader.Load"/>: <c>pixel_values</c> F32 [sum of tiles, 3, S, S] (owned, dispose it),
/// <c>num_patches_list</c> (tiles per frame) and the decoded frame indices (from <c>get_index</c>).
/// </summary>
public sealed record VideoPixelValues(Tensor PixelValues, int[] NumPatchesList, long[] FrameIndices) : IDisposable
{
    /// <summary>Releases <see cref="PixelValues"/>.</summary>
    public void Dispose() => PixelValues.Dispose();
}

/// <summary>The InternVL model card's <c>load_video</c> (spec 4.5).</summary>
public static class InternVLVideoLoader
{
    /// <summary>
    /// <c>load_video(path, bound, input_size, max_num, num_segments)</c>: frame count and average fps as decord reports
    /// them (<see cref="VideoReader"/>), <c>get_index(bound, fps, len(vr) - 1, first_idx=0, num_segments)</c>
    /// (<see cref="VideoFrameSampler.GetIndex"/>), then per frame <c>dynamic_preprocess(frame, max_num, thumbnail on)</c>
    /// + build_transform, all tiles stacked in frame order. The model card calls it with numSegments 8, maxNum 1
    /// (one 448x448 tile per frame).
    /// </summary>
    /// <param name="path">Video file (anything ffmpeg decodes).</param>
    /// <param name="numSegments">Frames to sample.</param>
    /// <param name="maxNum">Most tiles per frame (before the thumbnail).</param>
    /// <param name="bound">(start, end) in seconds, or null for the whole video.</param>
    /// <param name="inputSize">Tile side.</param>
    public static VideoPixelValues Load(string path, int numSegments = 32, int maxNum = 1, (double Start, double End)? bound = null, int inputSize = 448)
    {
        var vr = new VideoReader(path);
        if (double.IsNaN(vr.AvgFps) || double.IsInfinity(vr.AvgFps))
            // Python fails here too: round(start * nan) raises "cannot convert float NaN to integer".
            throw new VideoDecodeException(Path.GetFileName(path), $"the video stream has no average frame rate (avg_frame_rate {vr.AvgFrameRate})");
        int[] indices = VideoFrameSampler.GetIndex(bound, vr.AvgFps, vr.FrameCount - 1, 0, numSegments);
        var frames = vr.GetBatch(indices);
        var tiles = new List<RgbImage>();
        var numPatches = new int[frames.Length];
        for (int f = 0; f < frames.Length; f++)
        {
            var t = InternVLImagePreprocessor.FrameTiles(frames[f], inputSize, maxNum);
            numPatches[f] = t.Count;
            tiles.AddRange(t);
        }
        return new VideoPixelValues(ImageNormalizer.ToTensor(tiles), numPatches, indices.Select(i => (long)i).ToArray());
    }
}
