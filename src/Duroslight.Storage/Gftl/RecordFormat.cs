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

/// <summary>
/// A record is a 4 KiB header followed by its data blocks, written with one I/O. The header names every extent
/// (volume, LBA, block count, sequence number) and carries the CRC32C of the data and of itself, so a scan of
/// the raw device can tell a complete record from a torn one without any other metadata. Trim records have
/// extents and no data: they unmap. Every record also carries its segment's stamp (the sequence number taken
/// when the segment was opened), so records left over from an earlier use of the segment are told apart.
/// </summary>
internal static class RecordFormat
{
    public const int HeaderSize = GftlLayout.BlockSize;
    public const int MaxExtents = (HeaderSize - ExtentsOffset) / ExtentSize;
    private const ulong Magic = 0x3143_4552_474C_5344; // "DSLGREC1"
    private const ushort Version = 1;
    private const int StampOffset = 32;
    private const int ExtentsOffset = 40;
    private const int ExtentSize = 40;
    private const int HeaderCrcOffset = 24;

    public static void WriteHeader(Span<byte> header, RecordKind kind, long stamp, ReadOnlySpan<Extent> extents, int dataBlocks, uint dataCrc)
    {
        header[..HeaderSize].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(header, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(header[8..], Version);
        BinaryPrimitives.WriteUInt16LittleEndian(header[10..], (ushort)kind);
        BinaryPrimitives.WriteInt32LittleEndian(header[12..], dataBlocks);
        BinaryPrimitives.WriteInt32LittleEndian(header[16..], extents.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(header[20..], dataCrc);
        BinaryPrimitives.WriteInt64LittleEndian(header[StampOffset..], stamp);
        for (int i = 0; i < extents.Length; i++)
        {
            WriteExtent(header[(ExtentsOffset + (i * ExtentSize))..], extents[i]);
        }

        BinaryPrimitives.WriteUInt32LittleEndian(header[HeaderCrcOffset..], Crc32C.Compute(header[..HeaderSize]));
    }

    /// <summary>One extent, for headers written a piece at a time (the write path has exactly one).</summary>
    public static void WriteSingle(Span<byte> header, RecordKind kind, long stamp, Extent extent, int dataBlocks, uint dataCrc) =>
        WriteHeader(header, kind, stamp, new ReadOnlySpan<Extent>(in extent), dataBlocks, dataCrc);

    /// <summary>True when <paramref name="header"/> is an intact record header; the CRC of the data is checked by the caller.</summary>
    public static bool TryRead(ReadOnlySpan<byte> header, out RecordKind kind, out long stamp, out int extentCount, out int dataBlocks, out uint dataCrc)
    {
        stamp = BinaryPrimitives.ReadInt64LittleEndian(header[StampOffset..]);
        kind = (RecordKind)BinaryPrimitives.ReadUInt16LittleEndian(header[10..]);
        dataBlocks = BinaryPrimitives.ReadInt32LittleEndian(header[12..]);
        extentCount = BinaryPrimitives.ReadInt32LittleEndian(header[16..]);
        dataCrc = BinaryPrimitives.ReadUInt32LittleEndian(header[20..]);
        if (BinaryPrimitives.ReadUInt64LittleEndian(header) != Magic ||
            BinaryPrimitives.ReadUInt16LittleEndian(header[8..]) != Version ||
            kind is not (RecordKind.Data or RecordKind.Trim or RecordKind.Erased) ||
            (uint)extentCount > MaxExtents || dataBlocks < 0)
        {
            return false;
        }

        Span<byte> copy = stackalloc byte[HeaderSize];
        header[..HeaderSize].CopyTo(copy);
        BinaryPrimitives.WriteUInt32LittleEndian(copy[HeaderCrcOffset..], 0);
        return Crc32C.Compute(copy) == BinaryPrimitives.ReadUInt32LittleEndian(header[HeaderCrcOffset..]);
    }

    public static Extent ReadExtent(ReadOnlySpan<byte> header, int index)
    {
        ReadOnlySpan<byte> e = header[(ExtentsOffset + (index * ExtentSize))..];
        return new Extent(new Guid(e[..16]), BinaryPrimitives.ReadInt64LittleEndian(e[16..]),
            BinaryPrimitives.ReadInt32LittleEndian(e[24..]), BinaryPrimitives.ReadInt64LittleEndian(e[32..]));
    }

    private static void WriteExtent(Span<byte> e, Extent extent)
    {
        extent.Volume.TryWriteBytes(e[..16]);
        BinaryPrimitives.WriteInt64LittleEndian(e[16..], extent.Lba);
        BinaryPrimitives.WriteInt32LittleEndian(e[24..], extent.Count);
        BinaryPrimitives.WriteInt64LittleEndian(e[32..], extent.Seq);
    }
}
