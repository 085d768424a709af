namespace Duroslight.Storage.Gftl;

/// <summary>An extent of a parsed record whose data checked out, and the segment block its data starts at (trims: -1).</summary>
internal readonly record struct ParsedExtent(Extent Extent, int Block);

/// <summary>A record found in a segment: where it starts (block within the segment) and its intact extents.</summary>
internal sealed record ParsedRecord(int Block, RecordKind Kind, long Stamp, ParsedExtent[] Extents, int DataBlocks);

/// <summary>
/// Finds the intact records of one segment (headers sealed with the set's log key). Every block is a candidate header, because records complete out of
/// order (a later one may be on disk while an earlier one was torn by a crash). A candidate counts when its header
/// checks out; then each of its extents counts if the CRC of that extent's data does (a torn group-committed record
/// keeps the host writes that reached the disk, none of which was acknowledged), and the record's blocks are
/// skipped. Only the records of the segment's latest use (the highest stamp) are returned: older ones were dead when
/// the collector freed the segment (and an Erased marker, which is returned, says the segment holds nothing).
/// </summary>
internal static class RecordParser
{
    /// <summary>
    /// Adds the segment's current records to <paramref name="found"/>; returns its stamp (long.MinValue if none).
    /// <paramref name="unknownVersion"/> is the version of the first intact header of a format this build cannot
    /// read (0 if none): the caller must not treat the segment as understood.
    /// </summary>
    public static long Parse(ReadOnlySpan<byte> segment, Guid key, List<ParsedRecord> found, out int unknownVersion)
    {
        int first = found.Count;
        unknownVersion = ParseAll(segment, key, found);
        long stamp = long.MinValue;
        for (int i = first; i < found.Count; i++)
        {
            stamp = Math.Max(stamp, found[i].Stamp);
        }

        for (int i = found.Count - 1; i >= first; i--)
        {
            if (found[i].Stamp != stamp || found[i].Kind == RecordKind.Erased)
            {
                found.RemoveAt(i);
            }
        }

        return stamp;
    }

    private static int ParseAll(ReadOnlySpan<byte> segment, Guid key, List<ParsedRecord> found)
    {
        int blocks = segment.Length / GftlLayout.BlockSize;
        int block = 0;
        int unknownVersion = 0;
        while (block < blocks)
        {
            ReadOnlySpan<byte> header = segment.Slice(block * GftlLayout.BlockSize, GftlLayout.BlockSize);
            HeaderCheck check = RecordFormat.Check(header, key, out RecordHeader fields);
            if (check == HeaderCheck.UnknownVersion && unknownVersion == 0)
            {
                unknownVersion = fields.Version;
            }

            ParsedRecord? record = check == HeaderCheck.Valid ? TryParse(segment, block, blocks, header, fields) : null;
            if (record is null)
            {
                block++;
                continue;
            }

            found.Add(record);
            block += 1 + record.DataBlocks;
        }

        return unknownVersion;
    }

    private static ParsedRecord? TryParse(ReadOnlySpan<byte> segment, int block, int blocks, ReadOnlySpan<byte> header, RecordHeader fields)
    {
        if (fields.DataBlocks > blocks - block - 1)
        {
            return null; // written so that a huge count cannot overflow past the check
        }

        // Structure first: a header whose extents do not add up is not a record (nothing of it is kept).
        long described = 0;
        for (int i = 0; i < fields.ExtentCount; i++)
        {
            Extent extent = RecordFormat.ReadExtent(header, i, out _);
            if (extent.Count <= 0 || extent.Lba < 0 || extent.Lba > long.MaxValue - extent.Count)
            {
                return null;
            }

            described += extent.Count;
        }

        if (fields.Kind == RecordKind.Data && described != fields.DataBlocks)
        {
            return null;
        }

        var extents = new List<ParsedExtent>(fields.ExtentCount);
        int dataBlock = block + 1;
        for (int i = 0; i < fields.ExtentCount; i++)
        {
            Extent extent = RecordFormat.ReadExtent(header, i, out uint crc);
            if (fields.Kind != RecordKind.Data)
            {
                extents.Add(new ParsedExtent(extent, -1));
                continue;
            }

            ReadOnlySpan<byte> data = segment.Slice(dataBlock * GftlLayout.BlockSize, extent.Count * GftlLayout.BlockSize);
            if (Crc32C.Compute(data) == crc)
            {
                extents.Add(new ParsedExtent(extent, dataBlock));
            }

            dataBlock += extent.Count;
        }

        return new ParsedRecord(block, fields.Kind, fields.Stamp, extents.ToArray(), fields.DataBlocks);
    }
}
