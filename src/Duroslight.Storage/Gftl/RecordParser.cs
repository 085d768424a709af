namespace Duroslight.Storage.Gftl;

/// <summary>A record found in a segment: where it starts (block within the segment) and what it holds.</summary>
internal sealed record ParsedRecord(int Block, RecordKind Kind, long Stamp, Extent[] Extents, int DataBlocks);

/// <summary>
/// Finds the intact records of one segment. Every block is a candidate header, because records complete out of
/// order (a later one may be on disk while an earlier one was torn by a crash); a candidate counts only when its
/// header CRC, its extents and the CRC of its data all check out, and then its data blocks are skipped.
/// Only the records of the segment's latest use (the highest stamp) are returned: older ones were dead when the
/// collector freed the segment (and an Erased marker, which is returned, says the segment holds nothing).
/// </summary>
internal static class RecordParser
{
    /// <summary>Adds the segment's current records to <paramref name="found"/>; returns its stamp (long.MinValue if none).</summary>
    public static long Parse(ReadOnlySpan<byte> segment, List<ParsedRecord> found)
    {
        int first = found.Count;
        ParseAll(segment, found);
        long stamp = long.MinValue;
        for (int i = first; i < found.Count; i++)
        {
            stamp = Math.Max(stamp, found[i].Stamp);
        }

        found.RemoveAll(r => r.Stamp != stamp || r.Kind == RecordKind.Erased);
        return stamp;
    }

    private static void ParseAll(ReadOnlySpan<byte> segment, List<ParsedRecord> found)
    {
        int blocks = segment.Length / GftlLayout.BlockSize;
        int block = 0;
        while (block < blocks)
        {
            ParsedRecord? record = TryParse(segment, block, blocks);
            if (record is null)
            {
                block++;
                continue;
            }

            found.Add(record);
            block += 1 + record.DataBlocks;
        }
    }

    private static ParsedRecord? TryParse(ReadOnlySpan<byte> segment, int block, int blocks)
    {
        ReadOnlySpan<byte> header = segment.Slice(block * GftlLayout.BlockSize, GftlLayout.BlockSize);
        if (!RecordFormat.TryRead(header, out RecordKind kind, out long stamp, out int extentCount, out int dataBlocks, out uint dataCrc) ||
            block + 1 + dataBlocks > blocks)
        {
            return null;
        }

        var extents = new Extent[extentCount];
        long described = 0;
        for (int i = 0; i < extentCount; i++)
        {
            extents[i] = RecordFormat.ReadExtent(header, i);
            if (extents[i].Count <= 0 || extents[i].Lba < 0)
            {
                return null;
            }

            described += extents[i].Count;
        }

        if (kind == RecordKind.Data && described != dataBlocks)
        {
            return null;
        }

        ReadOnlySpan<byte> data = segment.Slice((block + 1) * GftlLayout.BlockSize, dataBlocks * GftlLayout.BlockSize);
        return Crc32C.Compute(data) == dataCrc ? new ParsedRecord(block, kind, stamp, extents, dataBlocks) : null;
    }
}
