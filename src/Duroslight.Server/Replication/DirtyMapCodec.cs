using System.Buffers;

namespace Duroslight.Server.Replication;

/// <summary>
/// A <see cref="DirtyMap"/> as the bytes of a sync point in etcd: its runs of dirty chunks as (gap, length) pairs of
/// LEB128 varints, after a version byte and a granularity shift K (every unit is 2^K chunks). A map whose exact runs
/// do not fit in the bound is coarsened: K grows, each run widens to whole units and touching runs merge, until it
/// fits. A coarse map is a superset of the exact one (a rebuild copies a few clean chunks too, never misses a dirty
/// one), so the value stays small whatever the volume size or write pattern.
/// </summary>
public static class DirtyMapCodec
{
    private const byte Version = 1;
    /// <summary>Default bound: far below etcd's 1.5 MiB request limit, and a 1 TiB volume's worst case still encodes (coarsened to 16 MiB units).</summary>
    public const int DefaultMaxBytes = 64 * 1024;
    private const int MaxShift = 48;

    /// <summary>The encoding of <paramref name="map"/> in at most <paramref name="maxBytes"/> (at least 16).</summary>
    public static byte[] Encode(DirtyMap map, int maxBytes = DefaultMaxBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBytes, 16);
        var buffer = new ArrayBufferWriter<byte>(64);
        for (int shift = 0; ; shift++)
        {
            buffer.ResetWrittenCount();
            if (TryEncode(map, shift, maxBytes, buffer)) return buffer.WrittenSpan.ToArray();
        }
    }

    /// <summary>
    /// Sets in <paramref name="into"/> every chunk <paramref name="encoded"/> lists (a merge: bits already set stay).
    /// False, and nothing set, for bytes that are not an encoding of a map of <paramref name="into"/>'s size.
    /// </summary>
    public static bool TryDecodeInto(ReadOnlySpan<byte> encoded, DirtyMap into)
    {
        if (!Validate(encoded, into.Chunks)) return false;
        int pos = 1;
        ReadVarint(encoded, ref pos, out ulong shift);
        long unit = 0;
        while (pos < encoded.Length)
        {
            ReadVarint(encoded, ref pos, out ulong gap);
            ReadVarint(encoded, ref pos, out ulong length);
            unit += (long)gap;
            long start = unit << (int)shift, end = Math.Min(into.Chunks, (unit + (long)length) << (int)shift);
            for (long c = start; c < end; c++) into.Set(c);
            unit += (long)length;
        }
        return true;
    }

    /// <summary>Well-formed: known version, sane shift, every run non-empty and inside the map, nothing trailing.</summary>
    private static bool Validate(ReadOnlySpan<byte> encoded, long chunks)
    {
        if (encoded.Length < 2 || encoded[0] != Version) return false;
        int pos = 1;
        if (!ReadVarint(encoded, ref pos, out ulong shift) || shift > MaxShift) return false;
        long units = chunks == 0 ? 0 : ((chunks - 1) >> (int)shift) + 1;
        long unit = 0;
        while (pos < encoded.Length)
        {
            if (!ReadVarint(encoded, ref pos, out ulong gap) || !ReadVarint(encoded, ref pos, out ulong length)) return false;
            if (gap > (ulong)units || length == 0 || length > (ulong)units) return false;
            unit += (long)gap + (long)length;
            if (unit > units) return false;
        }
        return true;
    }

    private static bool TryEncode(DirtyMap map, int shift, int maxBytes, ArrayBufferWriter<byte> into)
    {
        into.GetSpan(1)[0] = Version;
        into.Advance(1);
        WriteVarint(into, (ulong)shift);
        long unitChunks = 1L << shift;
        long previousEnd = 0, runStart = -1, runEnd = -1;
        for (long start = map.NextSet(0); start >= 0; start = map.NextSet(ChunkAt(runEnd)))
        {
            long end = map.NextClear(start);
            long us = start >> shift, ue = (end + unitChunks - 1) >> shift;
            if (runStart >= 0 && us <= runEnd)
            {
                runEnd = Math.Max(runEnd, ue);
                continue;
            }
            if (runStart >= 0) previousEnd = Emit(into, previousEnd, runStart, runEnd);
            runStart = us;
            runEnd = ue;
            if (into.WrittenCount > maxBytes) return false;
        }
        if (runStart >= 0) Emit(into, previousEnd, runStart, runEnd);
        return into.WrittenCount <= maxBytes;

        long ChunkAt(long unit) => Math.Min(map.Chunks, unit << shift);
    }

    private static long Emit(ArrayBufferWriter<byte> into, long previousEnd, long start, long end)
    {
        WriteVarint(into, (ulong)(start - previousEnd));
        WriteVarint(into, (ulong)(end - start));
        return end;
    }

    private static void WriteVarint(ArrayBufferWriter<byte> into, ulong value)
    {
        var span = into.GetSpan(10);
        int n = 0;
        while (value >= 0x80)
        {
            span[n++] = (byte)(value | 0x80);
            value >>= 7;
        }
        span[n++] = (byte)value;
        into.Advance(n);
    }

    private static bool ReadVarint(ReadOnlySpan<byte> from, ref int pos, out ulong value)
    {
        value = 0;
        for (int shift = 0; shift < 64 && pos < from.Length; shift += 7)
        {
            byte b = from[pos++];
            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80) return true;
        }
        return false;
    }
}
