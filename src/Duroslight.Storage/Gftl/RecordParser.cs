using System.Runtime.InteropServices;

namespace Duroslight.Storage.Gftl;

/// <summary>An extent of a parsed record whose data checked out, and the segment block its data starts at (trims: -1).</summary>
internal readonly record struct ParsedExtent(Extent Extent, int Block);

/// <summary>A record found in a segment: where it starts (block within the segment) and its intact extents (in its <see cref="ParsedSegment"/>).</summary>
internal readonly record struct ParsedRecord(int Block, RecordKind Kind, long Stamp, int FirstExtent, int ExtentCount, int DataBlocks);

/// <summary>
/// The records of one segment and their extents in two flat lists, reused from segment to segment: the collector
/// parses a segment per victim, and once the lists have grown a parse allocates nothing.
/// </summary>
internal sealed class ParsedSegment
{
    private readonly List<ParsedExtent> _extents = [];

    public List<ParsedRecord> Records { get; } = [];

    public ReadOnlySpan<ParsedExtent> ExtentsOf(in ParsedRecord record) =>
        CollectionsMarshal.AsSpan(_extents).Slice(record.FirstExtent, record.ExtentCount);

    public void Clear()
    {
        Records.Clear();
        _extents.Clear();
    }

    internal int ExtentCount => _extents.Count;

    internal void AddExtent(ParsedExtent extent) => _extents.Add(extent);
}

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
    /// Replaces <paramref name="found"/>'s contents with the segment's current records; returns its stamp
    /// (long.MinValue if none). <paramref name="unknownVersion"/> is the version of the first intact header of a
    /// format this build cannot read (0 if none): the caller must not treat the segment as understood.
    /// </summary>
    public static long Parse(ReadOnlySpan<byte> segment, Guid key, ParsedSegment found, out int unknownVersion)
    {
        found.Clear();
        unknownVersion = ParseAll(segment, key, found);
        List<ParsedRecord> records = found.Records;
        long stamp = long.MinValue;
        foreach (ParsedRecord record in records)
        {
            stamp = Math.Max(stamp, record.Stamp);
        }

        // Dropped records leave their extents behind in the flat list, unreferenced until the next Clear.
        int kept = 0;
        for (int i = 0; i < records.Count; i++)
        {
            if (records[i].Stamp == stamp && records[i].Kind != RecordKind.Erased)
            {
                records[kept++] = records[i];
            }
        }

        records.RemoveRange(kept, records.Count - kept);
        return stamp;
    }

    private static int ParseAll(ReadOnlySpan<byte> segment, Guid key, ParsedSegment found)
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

            if (check != HeaderCheck.Valid || !TryParse(segment, block, blocks, header, fields, found))
            {
                block++;
                continue;
            }

            block += 1 + fields.DataBlocks;
        }

        return unknownVersion;
    }

    /// <summary>Adds the record whose header is at <paramref name="block"/> to <paramref name="found"/> if its extents add up.</summary>
    private static bool TryParse(ReadOnlySpan<byte> segment, int block, int blocks, ReadOnlySpan<byte> header, RecordHeader fields, ParsedSegment found)
    {
        if (fields.DataBlocks > blocks - block - 1)
        {
            return false; // written so that a huge count cannot overflow past the check
        }

        // Structure first: a header whose extents do not add up is not a record (nothing of it is kept).
        long described = 0;
        for (int i = 0; i < fields.ExtentCount; i++)
        {
            Extent extent = RecordFormat.ReadExtent(header, i, out _);
            if (extent.Count <= 0 || extent.Lba < 0 || extent.Lba > long.MaxValue - extent.Count)
            {
                return false;
            }

            described += extent.Count;
        }

        if (fields.Kind == RecordKind.Data && described != fields.DataBlocks)
        {
            return false;
        }

        int firstExtent = found.ExtentCount;
        int dataBlock = block + 1;
        for (int i = 0; i < fields.ExtentCount; i++)
        {
            Extent extent = RecordFormat.ReadExtent(header, i, out uint crc);
            if (fields.Kind != RecordKind.Data)
            {
                found.AddExtent(new ParsedExtent(extent, -1));
                continue;
            }

            ReadOnlySpan<byte> data = segment.Slice(dataBlock * GftlLayout.BlockSize, extent.Count * GftlLayout.BlockSize);
            if (Crc32C.Compute(data) == crc)
            {
                found.AddExtent(new ParsedExtent(extent, dataBlock));
            }

            dataBlock += extent.Count;
        }

        found.Records.Add(new ParsedRecord(block, fields.Kind, fields.Stamp, firstExtent, found.ExtentCount - firstExtent, fields.DataBlocks));
        return true;
    }
}
