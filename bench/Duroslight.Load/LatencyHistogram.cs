namespace Duroslight.Load;

/// <summary>
/// Log-linear latency histogram (HdrHistogram-style: 64 sub-buckets per power of two, about 1.6% resolution).
/// One per worker, merged at the end: recording is an array increment, no allocation, no lock.
/// </summary>
internal sealed class LatencyHistogram
{
    private const int SubBits = 6;
    private const int SubBuckets = 1 << SubBits;
    private readonly long[] _counts = new long[64 * SubBuckets];

    public long Count { get; private set; }

    public void Record(long nanoseconds)
    {
        _counts[Index(Math.Max(1, nanoseconds))]++;
        Count++;
    }

    public void Add(LatencyHistogram other)
    {
        for (int i = 0; i < _counts.Length; i++) _counts[i] += other._counts[i];
        Count += other.Count;
    }

    /// <summary>The value at or below which <paramref name="percentile"/>% of samples fall (upper edge of its bucket).</summary>
    public double PercentileMicroseconds(double percentile)
    {
        long rank = (long)Math.Ceiling(Count * percentile / 100.0);
        long seen = 0;
        for (int i = 0; i < _counts.Length; i++)
        {
            seen += _counts[i];
            if (seen >= rank && _counts[i] > 0) return UpperEdge(i) / 1000.0;
        }
        return 0;
    }

    private static int Index(long value)
    {
        int magnitude = 63 - System.Numerics.BitOperations.LeadingZeroCount((ulong)value);
        if (magnitude < SubBits) return (int)value;
        int sub = (int)(value >> (magnitude - SubBits)) & (SubBuckets - 1);
        return (magnitude - SubBits + 1) * SubBuckets + sub;
    }

    private static double UpperEdge(int index)
    {
        if (index < SubBuckets) return index;
        int magnitude = index / SubBuckets + SubBits - 1;
        int sub = index % SubBuckets;
        return ((long)(SubBuckets + sub + 1)) << (magnitude - SubBits);
    }
}
