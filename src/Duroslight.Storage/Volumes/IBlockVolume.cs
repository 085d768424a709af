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
    /// <summary>The device under the volume was taken out of service (<see cref="DeviceHealth"/>): NVMe "Namespace Not Ready", DNR.</summary>
    DeviceFailed,
}

/// <summary>
/// The bytes of one volume. Offsets and lengths are in bytes and multiples of the volume's block size.
/// Implementations must be safe for concurrent calls on disjoint ranges (chunks are served by different shards).
/// Called directly (control plane, tests), a volume is its own channel: any range, from any thread, with that
/// thread's device I/O (<see cref="BlockIo.Current"/>); the reactor goes through <see cref="OpenChannel"/>.
/// </summary>
public interface IBlockVolume : IVolumeChannel, IDisposable
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

    /// <summary>
    /// The channel through which <paramref name="shard"/> serves the chunks it owns (control path, once per shard).
    /// By default the volume itself, for stores that do no device I/O (memory).
    /// </summary>
    IVolumeChannel OpenChannel(StorageShard shard) => this;
}
