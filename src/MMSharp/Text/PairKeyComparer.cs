namespace MMSharp.Text;

/// <summary>
/// Hash for pair keys packed as <c>(a &lt;&lt; 32) | b</c>. <see cref="long.GetHashCode"/> is <c>lo ^ hi</c>, which maps
/// every pair of small ids onto <c>a ^ b</c> and makes the 151k-entry merge table collide heavily (seconds to load).
/// </summary>
internal sealed class PairKeyComparer : IEqualityComparer<long>
{
    public static readonly PairKeyComparer Instance = new();

    public bool Equals(long x, long y) => x == y;

    // Fibonacci hashing: multiply by 2^64/phi and keep the high half.
    public int GetHashCode(long key) => (int)(((ulong)key * 0x9E3779B97F4A7C15UL) >> 32);
}
