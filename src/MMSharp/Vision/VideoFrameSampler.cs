namespace MMSharp.Vision;

/// <summary>InternVL model-card video frame selection (<c>get_index</c>), exact.</summary>
public static class VideoFrameSampler
{
    /// <summary>
    /// <c>get_index(bound, fps, max_frame, first_idx, num_segments)</c>:
    /// start = max(first_idx, round(start_s·fps)), end = min(round(end_s·fps), max_frame) (no bound: ±100000 s),
    /// seg = (end - start) / n, index_k = int(start + seg/2 + round(seg·k)).
    /// Python's round and np.round are round-half-to-even; int() truncates toward zero.
    /// </summary>
    /// <param name="bound">(start, end) in seconds, or null for the whole video.</param>
    /// <param name="fps">Average frame rate of the video.</param>
    /// <param name="maxFrame">Index of the last frame (frame count - 1).</param>
    /// <param name="firstIdx">Lowest frame index allowed.</param>
    /// <param name="numSegments">Number of frames to pick.</param>
    public static int[] GetIndex((double Start, double End)? bound, double fps, int maxFrame, int firstIdx = 0, int numSegments = 32)
    {
        if (numSegments <= 0) throw new ArgumentException($"GetIndex: numSegments must be positive, got {numSegments}");
        double start = bound?.Start ?? -100000, end = bound?.End ?? 100000;
        long startIdx = Math.Max(firstIdx, (long)Math.Round(start * fps, MidpointRounding.ToEven));
        long endIdx = Math.Min((long)Math.Round(end * fps, MidpointRounding.ToEven), maxFrame);
        double seg = (double)(endIdx - startIdx) / numSegments;
        var idx = new int[numSegments];
        for (int k = 0; k < numSegments; k++)
            idx[k] = (int)(startIdx + seg / 2 + Math.Round(seg * k, MidpointRounding.ToEven));
        return idx;
    }
}
