using Duroslight.Storage.Devices;

namespace Duroslight.Storage.Gftl;

/// <summary>
/// A record reserved in a segment whose I/O is in flight (pooled per partition: no allocation per I/O).
/// Trims that arrive meanwhile note the ranges they unmapped, so the write does not resurrect them.
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
    public List<(long Lba, long Count)>? Trimmed;

    public bool WasTrimmed(long lba)
    {
        if (Trimmed is null)
        {
            return false;
        }

        foreach ((long start, long count) in Trimmed)
        {
            if (lba >= start && lba < start + count)
            {
                return true;
            }
        }

        return false;
    }
}
