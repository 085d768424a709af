using System.Buffers.Binary;

namespace Duroslight.Storage.Chunking;

/// <summary>
/// Cuts each volume's byte address space into 128 KiB chunks and says which shard owns each chunk.
/// Ownership must agree across processes, nodes and .NET versions, so it uses only fixed arithmetic:
/// no string hashing, no <see cref="HashCode"/> (randomized per process).
/// </summary>
public static class ChunkMap
{
    public const int ChunkSize = 128 * 1024;
    public const int ChunkShift = 17;

    /// <summary>The chunk holding the byte at <paramref name="offset"/>.</summary>
    public static long ChunkIndexOf(long offset) => offset >> ChunkShift;

    /// <summary>
    /// The shard in [0, <paramref name="shardCount"/>) owning the chunk. Jump consistent hash: going from
    /// n to n+1 shards moves only about 1/(n+1) of the chunks, all of them to the new shard.
    /// </summary>
    public static int OwnerShard(Guid volumeId, long chunkIndex, int shardCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(shardCount);
        ArgumentOutOfRangeException.ThrowIfNegative(chunkIndex);
        return JumpConsistentHash(ChunkKey(volumeId, chunkIndex), shardCount);
    }

    /// <summary>The pieces of the bytes [offset, offset + length), cut at every chunk boundary; allocation-free.</summary>
    public static ChunkSpans Split(long offset, long length) => SplitUnits(offset, length, ChunkShift);

    /// <summary>
    /// The pieces of the blocks [firstBlock, firstBlock + blockCount) of 2^<paramref name="blockShift"/> bytes each,
    /// cut at every chunk boundary; offsets and lengths in blocks. The one loop for code that counts in blocks (GFTL).
    /// </summary>
    public static ChunkSpans SplitBlocks(long firstBlock, long blockCount, int blockShift)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(blockShift);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(blockShift, ChunkShift);
        return SplitUnits(firstBlock, blockCount, ChunkShift - blockShift);
    }

    private static ChunkSpans SplitUnits(long offset, long length, int chunkShift)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, long.MaxValue - offset);
        return new ChunkSpans(offset, length, chunkShift);
    }

    /// <summary>
    /// A 64-bit key for (volume, chunk). The GUID is read in its RFC 4122 (big-endian) byte order,
    /// which is fixed by the standard; each step goes through the SplitMix64 finalizer so that
    /// neighbouring chunks and similar GUIDs get unrelated keys.
    /// </summary>
    internal static ulong ChunkKey(Guid volumeId, long chunkIndex)
    {
        Span<byte> bytes = stackalloc byte[16];
        volumeId.TryWriteBytes(bytes, bigEndian: true, out _);
        ulong key = Mix64(BinaryPrimitives.ReadUInt64BigEndian(bytes));
        key = Mix64(key ^ BinaryPrimitives.ReadUInt64BigEndian(bytes[8..]));
        return Mix64(key ^ (ulong)chunkIndex);
    }

    /// <summary>SplitMix64's output function (Steele, Lea, Flood 2014); the added constant keeps 0 from mapping to 0.</summary>
    internal static ulong Mix64(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>
    /// Lamping and Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm" (2014), as published.
    /// The double arithmetic is exact IEEE 754, so results do not vary by platform.
    /// </summary>
    internal static int JumpConsistentHash(ulong key, int bucketCount)
    {
        long bucket = -1;
        long next = 0;
        while (next < bucketCount)
        {
            bucket = next;
            key = (key * 2862933555777941757UL) + 1;
            next = (long)((bucket + 1) * ((double)(1L << 31) / (double)((key >> 33) + 1)));
        }

        return (int)bucket;
    }
}
