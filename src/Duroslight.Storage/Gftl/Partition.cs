using Duroslight.Storage.Devices;

namespace Duroslight.Storage.Gftl;

internal enum ReserveResult
{
    Ok,
    NoSpace,
    Closed,
}

/// <summary>
/// What one reactor shard owns: the map entries of the chunks it owns (in every volume), its open segment,
/// its I/O buffers and its in-flight records. Guarded by its own lock, uncontended in production where only the
/// shard's thread comes here; other callers (tests, control plane, the collector) take it briefly.
/// </summary>
internal sealed class Partition(GftlCore core, int index) : IDisposable
{
    /// <summary>A record header plus one chunk of data.</summary>
    public const int BufferBytes = GftlLayout.BlockSize + Chunking.ChunkMap.ChunkSize;

    private readonly object _gate = new();
    private readonly Stack<NativeBuffer> _buffers = new();
    private readonly Stack<PendingRecord> _spare = new();
    private readonly List<PendingRecord> _inflight = [];
    private readonly long[] _readers = new long[2];
    private Segment? _open;
    private int _readEpoch;
    private long _userBlocks;
    private long _recordBlocks;

    public int Index { get; } = index;
    public object Gate => _gate;

    /// <summary>Records reserved and not completed; read under <see cref="Gate"/> (snapshots wait for 0).</summary>
    public int InflightCount => _inflight.Count;

    public long UserBlocks => Volatile.Read(ref _userBlocks);

    /// <summary>Blocks this partition wrote (headers included).</summary>
    public long RecordBlocks => Volatile.Read(ref _recordBlocks);

    /// <summary>Reserves a record (header, plus <paramref name="count"/> data blocks unless it is a trim) in the open segment.</summary>
    public ReserveResult TryReserve(GftlVolume volume, long lba, int count, long trimSeq, out PendingRecord? record)
    {
        record = null;
        bool trim = trimSeq != 0;
        lock (_gate)
        {
            if (volume.IsClosed)
            {
                return ReserveResult.Closed;
            }

            if (!TryTakeSpace(trim ? 1 : 1 + count, out Segment? segment, out long location))
            {
                return ReserveResult.NoSpace;
            }

            record = _spare.Count > 0 ? _spare.Pop() : new PendingRecord();
            record.Volume = volume;
            record.Segment = segment;
            record.Location = location;
            record.Lba = lba;
            record.Count = count;
            record.Seq = trim ? trimSeq : core.NextSeq();
            record.Chunk = trim ? null : volume.Maps[Index].GetOrAdd(lba / GftlLayout.BlocksPerChunk);
            record.Buffer = _buffers.Count > 0 ? _buffers.Pop() : new NativeBuffer(BufferBytes);
            if (trim)
            {
                Interlocked.Increment(ref segment.TrimRecords);
            }

            _inflight.Add(record);
            return ReserveResult.Ok;
        }
    }

    /// <summary>Completes a record: a successful data write is mapped (unless a newer write or a trim got there first).</summary>
    public void Complete(PendingRecord record, bool written)
    {
        lock (_gate)
        {
            _inflight.Remove(record);
            Interlocked.Decrement(ref record.Segment.Pending);
            if (written && record.Chunk is not null)
            {
                if (!record.Volume.IsClosed)
                {
                    Map(record.Volume.Maps[Index], record.Chunk, record);
                }

                MapIntoLaterSnapshots(record.Volume, record);
            }

            _userBlocks += record.Chunk is null ? 0 : record.Count;
            _recordBlocks += 1 + (record.Chunk is null ? 0 : record.Count);
            _buffers.Push(record.Buffer);
            record.Volume = null!;
            record.Chunk = null;
            _spare.Push(record);
        }
    }

    /// <summary>True while a record older than <paramref name="seq"/> is in flight here (a snapshot's cut waits for them).</summary>
    public bool HasInflightBelow(long seq)
    {
        lock (_gate)
        {
            foreach (PendingRecord record in _inflight)
            {
                if (record.Seq < seq)
                {
                    return true;
                }
            }

            return false;
        }
    }

    /// <summary>
    /// Unmaps the blocks of [lba, lba + count) that this partition owns, as of trim <paramref name="seq"/>. Returns how
    /// many mapped or in-flight blocks it touched: 0 means the range already reads as zeros here.
    /// </summary>
    public long Trim(GftlVolume volume, long lba, long count, long seq)
    {
        lock (_gate)
        {
            long touched = CountInflightOverlaps(volume, lba, count, seq) + TrimMap(volume.Maps[Index], lba, count, seq);
            TrimLaterSnapshots(volume, lba, count, seq);
            return touched;
        }
    }

