namespace Duroslight.Storage.Chunking;

/// <summary>
/// The chunk-sized pieces of a byte range, in order. A struct that is its own enumerator,
/// so <c>foreach (var span in ChunkMap.Split(offset, length))</c> allocates nothing.
/// </summary>
public struct ChunkSpans
{
    private readonly long _end;
    private long _next;
    private ChunkSpan _current;

    internal ChunkSpans(long offset, long length)
    {
        _next = offset;
        _end = offset + length;
        _current = default;
    }

    /// <summary>How many pieces the range has (0 for an empty range).</summary>
    public readonly long Count =>
        _next >= _end ? 0 : ((_end - 1) >> ChunkMap.ChunkShift) - (_next >> ChunkMap.ChunkShift) + 1;

    public readonly ChunkSpan Current => _current;

    public readonly ChunkSpans GetEnumerator() => this;

    public bool MoveNext()
    {
        if (_next >= _end)
        {
            return false;
        }

        // Room left in the current chunk, computed without forming the chunk's end (which could overflow).
        long room = ChunkMap.ChunkSize - (_next & (ChunkMap.ChunkSize - 1));
        int length = (int)Math.Min(room, _end - _next);
        _current = new ChunkSpan(_next >> ChunkMap.ChunkShift, _next, length);
        _next += length;
        return true;
    }
}
