using MMSharp.Engine;

namespace MMSharp.Vision;

/// <summary>
/// The InternVL model-card <c>load_image(path, input_size=448, max_num=12)</c>:
/// <c>Image.open(path).convert('RGB')</c> -> <see cref="DynamicTiler.Tile"/> (thumbnail on) ->
/// per tile <c>build_transform</c> (Resize to input_size — a copy for tiles that already have that size —
/// ToTensor, Normalize with ImageNet mean/std) -> stacked float32 [tiles, 3, input_size, input_size].
/// The model card then casts to bf16 (<c>tensor.To(DType.BF16)</c>, round-to-nearest-even like torch).
/// </summary>
public static class InternVLImagePreprocessor
{
    /// <summary>Tiles of a decoded image, after build_transform's resize (which is a no-op for tiles).</summary>
    public static List<RgbImage> Tiles(RgbImage image, int inputSize = 448, int maxNum = 12, int minNum = 1, bool useThumbnail = true)
    {
        var tiles = DynamicTiler.Tile(image, minNum, maxNum, inputSize, useThumbnail);
        for (int i = 0; i < tiles.Count; i++)
            if (tiles[i].Width != inputSize || tiles[i].Height != inputSize) tiles[i] = tiles[i].Resize(inputSize, inputSize);
        return tiles;
    }

    /// <summary>pixel_values for one image as a float32 array [tiles, 3, inputSize, inputSize] and its tile count.</summary>
    public static float[] PixelValues(RgbImage image, out int tileCount, int inputSize = 448, int maxNum = 12, bool useThumbnail = true)
    {
        var tiles = Tiles(image, inputSize, maxNum, 1, useThumbnail);
        tileCount = tiles.Count;
        return ImageNormalizer.ToChwBatch(tiles);
    }

    /// <summary><c>load_image(path, input_size, max_num)</c> as an F32 tensor [tiles, 3, inputSize, inputSize] (caller disposes).</summary>
    public static Tensor LoadImage(string path, int inputSize = 448, int maxNum = 12)
    {
        var tiles = Tiles(RgbImage.Load(path), inputSize, maxNum);
        return ImageNormalizer.ToTensor(tiles);
    }

    /// <summary>
    /// Several images for one prompt (spec 4.4): each image tiled on its own, tiles concatenated along dim 0,
    /// and <paramref name="numPatches"/> = tiles per image (<c>num_patches_list</c>).
    /// </summary>
    public static Tensor LoadImages(IReadOnlyList<string> paths, out int[] numPatches, int inputSize = 448, int maxNum = 12)
    {
        if (paths.Count == 0) throw new ArgumentException("LoadImages: no paths");
        var all = new List<RgbImage>();
        numPatches = new int[paths.Count];
        for (int i = 0; i < paths.Count; i++)
        {
            var tiles = Tiles(RgbImage.Load(paths[i]), inputSize, maxNum);
            numPatches[i] = tiles.Count;
            all.AddRange(tiles);
        }
        return ImageNormalizer.ToTensor(all);
    }

    /// <summary>Training rule for multi-image samples: each image gets <c>max(1, maxDynamicPatch // numImages)</c> tiles at most.</summary>
    public static int MaxNumPerImage(int maxDynamicPatch, int numImages) => Math.Max(1, maxDynamicPatch / Math.Max(1, numImages));

    /// <summary>
    /// One video frame as in the model card's <c>load_video</c>: <c>dynamic_preprocess(frame, max_num)</c> with the
    /// thumbnail on (with the default max_num = 1: one 448x448 bicubic resize of the whole frame).
    /// </summary>
    public static List<RgbImage> FrameTiles(RgbImage frame, int inputSize = 448, int maxNum = 1) => Tiles(frame, inputSize, maxNum);
}
