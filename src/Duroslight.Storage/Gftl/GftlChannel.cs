using Duroslight.Storage.Volumes;

namespace Duroslight.Storage.Gftl;

/// <summary>
/// A GFTL volume on one shard: chunk I/O goes straight to the shard's partition (partition index = shard index,
/// <see cref="GftlLog.PartitionOf"/>), with no per-call placement lookup. The router only sends this shard the
/// chunks it owns, one chunk per call; a range across chunks (never sent) goes the volume's own way. The
/// partition's device I/O runs on the calling thread's I/O, which on the shard is the shard's ring.
/// </summary>
internal sealed class GftlChannel(GftlVolume volume, Partition partition) : IVolumeChannel
{
    public ValueTask<StorageResult> ReadAsync(long offset, Memory<byte> destination) => volume.ReadAsync(partition, offset, destination);

    public ValueTask<StorageResult> WriteAsync(long offset, ReadOnlyMemory<byte> source) => volume.WriteAsync(partition, offset, source);

    /// <summary>Unmaps: the GFTL never stores zeros.</summary>
    public ValueTask<StorageResult> WriteZeroesAsync(long offset, long length) => volume.DeallocateAsync(partition, offset, length);

    public ValueTask<StorageResult> DeallocateAsync(long offset, long length) => volume.DeallocateAsync(partition, offset, length);

    /// <summary>Every device of the store (the log is shared by all partitions).</summary>
    public ValueTask<StorageResult> FlushAsync() => volume.FlushAsync();
}
