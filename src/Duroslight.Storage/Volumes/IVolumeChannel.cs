namespace Duroslight.Storage.Volumes;

/// <summary>
/// One volume as one shard serves it (SPDK's io_channel, Seastar's sharded&lt;&gt;): opened once per (volume, shard)
/// on the control path with <see cref="IBlockVolume.OpenChannel"/>, then used only on that shard's thread, for the
/// chunks that shard owns. It does its device I/O through the shard's <see cref="StorageShard.Io"/> rather than
/// whatever the calling thread has, and (GFTL) holds the shard's partition instead of deriving it per call.
/// </summary>
public interface IVolumeChannel
{
    ValueTask<StorageResult> ReadAsync(long offset, Memory<byte> destination);

    /// <summary>
    /// A read without a copy, where the volume can lend its own memory for the range (the memory store's pages): the
    /// caller sends straight from <paramref name="data"/>, which stays valid (mapped, never moved) while the volume's
    /// store lives. The memory is retained once for the caller, who releases it with its manager's Unpin when done
    /// (a send pins it again for its own time): until then the volume's store does not reuse it for other data. What
    /// is sent is the range's content when the send runs, which a write or deallocate the host issued before this read
    /// completed may already have changed (also within a block). False: use <see cref="ReadAsync"/>.
    /// </summary>
    bool TryLend(long offset, int length, out ReadOnlyMemory<byte> data)
    {
        data = default;
        return false;
    }

    ValueTask<StorageResult> WriteAsync(long offset, ReadOnlyMemory<byte> source);

    /// <summary>Makes the range read as zeros; may unmap it.</summary>
    ValueTask<StorageResult> WriteZeroesAsync(long offset, long length);

    /// <summary>Unmaps the range; it reads as zeros afterwards (Identify NS DLFEAT = 001b).</summary>
    ValueTask<StorageResult> DeallocateAsync(long offset, long length);

    /// <summary>Makes every acknowledged write durable.</summary>
    ValueTask<StorageResult> FlushAsync();
}

/// <summary>
/// The shard a channel serves. <paramref name="Index"/> is its place among <paramref name="Count"/> shards, the
/// owner that <see cref="Chunking.ChunkMap.OwnerShard"/> names for a chunk (and, in the GFTL, the partition that
/// holds that chunk's map); <paramref name="Io"/> is its device I/O (the shard's ring on the reactor);
/// <paramref name="Poster"/> runs work on the shard's thread (null off the reactor), so background storage work
/// (the GFTL collector) can run there in slices between host I/O.
/// </summary>
public readonly record struct StorageShard(int Index, int Count, IBlockIo Io, IWorkPoster? Poster = null);

/// <summary>Runs work later on one thread (a reactor shard), after what is already queued there. Post cached delegates: the reactor keeps one wrapper per delegate.</summary>
public interface IWorkPoster
{
    void Post(Action work);

    /// <summary>True when called on the poster's own thread (only there may <see cref="AtIterationEnd"/> be called).</summary>
    bool IsCurrent => false;

    /// <summary>
    /// On the poster's thread: runs <paramref name="work"/> at the end of the current loop iteration, after everything the
    /// iteration received and before its I/O goes to the kernel (so work batched there adds no latency). Once per call.
    /// </summary>
    void AtIterationEnd(Action work) => Post(work);
}
