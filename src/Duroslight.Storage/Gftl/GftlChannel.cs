using Duroslight.Storage.Volumes;

namespace Duroslight.Storage.Gftl;

/// <summary>
/// A GFTL volume on one shard: chunk I/O goes straight to the shard's partition (partition index = shard index,
/// <see cref="GftlCore.PartitionOf"/>), with no per-call placement lookup. The router only sends this shard the
/// chunks it owns, one chunk per call; a range across chunks (never sent) falls back to the volume's own path.
/// The partition's device I/O runs on the calling thread's I/O, which on the shard is the shard's ring.
/// </summary>
internal sealed class GftlChannel(GftlVolume volume, Partition partition) : IVolumeChannel
{
    public ValueTask<StorageResult> ReadAsync(long offset, Memory<byte> destination)
    {
        StorageResult check = volume.CheckRange(offset, destination.Length, write: false);
        if (check != StorageResult.Ok || destination.Length == 0) return new(check);
        return GftlVolume.FitsInChunk(offset, destination.Length)
            ? partition.ReadAsync(volume, offset >> GftlLayout.BlockShift, destination)
            : volume.ReadAsync(offset, destination);
    }

    public ValueTask<StorageResult> WriteAsync(long offset, ReadOnlyMemory<byte> source)
    {
        StorageResult check = volume.CheckRange(offset, source.Length, write: true);
        if (check != StorageResult.Ok || source.Length == 0) return new(check);
        return GftlVolume.FitsInChunk(offset, source.Length)
            ? partition.WriteAsync(volume, offset >> GftlLayout.BlockShift, source)
            : volume.WriteAsync(offset, source);
    }

    /// <summary>Unmaps: the GFTL never stores zeros.</summary>
    public ValueTask<StorageResult> WriteZeroesAsync(long offset, long length) => DeallocateAsync(offset, length);

    public ValueTask<StorageResult> DeallocateAsync(long offset, long length)
    {
        StorageResult check = volume.CheckRange(offset, length, write: true);
        if (check != StorageResult.Ok || length == 0) return new(check);
        return GftlVolume.FitsInChunk(offset, length)
            ? volume.TrimChunkAsync(partition, offset >> GftlLayout.BlockShift, (int)(length >> GftlLayout.BlockShift))
            : volume.DeallocateAsync(offset, length);
    }

    /// <summary>Every device of the store (the log is shared by all partitions).</summary>
    public ValueTask<StorageResult> FlushAsync() => volume.FlushAsync();
}
