namespace Duroslight.Storage.Chunking;

/// <summary>
/// The part of a range that falls in one 128 KiB chunk, in the range's unit: bytes (<see cref="ChunkMap.Split"/>)
/// or blocks (<see cref="ChunkMap.SplitBlocks"/>).
/// </summary>
/// <param name="ChunkIndex">Which chunk: byte offset / <see cref="ChunkMap.ChunkSize"/>.</param>
/// <param name="Offset">Where this part starts in the volume.</param>
/// <param name="Length">How long this part is: 1 up to a whole chunk.</param>
/// <param name="OffsetInChunk">Where this part starts inside its chunk.</param>
public readonly record struct ChunkSpan(long ChunkIndex, long Offset, int Length, int OffsetInChunk);
