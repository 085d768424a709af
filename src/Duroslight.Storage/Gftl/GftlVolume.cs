using Duroslight.Storage.Chunking;
using Duroslight.Storage.Devices;
using Duroslight.Storage.Volumes;

namespace Duroslight.Storage.Gftl;

/// <summary>
/// A thin volume of the GFTL: its blocks live wherever the log put them, found through per-partition maps.
/// Unmapped blocks read as zeros. Owned by <see cref="GftlStore"/>; a caller's Dispose is a no-op.
/// </summary>
internal sealed class GftlVolume : IBlockVolume
{
    private readonly GftlLog _core;
    private long _sizeBytes;
    private volatile bool _closed;

    public GftlVolume(GftlLog core, GftlCatalog.Entry entry, GftlVolume? parent)
    {
        _core = core;
        Entry = entry;
        Parent = parent;
        PlacementId = parent?.PlacementId ?? entry.Id;
        _sizeBytes = entry.SizeBytes;
        Maps = new PartitionMap[core.Partitions.Length];
        for (int i = 0; i < Maps.Length; i++)
        {
            Maps[i] = new PartitionMap();
        }
    }

    /// <summary>What the catalog records about this volume (replaced on resize and hide).</summary>
    public GftlCatalog.Entry Entry { get; set; }

    /// <summary>The volume this one was snapshotted or cloned from (it may be hidden), or null.</summary>
    public GftlVolume? Parent { get; }

    /// <summary>Snapshots and clones taken of this volume; replaced whole on the control path.</summary>
    public GftlVolume[] Children { get; set; } = [];

    /// <summary>One map per partition: partition p holds the chunks shard p owns.</summary>
    public PartitionMap[] Maps { get; }

    public Guid Id => Entry.Id;

    /// <summary>The origin volume's id: a snapshot or clone keeps its chunks in the same partitions as its parent's.</summary>
    public Guid PlacementId { get; }
    public int BlockSize => GftlLayout.BlockSize;
    public long SizeBytes => Volatile.Read(ref _sizeBytes);
    public bool IsClosed => _closed;

    public long AllocatedBytes
    {
        get
        {
            long blocks = 0;
            foreach (PartitionMap map in Maps)
            {
                blocks += Volatile.Read(ref map.MappedBlocks);
            }

            return blocks * GftlLayout.BlockSize;
        }
    }

    public ValueTask<StorageResult> ReadAsync(long offset, Memory<byte> destination) => ReadAsync(null, offset, destination);

    public ValueTask<StorageResult> WriteAsync(long offset, ReadOnlyMemory<byte> source) => WriteAsync(null, offset, source);

    /// <summary>Unmaps: the GFTL never stores zeros.</summary>
    public ValueTask<StorageResult> WriteZeroesAsync(long offset, long length) => DeallocateAsync(null, offset, length);

    public ValueTask<StorageResult> DeallocateAsync(long offset, long length) => DeallocateAsync(null, offset, length);

    // The forms below take the chunk's partition when a shard's channel holds it (GftlChannel); null: look it up.

    internal ValueTask<StorageResult> ReadAsync(Partition? owner, long offset, Memory<byte> destination)
    {
        StorageResult check = CheckRange(offset, destination.Length, write: false);
        if (check != StorageResult.Ok || destination.Length == 0)
        {
            return new(check);
        }

        return FitsInChunk(offset, destination.Length) ? ReadChunkAsync(owner ?? OwnerOf(offset), offset, destination) : ReadChunksAsync(offset, destination);
    }

    internal ValueTask<StorageResult> WriteAsync(Partition? owner, long offset, ReadOnlyMemory<byte> source)
    {
        StorageResult check = CheckRange(offset, source.Length, write: true);
        if (check != StorageResult.Ok || source.Length == 0)
        {
            return new(check);
        }

        return FitsInChunk(offset, source.Length) ? WriteChunkAsync(owner ?? OwnerOf(offset), offset, source) : WriteChunksAsync(offset, source);
    }

    internal ValueTask<StorageResult> DeallocateAsync(Partition? owner, long offset, long length)
    {
        StorageResult check = CheckRange(offset, length, write: true);
        if (check != StorageResult.Ok || length == 0)
        {
            return new(check);
        }

        return owner is not null && FitsInChunk(offset, length)
            ? TrimChunkAsync(owner, offset >> GftlLayout.BlockShift, (int)(length >> GftlLayout.BlockShift))
            : TrimAsync(offset >> GftlLayout.BlockShift, length >> GftlLayout.BlockShift);
    }

    public ValueTask<StorageResult> FlushAsync() =>
        _closed ? new(StorageResult.MediaError) : _core.Devices.OutOfService ? new(StorageResult.DeviceFailed) : _core.FlushAsync();

    /// <summary>
    /// The shard's partition, held by the channel rather than derived per chunk; the shard's poster is registered
    /// with the partition, so the collector and room waits run on the shard.
    /// </summary>
    public IVolumeChannel OpenChannel(StorageShard shard)
    {
        Partition partition = _core.PartitionOf(shard);
        if (shard.Poster is { } poster)
        {
            partition.Poster = poster;
        }

        return new GftlChannel(this, partition);
    }

    /// <summary>No-op: the store owns the volume.</summary>
    public void Dispose()
    {
    }

    internal void Grow(long newSizeBytes) => Volatile.Write(ref _sizeBytes, newSizeBytes);

