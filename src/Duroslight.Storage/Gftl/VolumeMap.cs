namespace Duroslight.Storage.Gftl;

/// <summary>Where one 4 KiB block of a volume lives, and the sequence number of the write (or trim) that put it there.</summary>
internal struct MapEntry
{
    public long Location;
    public long Seq;
}

/// <summary>The 32 blocks of one 128 KiB chunk. Unmapped entries keep the sequence number of the trim that unmapped them.</summary>
internal sealed class ChunkBlocks
{
    public readonly MapEntry[] Entries = new MapEntry[GftlLayout.BlocksPerChunk];
    public int Mapped;

    /// <summary>Queued for a re-pack or being re-packed (<see cref="Repacker"/>): asked for once.</summary>
    public bool Repacking;

    public ChunkBlocks()
    {
        for (int i = 0; i < Entries.Length; i++)
        {
            Entries[i].Location = GftlLayout.Unmapped;
        }
    }
}

/// <summary>
/// The chunks of one volume that one partition owns. Touched only under that partition's lock, so the I/O path
/// of a shard never contends with another shard.
/// </summary>
internal sealed class PartitionMap
{
    public readonly Dictionary<long, ChunkBlocks> Chunks = [];

    /// <summary>Mapped blocks in this partition; read without the lock for space reporting.</summary>
    public long MappedBlocks;

    public ChunkBlocks GetOrAdd(long chunk)
    {
        if (!Chunks.TryGetValue(chunk, out ChunkBlocks? blocks))
        {
            blocks = new ChunkBlocks();
            Chunks.Add(chunk, blocks);
        }

        return blocks;
    }

    /// <summary>The entry of block <paramref name="lba"/>, or an unmapped one.</summary>
    public MapEntry Find(long lba) =>
        Chunks.TryGetValue(lba / GftlLayout.BlocksPerChunk, out ChunkBlocks? blocks)
            ? blocks.Entries[lba % GftlLayout.BlocksPerChunk]
            : new MapEntry { Location = GftlLayout.Unmapped };
}
