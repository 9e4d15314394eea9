namespace MMSharp.Data;

/// <summary>
/// One assembled training sample (the official <c>LazySupervisedDataset.__getitem__</c> dict without padding):
/// token ids, labels (-100 where no loss is taken), pixel tiles [tiles, 3, S, S] float32 normalised, tiles per image and
/// per-tile <c>image_flags</c> (0 for the dummy white tile of a text-only sample).
/// </summary>
public sealed record TrainingSample(long[] InputIds, long[] Labels, float[] PixelValues, int TileCount, int ImageSize,
    int[] TilesPerImage, int[] ImageFlags, SourceLocation Source, int DatasetIndex)
{
    /// <summary>Tokens in the sample.</summary>
    public int Length => InputIds.Length;

    /// <summary>Labels that carry loss (<c>n_eff</c> of the loss reductions).</summary>
    public int SupervisedTokens => Labels.Count(l => l != IgnoreIndex);

    /// <summary>Number of images (0 for text-only; frames for a video).</summary>
    public int ImageCount => TilesPerImage.Length;

    /// <summary><c>IGNORE_TOKEN_ID</c>.</summary>
    public const long IgnoreIndex = -100;
}

/// <summary>
/// Video frames for training samples. The ffmpeg-backed reader implements this; tests use an in-memory fake.
/// </summary>
public interface IVideoFrameSource
{
    /// <summary>Opens a video (throws <see cref="FileNotFoundException"/> if it does not exist, other exceptions if unreadable).</summary>
    IVideoClip Open(string path);
}

/// <summary>An opened video.</summary>
public interface IVideoClip : IDisposable
{
    /// <summary>Number of frames (<c>vlen</c>).</summary>
    int FrameCount { get; }
    /// <summary>Frames per second.</summary>
    double Fps { get; }
    /// <summary>Decodes frame <paramref name="index"/> as RGB.</summary>
    Vision.RgbImage ReadFrame(int index);
}
