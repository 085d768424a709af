namespace Duroslight.Storage.Chunking;

/// <summary>The part of an I/O range that falls in one 128 KiB chunk.</summary>
/// <param name="ChunkIndex">Which chunk: byte offset / <see cref="ChunkMap.ChunkSize"/>.</param>
/// <param name="Offset">Byte offset in the volume where this part starts.</param>
/// <param name="Length">Bytes in this part; 1..<see cref="ChunkMap.ChunkSize"/>.</param>
public readonly record struct ChunkSpan(long ChunkIndex, long Offset, int Length)
{
    /// <summary>Where this part starts inside its chunk.</summary>
    public int OffsetInChunk => (int)(Offset & (ChunkMap.ChunkSize - 1));
}
