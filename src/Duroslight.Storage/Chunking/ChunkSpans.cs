namespace Duroslight.Storage.Chunking;

/// <summary>
/// The chunk-sized pieces of a range, in order. A struct that is its own enumerator, so
/// <c>foreach (var span in ChunkMap.Split(offset, length))</c> allocates nothing.
/// </summary>
public struct ChunkSpans
{
    private readonly long _end;
    private readonly int _chunkShift;
    private long _next;
    private ChunkSpan _current;

    /// <param name="chunkShift">log2 of the range's units per chunk (17 for bytes, 5 for 4 KiB blocks).</param>
    internal ChunkSpans(long offset, long length, int chunkShift)
    {
        _next = offset;
        _end = offset + length;
        _chunkShift = chunkShift;
        _current = default;
    }

    /// <summary>How many pieces the range has (0 for an empty range).</summary>
    public readonly long Count =>
        _next >= _end ? 0 : ((_end - 1) >> _chunkShift) - (_next >> _chunkShift) + 1;

    public readonly ChunkSpan Current => _current;

    public readonly ChunkSpans GetEnumerator() => this;

    public bool MoveNext()
    {
        if (_next >= _end)
        {
            return false;
        }

        // Room left in the current chunk, computed without forming the chunk's end (which could overflow).
        long mask = (1L << _chunkShift) - 1;
        int inChunk = (int)(_next & mask);
        int length = (int)Math.Min(mask + 1 - inChunk, _end - _next);
        _current = new ChunkSpan(_next >> _chunkShift, _next, length, inChunk);
        _next += length;
        return true;
    }
}
