namespace Duroslight.Storage.Volumes;

/// <summary>Bytes a thin in-memory pool may still hand out; shared by all volumes of one store.</summary>
internal sealed class SpaceBudget(long limitBytes)
{
    private long _usedBytes;

    public long LimitBytes { get; } = limitBytes;

    public long UsedBytes => Volatile.Read(ref _usedBytes);

    /// <summary>All or nothing: a compare-exchange loop so concurrent reservations never overshoot the limit.</summary>
    public bool TryReserve(long bytes)
    {
        long used = Volatile.Read(ref _usedBytes);
        while (true)
        {
            if (bytes > LimitBytes - used)
            {
                return false;
            }

            long seen = Interlocked.CompareExchange(ref _usedBytes, used + bytes, used);
            if (seen == used)
            {
                return true;
            }

            used = seen;
        }
    }

    public void Release(long bytes) => Interlocked.Add(ref _usedBytes, -bytes);
}
