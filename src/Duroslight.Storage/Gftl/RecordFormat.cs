using System.Buffers.Binary;

namespace Duroslight.Storage.Gftl;

internal enum RecordKind : ushort
{
    Data = 1,
    Trim = 2,

    /// <summary>Written at the start of a segment the collector freed: everything older in it is dead.</summary>
    Erased = 3,
}

/// <summary>One run of blocks a record describes: these blocks of this volume as of write sequence number Seq.</summary>
internal readonly record struct Extent(Guid Volume, long Lba, int Count, long Seq);

/// <summary>What a header check found: an intact header of this format, a block that is not one, or a header of a format this build cannot read.</summary>
internal enum HeaderCheck
{
    Valid,
    Invalid,
    UnknownVersion,
}

/// <summary>The fields of an intact header (its extents are read one by one with <see cref="RecordFormat.ReadExtent"/>).</summary>
internal readonly record struct RecordHeader(RecordKind Kind, long Stamp, int ExtentCount, int DataBlocks, int Version);

/// <summary>
/// A record is a 4 KiB header followed by its data blocks, written with one I/O. Version 2: the header names every
/// extent (volume, LBA, block count, sequence number, CRC32C of that extent's data; the data follows in extent
/// order) and carries its own CRC32C, so a scan of the raw device can tell a complete record from a torn one without
/// any other metadata. One CRC per extent lets a group-committed record (many host writes) keep the extents that
/// reached the device when a crash tears it: each extent is one host write, acknowledged only once all are on disk.
/// Trim records have extents and no data: they unmap. Every record also carries its segment's stamp (the sequence
/// number taken when the segment was opened), so records left over from an earlier use of the segment are told apart.
/// Version 3: the header's CRC is keyed with the device set's log key (<see cref="Superblock.LogKey"/>, random at
/// format, never written anywhere a host can read it): the CRC covers the header with the key in its last 16 bytes,
/// which are written as zeros. A host that writes bytes looking like a header into its data (they land at block
/// boundaries of a segment, where the scan looks for records) cannot seal them without the key, so the scan never
/// takes host data for a record. Every version keeps the keyed CRC at the same place, so an intact header of an
/// unknown version is still recognised (and refused), while forged ones are not.
/// </summary>
internal static class RecordFormat
{
    public const int HeaderSize = GftlLayout.BlockSize;
    public const int Version = 3;
    public const int MaxExtents = (HeaderSize - ExtentsOffset) / ExtentSize;
    private const ulong Magic = 0x3143_4552_474C_5344; // "DSLGREC1"
    private const int VersionOffset = 8;
    private const int KindOffset = 10;
    private const int DataBlocksOffset = 12;
    private const int ExtentCountOffset = 16;
    private const int HeaderCrcOffset = 24;
    private const int StampOffset = 32;
    private const int ExtentsOffset = 40;
    private const int ExtentSize = 40;

    /// <summary>Where the log key goes for the header CRC (after the last possible extent; zeros on disk).</summary>
    private const int KeyOffset = HeaderSize - 16;