    /// <summary>
    /// The run of blocks from <paramref name="lba"/> (at most <paramref name="max"/>) that is either all unmapped
    /// or contiguous on one device. A mapped run registers a reader (see <see cref="FlipReadEpoch"/>) and rents a buffer.
    /// Returns 0 when the volume is closed.
    /// </summary>
    public int LookupRun(GftlVolume volume, long lba, int max, out long location, out int epoch, out NativeBuffer? buffer)
    {
        location = GftlLayout.Unmapped;
        epoch = 0;
        buffer = null;
        lock (_gate)
        {
            if (volume.IsClosed)
            {
                return 0;
            }

            if (!volume.Maps[Index].Chunks.TryGetValue(lba / GftlLayout.BlocksPerChunk, out ChunkBlocks? blocks))
            {
                return max;
            }

            int first = (int)(lba % GftlLayout.BlocksPerChunk);
            location = blocks.Entries[first].Location;
            int run = 1;
            while (run < max && blocks.Entries[first + run].Location == (location == GftlLayout.Unmapped ? location : location + run))
            {
                run++;
            }

            if (location != GftlLayout.Unmapped)
            {
                epoch = _readEpoch;
                Interlocked.Increment(ref _readers[epoch]);
                buffer = _buffers.Count > 0 ? _buffers.Pop() : new NativeBuffer(BufferBytes);
            }

            return run;
        }
    }

    public void EndRead(int epoch, NativeBuffer buffer)
    {
        Interlocked.Decrement(ref _readers[epoch]);
        lock (_gate)
        {
            _buffers.Push(buffer);
        }
    }

    /// <summary>
    /// Starts a read grace period: reads that looked up a location before now count in the returned epoch, and once
    /// <see cref="ReadersDrained"/> says so, none of them can still be reading a segment the collector just emptied.
    /// </summary>
    public int FlipReadEpoch()
    {
        lock (_gate)
        {
            int old = _readEpoch;
            _readEpoch ^= 1;
            return old;
        }
    }

    public bool ReadersDrained(int epoch) => Volatile.Read(ref _readers[epoch]) == 0;

    /// <summary>True when the volume's block <paramref name="lba"/> points at <paramref name="location"/>.</summary>
    public bool References(GftlVolume volume, long lba, long location)
    {
        lock (_gate)
        {
            return volume.Maps[Index].Find(lba).Location == location;
        }
    }

    /// <summary>Moves the volume's block from <paramref name="from"/> to <paramref name="to"/> if it still points there.</summary>
    public bool Relocate(GftlVolume volume, long lba, long from, long to)
    {
        lock (_gate)
        {
            if (!volume.Maps[Index].Chunks.TryGetValue(lba / GftlLayout.BlocksPerChunk, out ChunkBlocks? blocks))
            {
                return false;
            }

            ref MapEntry entry = ref blocks.Entries[lba % GftlLayout.BlocksPerChunk];
            if (entry.Location != from)
            {
                return false;
            }

            entry.Location = to;
            return true;
        }
    }

    /// <summary>True when some block of [lba, lba + count) within one chunk is unmapped.</summary>
    public bool HasUnmapped(GftlVolume volume, long lba, int count)
    {
        lock (_gate)
        {
            if (!volume.Maps[Index].Chunks.TryGetValue(lba / GftlLayout.BlocksPerChunk, out ChunkBlocks? blocks))
            {
                return true;
            }

            int first = (int)(lba % GftlLayout.BlocksPerChunk);
            for (int i = first; i < first + count; i++)
            {
                if (blocks.Entries[i].Location == GftlLayout.Unmapped)
                {
                    return true;
                }
            }

            return false;
        }
    }

    /// <summary>Drops every entry of the volume here (delete); the segments lose those references.</summary>
    public void DropVolume(GftlVolume volume)
    {
        lock (_gate)
        {
            ShardMap map = volume.Maps[Index];
            foreach (ChunkBlocks blocks in map.Chunks.Values)
            {
                foreach (MapEntry entry in blocks.Entries)
                {
                    if (entry.Location != GftlLayout.Unmapped)
                    {
                        Unreference(entry.Location);
                    }
                }
            }

            map.Chunks.Clear();
            map.MappedBlocks = 0;
        }
    }

