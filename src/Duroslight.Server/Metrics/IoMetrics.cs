using System.Collections.Frozen;
using System.Diagnostics;
using Duroslight.Protocol.Engine;
using Duroslight.Protocol.Nvme;

namespace Duroslight.Server.Metrics;

/// <summary>
/// Per-shard I/O counters: command counts, bytes, errors by status, latency histograms and in-flight commands.
/// The I/O path calls <see cref="Start"/> when a storage request begins and <see cref="Record(int,int,StorageOp,long,NvmeStatus,long)"/>
/// when it completes; both are lock-free and allocation-free (arrays sized at start). Each shard's counters have
/// one writer, the shard's thread (the request's home shard calls both), so plain increments are exact; 64-bit
/// stores are atomic, so the scrape, which only sums, reads whole values and never blocks a writer.
/// Volumes are counted per slot (0..MaxVolumeSlots-1); the control path maps volume IDs to slots with
/// <see cref="SetVolumeSlots"/>.
/// </summary>
public sealed class IoMetrics
{
    public const int MaxVolumeSlots = 1024;

    /// <summary>Upper bounds of the latency buckets, in seconds (the +Inf bucket is implicit).</summary>
    public static readonly double[] LatencyBuckets =
        [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

    private static readonly long[] BucketTicks = ToTicks(LatencyBuckets);

    private readonly ShardIoCounters[] _shards;
    private volatile FrozenDictionary<Guid, int> _slots = FrozenDictionary<Guid, int>.Empty;

    public IoMetrics(int shardCount)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(shardCount, 1);
        _shards = new ShardIoCounters[shardCount];
        for (int i = 0; i < shardCount; i++) _shards[i] = new ShardIoCounters(LatencyBuckets.Length + 1);
    }

    public int ShardCount => _shards.Length;

    public ShardIoCounters Shard(int shard) => _shards[shard];

    /// <summary>Publishes the volume-to-slot map (control path). A slot is reset before a new volume takes it.</summary>
    public void SetVolumeSlots(FrozenDictionary<Guid, int> slots) => _slots = slots;

    public void ResetVolumeSlot(int slot)
    {
        foreach (var s in _shards) s.ResetVolume(slot);
    }

    /// <summary>A request begins: counts it in flight and returns the start timestamp for Record.</summary>
    public long Start(int shard)
    {
        ShardOf(shard).InFlight++;
        return Stopwatch.GetTimestamp();
    }

    /// <summary>Convenience for the executor: shard and volume slot taken from the request.</summary>
    public long Start(StorageRequest request) => Start(request.Owner.Context.Shard);

    public void Record(StorageRequest request, NvmeStatus status, long startTimestamp)
    {
        int slot = _slots.TryGetValue(request.VolumeId, out int s) ? s : -1;
        long bytes = request.Op is StorageOp.Read or StorageOp.Write ? request.Length : 0;
        Record(request.Owner.Context.Shard, slot, request.Op, bytes, status, startTimestamp);
    }

    /// <summary>Commands the engine answered with Command Interrupted (storage timeout); their late completion is not counted.</summary>
    public void RecordTimeouts(int shard, long count) =>
        ShardOf(shard).Errors[NvmeStatus.CommandInterrupted.Field & ShardIoCounters.StatusMask] += count;

    /// <summary>
    /// A request completed. <paramref name="volumeSlot"/> is -1 when the volume is unknown (or a flush of all).
    /// Only reads and writes are counted per volume and in the histograms; every op counts its errors.
    /// </summary>
    public void Record(int shard, int volumeSlot, StorageOp op, long bytes, NvmeStatus status, long startTimestamp)
    {
        var c = ShardOf(shard);
        c.InFlight--;
        if (!status.IsSuccess) c.Errors[status.Field & ShardIoCounters.StatusMask]++;
        int dir = op switch { StorageOp.Read => 0, StorageOp.Write => 1, _ => -1 };
        if (dir < 0)
        {
            c.OtherCommands++;
            return;
        }
        long elapsed = Stopwatch.GetTimestamp() - startTimestamp;
        c.Latency[dir * c.BucketCount + Bucket(elapsed)]++;
        c.LatencyTicks[dir] += elapsed;
        c.Commands[dir]++;
        c.Bytes[dir] += bytes;
        if ((uint)volumeSlot < MaxVolumeSlots)
        {
            c.VolumeCommands[volumeSlot * 2 + dir]++;
            c.VolumeBytes[volumeSlot * 2 + dir] += bytes;
        }
    }

    private ShardIoCounters ShardOf(int shard) => _shards[(uint)shard < (uint)_shards.Length ? shard : 0];

    private static int Bucket(long ticks)
    {
        var bounds = BucketTicks;
        for (int i = 0; i < bounds.Length; i++) if (ticks <= bounds[i]) return i;
        return bounds.Length;
    }

    private static long[] ToTicks(double[] seconds)
    {
        var ticks = new long[seconds.Length];
        for (int i = 0; i < seconds.Length; i++) ticks[i] = (long)(seconds[i] * Stopwatch.Frequency);
        return ticks;
    }
}

/// <summary>One shard's counters; index 0 = read, 1 = write. Written only by the shard's thread.</summary>
public sealed class ShardIoCounters(int bucketCount)
{
    /// <summary>Status index: SCT (3 bits) and SC (8 bits) of the completion status.</summary>
    public const int StatusMask = 0x7FF;

    public readonly int BucketCount = bucketCount;
    public long InFlight;
    public long OtherCommands;
    public readonly long[] Commands = new long[2];
    public readonly long[] Bytes = new long[2];
    public readonly long[] LatencyTicks = new long[2];
    public readonly long[] Latency = new long[2 * bucketCount];
    public readonly long[] Errors = new long[StatusMask + 1];
    public readonly long[] VolumeCommands = new long[IoMetrics.MaxVolumeSlots * 2];
    public readonly long[] VolumeBytes = new long[IoMetrics.MaxVolumeSlots * 2];

    internal void ResetVolume(int slot)
    {
        for (int dir = 0; dir < 2; dir++)
        {
            Volatile.Write(ref VolumeCommands[slot * 2 + dir], 0);
            Volatile.Write(ref VolumeBytes[slot * 2 + dir], 0);
        }
    }
}
