using Duroslight.Storage.Devices;

namespace Duroslight.Storage.Gftl;

/// <summary>
/// A record reserved in a segment whose I/O is in flight (pooled per partition: no allocation per I/O). A trim
/// that arrives meanwhile leaves its sequence number in the chunk's entries, so the older write does not map over it.
/// </summary>
internal sealed class PendingRecord
{
    public GftlVolume Volume = null!;
    public ChunkBlocks? Chunk;
    public Segment Segment = null!;
    public NativeBuffer Buffer = null!;
    public long Lba;
    public int Count;
    public long Seq;
    public long Location;
}
