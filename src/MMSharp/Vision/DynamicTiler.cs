namespace MMSharp.Vision;

/// <summary>
/// InternVL's <c>dynamic_preprocess</c>: pick a grid of cols x rows square tiles whose aspect ratio is
/// closest to the image's, resize the whole image to (cols·size, rows·size) with Pillow bicubic, cut
/// row-major tiles, and append a thumbnail (the ORIGINAL image resized to size x size) when there is
/// more than one tile and <c>useThumbnail</c>.
/// </summary>
/// <remarks>
/// Candidate grids: all (i, j) with minNum &lt;= i·j &lt;= maxNum, visited in ascending i·j. Selection uses
/// IEEE double exactly as the Python: diff = |w/h - i/j|; a strictly smaller diff wins; on an exact tie
/// the later (larger) grid wins iff w·h &gt; 0.5·size²·i·j. No two grids of equal area can tie for best,
/// so the order within one area does not matter.
/// </remarks>
public static class DynamicTiler
{
    /// <summary>Candidate (cols, rows) grids in the order Python visits them (ascending cols·rows).</summary>
    public static IReadOnlyList<(int Cols, int Rows)> TargetRatios(int minNum, int maxNum)
    {
        if (minNum < 1 || maxNum < minNum) throw new ArgumentException($"DynamicTiler: need 1 <= minNum <= maxNum, got {minNum}, {maxNum}");
        var seen = new HashSet<(int, int)>();
        var list = new List<(int Cols, int Rows)>();
        for (int n = minNum; n <= maxNum; n++)
            for (int i = 1; i <= n; i++)
                for (int j = 1; j <= n; j++)
                    if (i * j <= maxNum && i * j >= minNum && seen.Add((i, j))) list.Add((i, j));
        return list.OrderBy(r => r.Cols * r.Rows).ToList(); // OrderBy is stable, like Python's sorted
    }

    /// <summary><c>find_closest_aspect_ratio</c>, verbatim.</summary>
    public static (int Cols, int Rows) FindClosestAspectRatio(double aspectRatio, IReadOnlyList<(int Cols, int Rows)> targetRatios,
                                                              int width, int height, int imageSize)
    {
        double bestDiff = double.PositiveInfinity;
        var best = (1, 1);
        double area = (double)width * height; // exact below 2^53, as Python's int-vs-float comparison
        foreach (var r in targetRatios)
        {
            double target = (double)r.Cols / r.Rows;
            double diff = Math.Abs(aspectRatio - target);
            if (diff < bestDiff) { bestDiff = diff; best = r; }
            else if (diff == bestDiff && area > 0.5 * imageSize * imageSize * r.Cols * r.Rows) best = r;
        }
        return best;
    }

    /// <summary>The grid dynamic_preprocess picks for a <paramref name="width"/> x <paramref name="height"/> image.</summary>
    public static (int Cols, int Rows) ChooseGrid(int width, int height, int minNum = 1, int maxNum = 6, int imageSize = 448)
        => FindClosestAspectRatio((double)width / height, TargetRatios(minNum, maxNum), width, height, imageSize);

    /// <summary>Number of tiles <see cref="Tile"/> returns (grid cells + optional thumbnail).</summary>
    public static int TileCount(int width, int height, int minNum = 1, int maxNum = 6, int imageSize = 448, bool useThumbnail = false)
    {
        var (c, r) = ChooseGrid(width, height, minNum, maxNum, imageSize);
        return c * r + (useThumbnail && c * r != 1 ? 1 : 0);
    }

    /// <summary><c>dynamic_preprocess(image, min_num, max_num, image_size, use_thumbnail)</c>: row-major tiles, thumbnail last.</summary>
    public static List<RgbImage> Tile(RgbImage image, int minNum = 1, int maxNum = 6, int imageSize = 448, bool useThumbnail = false)
    {
        var (cols, rows) = ChooseGrid(image.Width, image.Height, minNum, maxNum, imageSize);
        int tw = imageSize * cols, th = imageSize * rows;
        var resized = image.Resize(tw, th);
        var tiles = new List<RgbImage>(cols * rows + 1);
        for (int i = 0; i < cols * rows; i++)
        {
            int x = i % cols * imageSize, y = i / cols * imageSize;
            tiles.Add(resized.Crop(x, y, x + imageSize, y + imageSize));
        }
        if (useThumbnail && tiles.Count != 1) tiles.Add(image.Resize(imageSize, imageSize));
        return tiles;
    }
}
