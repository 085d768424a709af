using Duroslight.Storage.Devices;

namespace Duroslight.Storage.Gftl;

/// <summary>
/// One re-pack of a fragmented chunk in flight: the blocks a read found (their data, locations and sequence numbers)
/// until every relocation record copying them is on the device. Pooled per partition with its buffer.
/// </summary>
internal sealed class RepackSlot
{
    public readonly NativeBuffer Buffer = new(Partition.BufferBytes);

    /// <summary>Per block read, the location and sequence number the lookup found.</summary>
    public readonly long[] Locations = new long[GftlLayout.BlocksPerChunk];
    public readonly long[] Seqs = new long[GftlLayout.BlocksPerChunk];

    public GftlVolume Volume = null!;
    public ChunkBlocks Chunk = null!;

    /// <summary>First block read and how many.</summary>
    public long Lba;
    public int Count;

    /// <summary>Relocation records queued or being written.</summary>
    public int Pending;

    /// <summary>Under the partition's lock: what the lookup found for [lba, lba + count) of the chunk.</summary>
    public void Capture(GftlVolume volume, ChunkBlocks chunk, long lba, int count)
    {
        Volume = volume;
        Chunk = chunk;
        Lba = lba;
        Count = count;
        int first = (int)(lba % GftlLayout.BlocksPerChunk);
        for (int i = 0; i < count; i++)
        {
            Locations[i] = chunk.Entries[first + i].Location;
            Seqs[i] = chunk.Entries[first + i].Seq;
        }
    }
}

/// <summary>
/// The re-packing of one partition: up to <see cref="MaxInFlight"/> fragmented chunks rewritten at once. A host read
/// that finds its chunk fragmented hands its data to a free slot (no extra device read); when every slot is busy the
/// chunk waits in a bounded queue and a slot that frees reads it itself, so a busy slot no longer drops the request.
/// Each chunk is queued or in a slot at most once (<see cref="ChunkBlocks.Repacking"/>). Touched only under the
/// partition's lock.
/// </summary>
internal sealed class Repacker(int partition) : IDisposable
{
    /// <summary>
    /// Re-packs in flight per partition: bounds the write burst they add to the host's writes. Enough that every
    /// chunk a QD 8 sequential reader finds fragmented gets a slot while the copies before it are written (4 chunks
    /// per 512 KiB record, up to <see cref="Partition.MaxWritesInFlight"/> records): with 4, most reads found every
    /// slot busy, and each queued chunk cost a second fragmented read of its own. A slot's buffer is allocated on
    /// first use (128 KiB each).
    /// </summary>
    public const int MaxInFlight = 32;

    /// <summary>Chunks waiting for a slot; beyond this a request is dropped (a later read asks again).</summary>
    public const int QueueCapacity = 256;

    private readonly RepackSlot?[] _all = new RepackSlot?[MaxInFlight];
    private readonly Stack<RepackSlot> _free = new(MaxInFlight);
    private readonly Queue<(GftlVolume Volume, long Chunk, ChunkBlocks Blocks)> _waiting = new(QueueCapacity);
    private int _slots;

    /// <summary>Chunks queued or being re-packed (the bench waits for 0).</summary>
    public int Busy => _slots - _free.Count + _waiting.Count;

    public long Dropped { get; private set; }

    /// <summary>
    /// A read of [lba, lba + count) found the chunk fragmented. Returns the slot that takes the read's data, or null
    /// (queued, already re-packing, or dropped).
    /// </summary>
    public RepackSlot? Request(GftlVolume volume, ChunkBlocks blocks, long lba, int count)
    {
        if (blocks.Repacking || !Worth(volume, blocks, (int)(lba % GftlLayout.BlocksPerChunk), count))
        {
            return null;
        }

        if (TryTakeSlot() is { } slot)
        {
            blocks.Repacking = true;
            slot.Capture(volume, blocks, lba, count);
            return slot;
        }

        if (_waiting.Count < QueueCapacity)
        {
            blocks.Repacking = true;
            _waiting.Enqueue((volume, lba / GftlLayout.BlocksPerChunk, blocks));
        }
        else
        {
            Dropped++;
        }

        return null;
    }

    /// <summary>
    /// A slot's re-pack is over (copied, failed or abandoned): the chunk may be asked for again, and the slot takes
    /// the next waiting chunk that is still fragmented (returned with the chunk captured: the caller reads it into the
    /// slot's buffer), or goes back to the pool (null).
    /// </summary>
    public RepackSlot? Release(RepackSlot slot)
    {
        slot.Chunk.Repacking = false;
        slot.Volume = null!;
        slot.Chunk = null!;
        while (_waiting.TryDequeue(out (GftlVolume Volume, long Chunk, ChunkBlocks Blocks) next))
        {
            next.Blocks.Repacking = false;
            if (StillFragmented(next.Volume, next.Chunk, next.Blocks))
            {
                next.Blocks.Repacking = true;
                slot.Capture(next.Volume, next.Blocks, next.Chunk * GftlLayout.BlocksPerChunk, GftlLayout.BlocksPerChunk);
                return slot;
            }
        }

        _free.Push(slot);
        return null;
    }

    public void Dispose()
    {
        for (int i = 0; i < _slots; i++)
        {
            _all[i]!.Buffer.Free();
        }
    }

    /// <summary>
    /// The blocks read as <see cref="Partition.RepackMinRuns"/> device runs or more, and a re-pack can make them one:
    /// in a clone, blocks inherited from the parent cannot move (they belong to the parent's records), so a chunk
    /// holding any is left alone (re-packing around them would leave it as fragmented, and ask again at every read).
    /// </summary>
    private static bool Worth(GftlVolume volume, ChunkBlocks blocks, int first, int count)
    {
        int runs = Partition.CountMappedRuns(blocks, first, count, long.MinValue);
        return runs >= Partition.RepackMinRuns &&
            (volume.Parent is null || Partition.CountMappedRuns(blocks, first, count, volume.Entry.CreatedSeq) == runs);
    }

    /// <summary>The chunk is still the volume's (not dropped, not closed) and still worth a re-pack.</summary>
    private bool StillFragmented(GftlVolume volume, long chunk, ChunkBlocks blocks) =>
        !volume.IsClosed && volume.Maps[partition].Chunks.TryGetValue(chunk, out ChunkBlocks? mapped) && mapped == blocks &&
        Worth(volume, blocks, 0, GftlLayout.BlocksPerChunk);

    private RepackSlot? TryTakeSlot()
    {
        if (_free.TryPop(out RepackSlot? slot))
        {
            return slot;
        }

        if (_slots == MaxInFlight)
        {
            return null;
        }

        return _all[_slots++] = new RepackSlot();
    }
}
