namespace Duroslight.Storage.Gftl;

internal enum SegmentState
{
    Free,
    Open,
    Closed,

    /// <summary>Emptied by the collector, waiting for the sync and read grace period that let it be freed.</summary>
    Cleaning,
}

/// <summary>
/// A fixed run of blocks on one device, filled front to back by one writer (a shard's partition or the
/// collector) and reclaimed whole by the collector once nothing in it is referenced.
/// </summary>
internal sealed class Segment(int id, int device, long firstBlock, int blocks)
{
    public int Id { get; } = id;
    public int Device { get; } = device;
    public long FirstBlock { get; } = firstBlock;
    public int Blocks { get; } = blocks;

    /// <summary>Map entries (of all volumes) pointing into this segment; changed with Interlocked from any partition.</summary>
    public int Live;

    /// <summary>Trim records written here: they may still be needed, so the segment is reclaimed only through GC.</summary>
    public int TrimRecords;

    /// <summary>Records reserved here whose I/O has not completed; the collector leaves the segment alone until 0.</summary>
    public int Pending;

    /// <summary>Blocks handed out so far; only the segment's writer moves it.</summary>
    public int Cursor;

    public SegmentState State;

    /// <summary>The sequence number taken when the segment was last opened; stamped on each of its records.</summary>
    public long Stamp;

    public long LocationAt(int block) => GftlLayout.Location(Device, FirstBlock + block);

    /// <summary>Reserves <paramref name="blocks"/> at the cursor, or returns false when they do not fit.</summary>
    public bool TryTake(int blocks, out long location)
    {
        if (State != SegmentState.Open || Cursor + blocks > Blocks)
        {
            location = GftlLayout.Unmapped;
            return false;
        }

        location = LocationAt(Cursor);
        Cursor += blocks;
        Pending++;
        return true;
    }
}