    internal void Close() => _closed = true;

    private static bool FitsInChunk(long offset, long length) =>
        (offset >> ChunkMap.ChunkShift) == ((offset + length - 1) >> ChunkMap.ChunkShift);

    private StorageResult CheckRange(long offset, long length, bool write)
    {
        if (offset < 0 || length < 0 || offset > SizeBytes - length ||
            ((offset | length) & (GftlLayout.BlockSize - 1)) != 0)
        {
            return StorageResult.OutOfRange;
        }

        if (_core.Devices.OutOfService) return StorageResult.DeviceFailed;
        return _closed ? StorageResult.MediaError : write && Entry.ReadOnly ? StorageResult.WriteProtected : StorageResult.Ok;
    }

    // Separate methods: a lambda capturing a parameter allocates its closure on entry to the method that declares it.
    private ValueTask<StorageResult> ReadChunksAsync(long offset, Memory<byte> destination) =>
        PerChunkAsync(offset, destination.Length, (at, done, length) => ReadChunkAsync(OwnerOf(at), at, destination.Slice(done, length)));

    private ValueTask<StorageResult> WriteChunksAsync(long offset, ReadOnlyMemory<byte> source) =>
        PerChunkAsync(offset, source.Length, (at, done, length) => WriteChunkAsync(OwnerOf(at), at, source.Slice(done, length)));

    /// <summary>Runs an I/O that spans chunks (tests, the control plane) chunk by chunk; the reactor never sends one.</summary>
    private static async ValueTask<StorageResult> PerChunkAsync(long offset, int length, Func<long, int, int, ValueTask<StorageResult>> chunkOp)
    {
        int done = 0;
        foreach (ChunkSpan chunk in ChunkMap.Split(offset, length))
        {
            StorageResult result = await chunkOp(chunk.Offset, done, chunk.Length).ConfigureAwait(false);
            if (result != StorageResult.Ok)
            {
                return result;
            }

            done += chunk.Length;
        }

        return StorageResult.Ok;
    }

    private Partition OwnerOf(long offset) => _core.PartitionFor(PlacementId, offset >> ChunkMap.ChunkShift);

    /// <summary>Hands the read to the chunk's partition: runs in parallel, unmapped blocks as zeros.</summary>
    private ValueTask<StorageResult> ReadChunkAsync(Partition owner, long offset, Memory<byte> destination) =>
        owner.ReadAsync(this, offset >> GftlLayout.BlockShift, destination);

    /// <summary>Hands the write to the chunk's partition, which logs it (group commit) and maps it once it is on the device.</summary>
    private ValueTask<StorageResult> WriteChunkAsync(Partition owner, long offset, ReadOnlyMemory<byte> source) =>
        owner.WriteAsync(this, offset >> GftlLayout.BlockShift, source);

    /// <summary>
    /// Unmaps in memory first, then logs a trim record so a scan unmaps too; skipped when nothing was mapped or in
    /// flight there (the log already resolves the range to zeros).
    /// </summary>
    private ValueTask<StorageResult> TrimAsync(long lba, long count)
    {
        long seq = _core.NextSeq();
        if (TrimMaps(lba, count, seq) == 0)
        {
            return new(StorageResult.Ok);
        }

        return count <= int.MaxValue ? LogTrimAsync(lba, (int)count, seq) : LogWideTrimAsync(lba, count, seq);
    }

    /// <summary>A trim wider than one extent can say (16 TiB): logged in pieces.</summary>
    private async ValueTask<StorageResult> LogWideTrimAsync(long lba, long count, long seq)
    {
        for (long done = 0; done < count; done += int.MaxValue)
        {
            StorageResult result = await LogTrimAsync(lba + done, (int)Math.Min(int.MaxValue, count - done), seq).ConfigureAwait(false);
            if (result != StorageResult.Ok)
            {
                return result;
            }
        }

        return StorageResult.Ok;
    }

    /// <summary>Unmaps in each partition concerned: the owners of a few chunks, or every partition for a wide range.</summary>
    private long TrimMaps(long lba, long count, long seq)
    {
        ChunkSpans pieces = ChunkMap.SplitBlocks(lba, count, GftlLayout.BlockShift);
        long touched = 0;
        if (pieces.Count >= _core.Partitions.Length)
        {
            foreach (Partition partition in _core.Partitions)
            {
                touched += partition.Trim(this, lba, count, seq);
            }

            return touched;
        }

        foreach (ChunkSpan piece in pieces)
        {
            touched += _core.PartitionFor(PlacementId, piece.ChunkIndex).Trim(this, piece.Offset, piece.Length, seq);
        }

        return touched;
    }

    /// <summary>A trim of blocks of one chunk that <paramref name="partition"/> owns (the reactor's write-zeroes and deallocate).</summary>
    private ValueTask<StorageResult> TrimChunkAsync(Partition partition, long lba, int count)
    {
        long seq = _core.NextSeq();
        return partition.Trim(this, lba, count, seq) == 0 ? new(StorageResult.Ok) : partition.LogTrimAsync(this, lba, count, seq);
    }

    private ValueTask<StorageResult> LogTrimAsync(long lba, int count, long seq) =>
        _core.PartitionFor(PlacementId, lba / GftlLayout.BlocksPerChunk).LogTrimAsync(this, lba, count, seq);
}
