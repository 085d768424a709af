using Duroslight.Storage.Chunking;
using Duroslight.Storage.Devices;
using Duroslight.Storage.Volumes;

namespace Duroslight.Storage.Gftl;

/// <summary>
/// The log shared by all volumes of a store: devices, segments, partitions (one per shard), the write sequence
/// counter and the set of volumes (hidden ones included, for the collector and recovery).
/// </summary>
internal sealed class GftlLog : IDisposable
{
    private long _seq;
    private volatile GftlVolume[] _volumes = [];

    public GftlLog(DeviceSet devices, int shardCount)
    {
        Devices = devices;
        Allocator = new SegmentAllocator(devices, shardCount, NextSeq);
        Partitions = new Partition[shardCount];
        for (int i = 0; i < shardCount; i++)
        {
            Partitions[i] = new Partition(this, i);
        }
    }

    public DeviceSet Devices { get; }
    public SegmentAllocator Allocator { get; }
    public Partition[] Partitions { get; }
    public GarbageCollector Collector { get; set; } = null!;

    /// <summary>Every volume the log still holds records for: visible ones, snapshots, and hidden (deleted) parents.</summary>
    public GftlVolume[] Volumes => _volumes;

    public long LastSeq => Volatile.Read(ref _seq);

    /// <summary>
    /// Orders every write and trim. One atomic per record: the only word all shards share on the I/O path (no lock);
    /// a global order lets snapshots, trims and recovery compare records of any shard and survives a change of shard count.
    /// </summary>
    public long NextSeq() => Interlocked.Increment(ref _seq);

    public void RaiseSeq(long atLeast)
    {
        if (atLeast > _seq)
        {
            _seq = atLeast;
        }
    }

    // Partition index = shard index: partition p holds exactly the chunks that ChunkMap.OwnerShard gives to shard p
    // of Partitions.Length shards, so the reactor runs each partition on one shard. These two are the only mappings.

    /// <summary>The partition of a chunk, for callers that are not a shard's channel (control path, collector, recovery, tests).</summary>
    public Partition PartitionFor(Guid volume, long chunk) =>
        Partitions.Length == 1 ? Partitions[0] : Partitions[ChunkMap.OwnerShard(volume, chunk, Partitions.Length)];

    /// <summary>The partition a shard's channels use: the one holding the chunks that shard owns.</summary>
    public Partition PartitionOf(StorageShard shard)
    {
        if (shard.Count != Partitions.Length)
        {
            throw new InvalidOperationException($"the GFTL has {Partitions.Length} partitions but chunks are placed on {shard.Count} shards; they must be equal");
        }

        return Partitions[shard.Index];
    }

    public GftlDevice DeviceOf(long location) => Devices.Devices[GftlLayout.DeviceOf(location)];

    /// <summary>Replaces the volume set (control path, under the store's lock).</summary>
    public void SetVolumes(GftlVolume[] volumes) => _volumes = volumes;

    public GftlVolume? Find(Guid id)
    {
        foreach (GftlVolume volume in _volumes)
        {
            if (volume.Id == id)
            {
                return volume;
            }
        }

        return null;
    }

    /// <summary>fdatasync on every device: every completed record is durable. No allocation (<see cref="DeviceSync"/>).</summary>
    public ValueTask<StorageResult> FlushAsync() => DeviceSync.AllAsync(Devices.Devices);

    /// <summary>Puts an entry found by recovery into the volume's map.</summary>
    public void Install(GftlVolume volume, long lba, long location, long seq)
    {
        long chunk = lba / GftlLayout.BlocksPerChunk;
        PartitionMap map = volume.Maps[PartitionFor(volume.PlacementId, chunk).Index];
        ChunkBlocks blocks = map.GetOrAdd(chunk);
        ref MapEntry entry = ref blocks.Entries[lba % GftlLayout.BlocksPerChunk];
        if (entry.Location == GftlLayout.Unmapped)
        {
            blocks.Mapped++;
            map.MappedBlocks++;
        }
        else
        {
            Allocator.SegmentOf(entry.Location).Live--;
        }

        entry.Location = location;
        entry.Seq = seq;
        Allocator.SegmentOf(location).Live++;
    }

    /// <summary>Takes every partition's lock (in index order) once no record is in flight anywhere; false after the timeout.</summary>
    public bool TryQuiesce(TimeSpan timeout)
    {
        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        do
        {
            int held = 0;
            while (held < Partitions.Length && Monitor.TryEnter(Partitions[held].Gate, 100))
            {
                if (Partitions[held++].InflightCount != 0)
                {
                    break;
                }
            }

            if (held == Partitions.Length && Partitions[held - 1].InflightCount == 0)
            {
                return true;
            }

            Release(held);
            Thread.Sleep(1);
        }
        while (Environment.TickCount64 < deadline);

        return false;
    }

    public void EndQuiesce() => Release(Partitions.Length);

    /// <summary>Takes every partition's lock (in index order) without waiting for records in flight: a snapshot's cut.</summary>
    public void LockPartitions()
    {
        foreach (Partition partition in Partitions)
        {
            Monitor.Enter(partition.Gate);
        }
    }

    public void UnlockPartitions() => Release(Partitions.Length);

    /// <summary>
    /// Waits until every record older than <paramref name="seq"/> has completed: those were in flight at a snapshot's
    /// cut, so only they are waited for (a device write each), not a moment without writes.
    /// </summary>
    public void WaitForRecordsBelow(long seq)
    {
        foreach (Partition partition in Partitions)
        {
            while (partition.HasInflightBelow(seq))
            {
                Thread.Sleep(1);
            }
        }
    }

    public void Dispose()
    {
        foreach (Partition partition in Partitions)
        {
            partition.Dispose();
        }

        Devices.Dispose();
    }

    private void Release(int held)
    {
        for (int i = held - 1; i >= 0; i--)
        {
            Monitor.Exit(Partitions[i].Gate);
        }
    }
}