    /// <summary>Starts a header: the extents follow with <see cref="SetExtent"/>, then <see cref="Seal"/>.</summary>
    public static void Begin(Span<byte> header, RecordKind kind, long stamp)
    {
        header[..HeaderSize].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(header, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(header[VersionOffset..], Version);
        BinaryPrimitives.WriteUInt16LittleEndian(header[KindOffset..], (ushort)kind);
        BinaryPrimitives.WriteInt64LittleEndian(header[StampOffset..], stamp);
    }

    /// <summary>Extent <paramref name="index"/> with the CRC32C of its data blocks (0 for a trim).</summary>
    public static void SetExtent(Span<byte> header, int index, Extent extent, uint dataCrc)
    {
        Span<byte> e = header.Slice(ExtentsOffset + (index * ExtentSize), ExtentSize);
        extent.Volume.TryWriteBytes(e[..16]);
        BinaryPrimitives.WriteInt64LittleEndian(e[16..], extent.Lba);
        BinaryPrimitives.WriteInt32LittleEndian(e[24..], extent.Count);
        BinaryPrimitives.WriteUInt32LittleEndian(e[28..], dataCrc);
        BinaryPrimitives.WriteInt64LittleEndian(e[32..], extent.Seq);
    }

    /// <summary>Finishes a header begun with <see cref="Begin"/>: counts, then the header's own CRC, keyed with <paramref name="key"/>.</summary>
    public static void Seal(Span<byte> header, int extentCount, int dataBlocks, Guid key)
    {
        BinaryPrimitives.WriteInt32LittleEndian(header[DataBlocksOffset..], dataBlocks);
        BinaryPrimitives.WriteInt32LittleEndian(header[ExtentCountOffset..], extentCount);
        Span<byte> keyBytes = header[KeyOffset..HeaderSize];
        key.TryWriteBytes(keyBytes);
        uint crc = Crc32C.Compute(header[..HeaderSize]);
        keyBytes.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(header[HeaderCrcOffset..], crc);
    }

    /// <summary>
    /// A whole header at once: <paramref name="data"/> holds the data blocks of the extents in order (empty for trims
    /// and erase markers); each extent's CRC is computed from its part.
    /// </summary>
    public static void WriteHeader(Span<byte> header, RecordKind kind, long stamp, ReadOnlySpan<Extent> extents, ReadOnlySpan<byte> data, Guid key)
    {
        Begin(header, kind, stamp);
        int block = 0;
        for (int i = 0; i < extents.Length; i++)
        {
            uint crc = 0;
            if (kind == RecordKind.Data)
            {
                crc = Crc32C.Compute(data.Slice(block * GftlLayout.BlockSize, extents[i].Count * GftlLayout.BlockSize));
                block += extents[i].Count;
            }

            SetExtent(header, i, extents[i], crc);
        }

        Seal(header, extents.Length, kind == RecordKind.Data ? block : 0, key);
    }

    /// <summary>
    /// Checks a candidate header: magic, its own CRC keyed with the set's <paramref name="key"/>, then the version (an intact header of another version is
    /// reported, not skipped: a scan that ignored it would lose data), kind and counts. The extents' data is checked by the caller.
    /// </summary>
    public static HeaderCheck Check(ReadOnlySpan<byte> header, Guid key, out RecordHeader fields)
    {
        fields = default;
        if (header.Length < HeaderSize || BinaryPrimitives.ReadUInt64LittleEndian(header) != Magic || !HeaderCrcMatches(header, key))
        {
            return HeaderCheck.Invalid;
        }

        int version = BinaryPrimitives.ReadUInt16LittleEndian(header[VersionOffset..]);
        var kind = (RecordKind)BinaryPrimitives.ReadUInt16LittleEndian(header[KindOffset..]);
        int dataBlocks = BinaryPrimitives.ReadInt32LittleEndian(header[DataBlocksOffset..]);
        int extentCount = BinaryPrimitives.ReadInt32LittleEndian(header[ExtentCountOffset..]);
        fields = new RecordHeader(kind, BinaryPrimitives.ReadInt64LittleEndian(header[StampOffset..]), extentCount, dataBlocks, version);
        if (version != Version)
        {
            return HeaderCheck.UnknownVersion;
        }

        return kind is not (RecordKind.Data or RecordKind.Trim or RecordKind.Erased) || (uint)extentCount > MaxExtents ||
               dataBlocks < 0 || (kind != RecordKind.Data && dataBlocks != 0)
            ? HeaderCheck.Invalid
            : HeaderCheck.Valid;
    }

    public static Extent ReadExtent(ReadOnlySpan<byte> header, int index, out uint dataCrc)
    {
        ReadOnlySpan<byte> e = header.Slice(ExtentsOffset + (index * ExtentSize), ExtentSize);
        dataCrc = BinaryPrimitives.ReadUInt32LittleEndian(e[28..]);
        return new Extent(new Guid(e[..16]), BinaryPrimitives.ReadInt64LittleEndian(e[16..]),
            BinaryPrimitives.ReadInt32LittleEndian(e[24..]), BinaryPrimitives.ReadInt64LittleEndian(e[32..]));
    }

    private static bool HeaderCrcMatches(ReadOnlySpan<byte> header, Guid key)
    {
        if (header[KeyOffset..HeaderSize].ContainsAnyExcept((byte)0))
        {
            return false; // written as zeros: the CRC alone would not notice a change there
        }

        Span<byte> copy = stackalloc byte[HeaderSize];
        header[..HeaderSize].CopyTo(copy);
        BinaryPrimitives.WriteUInt32LittleEndian(copy[HeaderCrcOffset..], 0);
        key.TryWriteBytes(copy[KeyOffset..]);
        return Crc32C.Compute(copy) == BinaryPrimitives.ReadUInt32LittleEndian(header[HeaderCrcOffset..]);
    }
}
