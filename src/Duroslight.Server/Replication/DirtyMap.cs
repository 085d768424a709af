using System.Numerics;
using Duroslight.Storage.Chunking;

namespace Duroslight.Server.Replication;

/// <summary>
/// One bit per 128 KiB chunk of a volume: the chunks a replica outside the in-sync set has not got (docs/ARCHITECTURE.md,
/// "Dirty-chunk maps and sync points"). A chunk's bit is set and cleared only on the shard that owns the chunk, but
/// neighbouring chunks of one 64-bit word belong to other shards, so every change is one interlocked OR/AND: no lock,
/// no allocation. Readers on other threads (the sync-point writer, a rebuild's scan) see each word whole.
/// </summary>
public sealed class DirtyMap
{
    private readonly ulong[] _words;

    public DirtyMap(long chunks)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(chunks);
        Chunks = chunks;
        _words = new ulong[(chunks + 63) / 64];
    }

    /// <summary>The chunks of a volume of <paramref name="sizeBytes"/>.</summary>
    public static long ChunksOf(long sizeBytes) => (sizeBytes + ChunkMap.ChunkSize - 1) / ChunkMap.ChunkSize;

    public long Chunks { get; }

    /// <summary>Sets the bit of <paramref name="chunk"/>; true if it was clear (the chunk became dirty now).</summary>
    public bool Set(long chunk)
    {
        ref ulong word = ref _words[chunk >> 6];
        ulong bit = 1UL << (int)(chunk & 63);
        // Read first: a chunk that is dirty already (the common case while a replica is out) costs no interlocked op.
        if ((Volatile.Read(ref word) & bit) != 0) return false;
        return (Interlocked.Or(ref word, bit) & bit) == 0;
    }

    /// <summary>Sets the chunks under bytes [<paramref name="start"/>, <paramref name="end"/>); true if any was clear.</summary>
    public bool SetBytes(long start, long end)
    {
        bool any = false;
        long last = Math.Min(Chunks, (end + ChunkMap.ChunkSize - 1) / ChunkMap.ChunkSize);
        for (long chunk = start / ChunkMap.ChunkSize; chunk < last; chunk++) any |= Set(chunk);
        return any;
    }

    public void Clear(long chunk) => Interlocked.And(ref _words[chunk >> 6], ~(1UL << (int)(chunk & 63)));

    public bool IsSet(long chunk) => (Volatile.Read(ref _words[chunk >> 6]) & (1UL << (int)(chunk & 63))) != 0;

    /// <summary>Every chunk dirty (a new or wiped replica: all of them are copied).</summary>
    public void SetAll()
    {
        for (long c = 0; c < Chunks; c += 64)
        {
            int bits = (int)Math.Min(64, Chunks - c);
            Interlocked.Or(ref _words[c >> 6], bits == 64 ? ulong.MaxValue : (1UL << bits) - 1);
        }
    }

    /// <summary>Adds every chunk of <paramref name="other"/> (the same volume size).</summary>
    public void UnionWith(DirtyMap other)
    {
        if (other.Chunks != Chunks) throw new ArgumentException("maps of different sizes", nameof(other));
        for (int i = 0; i < _words.Length; i++)
            if (Volatile.Read(ref other._words[i]) is var w and not 0) Interlocked.Or(ref _words[i], w);
    }

    /// <summary>Dirty chunks now.</summary>
    public long Count()
    {
        long n = 0;
        for (int i = 0; i < _words.Length; i++) n += BitOperations.PopCount(Volatile.Read(ref _words[i]));
        return n;
    }

    /// <summary>The first dirty chunk at or after <paramref name="from"/>, or -1.</summary>
    public long NextSet(long from) => Next(from, invert: false);

    /// <summary>The first clean chunk at or after <paramref name="from"/>, or <see cref="Chunks"/>.</summary>
    public long NextClear(long from) => Next(from, invert: true) is var c and >= 0 ? c : Chunks;

    private long Next(long from, bool invert)
    {
        if (from >= Chunks) return -1;
        int i = (int)(from >> 6);
        ulong word = (Volatile.Read(ref _words[i]) ^ (invert ? ulong.MaxValue : 0)) & (ulong.MaxValue << (int)(from & 63));
        while (word == 0)
        {
            if (++i == _words.Length) return -1;
            word = Volatile.Read(ref _words[i]) ^ (invert ? ulong.MaxValue : 0);
        }
        long chunk = ((long)i << 6) + BitOperations.TrailingZeroCount(word);
        return chunk < Chunks ? chunk : -1;
    }
}
