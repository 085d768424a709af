namespace Duroslight.Storage.Volumes;

/// <summary>Outcome of one storage operation; expected failures are values, not exceptions.</summary>
public enum StorageResult
{
    Ok = 0,
    /// <summary>The backing space is exhausted (thin provisioning ran dry): NVMe "Capacity Exceeded".</summary>
    OutOfSpace,
    /// <summary>The device reported an I/O error: NVMe media error.</summary>
    MediaError,
    /// <summary>The range lies outside the volume (the engine checks first; this is a second line).</summary>
    OutOfRange,
    /// <summary>The volume is read-only (a snapshot): NVMe "Namespace is Write Protected".</summary>
    WriteProtected,
}

/// <summary>
/// The bytes of one volume. Offsets and lengths are in bytes and multiples of the volume's block size.
/// Implementations must be safe for concurrent calls on disjoint ranges (chunks are served by different shards).
/// </summary>
public interface IBlockVolume : IDisposable
{
    Guid Id { get; }

    /// <summary>
    /// The id that places the volume's chunks on shards (<see cref="Chunking.ChunkMap.OwnerShard"/>). Its own id,
    /// except for a GFTL snapshot or clone, which shares its origin's placement so that a chunk and its
    /// copy-on-write sharers sit in one partition.
    /// </summary>
    Guid PlacementId => Id;

    long SizeBytes { get; }
    int BlockSize { get; }

    /// <summary>Bytes physically allocated for this volume (thin provisioning): holes do not count.</summary>
    long AllocatedBytes { get; }

    ValueTask<StorageResult> ReadAsync(long offset, Memory<byte> destination);
    ValueTask<StorageResult> WriteAsync(long offset, ReadOnlyMemory<byte> source);

    /// <summary>Makes the range read as zeros; may unmap it.</summary>
    ValueTask<StorageResult> WriteZeroesAsync(long offset, long length);

    /// <summary>Unmaps the range; it reads as zeros afterwards (Identify NS DLFEAT = 001b).</summary>
    ValueTask<StorageResult> DeallocateAsync(long offset, long length);

    /// <summary>Makes every acknowledged write durable.</summary>
    ValueTask<StorageResult> FlushAsync();
}
