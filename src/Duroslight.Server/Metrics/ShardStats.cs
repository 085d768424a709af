namespace Duroslight.Server.Metrics;

/// <summary>
/// Reactor loop utilisation, filled by the transport (the io_uring reactor): per shard, the time its loop spent
/// working and the time it ran at all, as monotonically increasing Stopwatch ticks. Read at scrape time only.
/// </summary>
public interface IShardStats
{
    int ShardCount { get; }

    /// <summary>Busy and total Stopwatch ticks of one shard's loop since it started.</summary>
    void Read(int shard, out long busyTicks, out long totalTicks);
}

/// <summary>Until the reactor provides its stats: no shards, so no samples.</summary>
public sealed class NoShardStats : IShardStats
{
    public static readonly NoShardStats Instance = new();

    public int ShardCount => 0;

    public void Read(int shard, out long busyTicks, out long totalTicks) => throw new ArgumentOutOfRangeException(nameof(shard));
}

/// <summary>What the GFTL store reports about its space, write amplification and recovery; read at scrape time.</summary>
public interface IGftlStats
{
    long CapacityBytes { get; }
    long FreeBytes { get; }
    /// <summary>Device bytes written / host bytes written since start (1.0 with no GC).</summary>
    double WriteAmplification { get; }
    /// <summary>Recovery (log replay) progress 0..1; 1 once recovered.</summary>
    double RecoveryProgress { get; }
}