    /// <summary>The open segment is left as it is (closed) at shutdown; recovery never reopens it.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            while (_buffers.TryPop(out NativeBuffer? buffer))
            {
                buffer.Free();
            }
        }
    }

    private bool TryTakeSpace(int blocks, out Segment segment, out long location)
    {
        if (_open is not null && _open.TryTake(blocks, out location))
        {
            segment = _open;
            return true;
        }

        if (_open is not null)
        {
            core.Allocator.Close(_open);
        }

        _open = core.Allocator.TryOpen(forCollector: false);
        segment = _open!;
        location = GftlLayout.Unmapped;
        return _open is not null && _open.TryTake(blocks, out location);
    }

    private long TrimMap(ShardMap map, long lba, long count, long seq)
    {
        long touched = 0;
        long firstChunk = lba / GftlLayout.BlocksPerChunk;
        long lastChunk = (lba + count - 1) / GftlLayout.BlocksPerChunk;
        if (lastChunk - firstChunk < map.Chunks.Count)
        {
            for (long chunk = firstChunk; chunk <= lastChunk; chunk++)
            {
                if (map.Chunks.TryGetValue(chunk, out ChunkBlocks? blocks))
                {
                    touched += TrimChunk(map, chunk, blocks, lba, count, seq);
                }
            }
        }
        else
        {
            // A range wider than what is mapped (a whole-volume discard): walk the map instead.
            foreach ((long chunk, ChunkBlocks blocks) in map.Chunks)
            {
                if (chunk >= firstChunk && chunk <= lastChunk)
                {
                    touched += TrimChunk(map, chunk, blocks, lba, count, seq);
                }
            }
        }

        return touched;
    }

    // Snapshots without quiescing (see GftlStore.Derive): a snapshot or clone holds its parent's records older
    // than its base sequence number. A write or trim older than that which completes after the snapshot's cut
    // must reach the snapshot's map too (and its own snapshots'), as a scan of the log would resolve it.
    private void MapIntoLaterSnapshots(GftlVolume volume, PendingRecord record)
    {
        foreach (GftlVolume child in volume.Children)
        {
            if (child.Entry.BaseSeq > record.Seq)
            {
                if (!child.IsClosed)
                {
                    ShardMap map = child.Maps[Index];
                    Map(map, map.GetOrAdd(record.Lba / GftlLayout.BlocksPerChunk), record);
                }

                MapIntoLaterSnapshots(child, record);
            }
        }
    }

    private void TrimLaterSnapshots(GftlVolume volume, long lba, long count, long seq)
    {
        foreach (GftlVolume child in volume.Children)
        {
            if (child.Entry.BaseSeq > seq)
            {
                TrimMap(child.Maps[Index], lba, count, seq);
                TrimLaterSnapshots(child, lba, count, seq);
            }
        }
    }

    private int TrimChunk(ShardMap map, long chunk, ChunkBlocks blocks, long lba, long count, long seq)
    {
        long chunkStart = chunk * GftlLayout.BlocksPerChunk;
        int first = (int)(Math.Max(lba, chunkStart) - chunkStart);
        int end = (int)(Math.Min(lba + count, chunkStart + GftlLayout.BlocksPerChunk) - chunkStart);
        int touched = 0;
        for (int i = first; i < end; i++)
        {
            ref MapEntry entry = ref blocks.Entries[i];
            if (entry.Seq >= seq)
            {
                continue;
            }

            if (entry.Location != GftlLayout.Unmapped)
            {
                Unreference(entry.Location);
                blocks.Mapped--;
                map.MappedBlocks--;
                touched++;
            }

            entry.Location = GftlLayout.Unmapped;
            entry.Seq = seq;
        }

        // Without writes in flight nobody needs the trim's sequence number kept in the entries.
        if (blocks.Mapped == 0 && _inflight.Count == 0)
        {
            map.Chunks.Remove(chunk);
        }

        return touched;
    }

    /// <summary>
    /// Writes older than the trim still in flight here. Their records may already be on disk, so the trim must be
    /// logged even if nothing is mapped yet; in memory the entries' trim sequence number keeps them from mapping.
    /// </summary>
    private long CountInflightOverlaps(GftlVolume volume, long lba, long count, long seq)
    {
        long overlaps = 0;
        foreach (PendingRecord record in _inflight)
        {
            if (record.Volume == volume && record.Chunk is not null && record.Seq < seq &&
                record.Lba < lba + count && lba < record.Lba + record.Count)
            {
                overlaps++;
            }
        }

        return overlaps;
    }

    private void Map(ShardMap map, ChunkBlocks blocks, PendingRecord record)
    {
        int first = (int)(record.Lba % GftlLayout.BlocksPerChunk);
        int added = 0;
        for (int i = 0; i < record.Count; i++)
        {
            ref MapEntry entry = ref blocks.Entries[first + i];
            if (entry.Seq > record.Seq)
            {
                continue;
            }

            if (entry.Location != GftlLayout.Unmapped)
            {
                Unreference(entry.Location);
            }
            else
            {
                blocks.Mapped++;
                map.MappedBlocks++;
            }

            entry.Location = record.Location + 1 + i;
            entry.Seq = record.Seq;
            added++;
        }

        Interlocked.Add(ref record.Segment.Live, added);
    }

    private void Unreference(long location) => Interlocked.Decrement(ref core.Allocator.SegmentOf(location).Live);
}
