using System.Buffers.Binary;

namespace Duroslight.Storage.Gftl;

/// <summary>
/// The first 4 KiB of every device: who it belongs to (cluster and node), where it sits in the set, and the
/// geometry the log was laid out with, including where the metadata area (<see cref="DeviceMetadata"/>) sits.
/// Checked at every start so a wrong, missing or reordered device is refused. Version 1 kept the catalog and the
/// checkpoint in the data directory; version 2 keeps them on the devices; version 3 adds <see cref="LogKey"/>.
/// </summary>
/// <param name="LogKey">
/// Random per device set (the same on each of its devices), written only here: it keys every record header's CRC
/// (<see cref="RecordFormat"/>), so host data that imitates a header is never taken for a record by a scan.
/// </param>
internal sealed record Superblock(
    Guid ClusterId, int NodeIndex, int DeviceIndex, int DeviceCount, long DeviceBytes, int SegmentBytes, int SegmentCount,
    long MetadataOffset, long MetadataSlotBytes, Guid LogKey)
{
    public const int FormatVersion = 3;
    private const int CrcAt = 88;
    private const ulong Magic = 0x314C_5446_474C_5344; // "DSLGFTL1"

    public void Encode(Span<byte> block)
    {
        block[..GftlLayout.BlockSize].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(block, Magic);
        BinaryPrimitives.WriteInt32LittleEndian(block[8..], FormatVersion);
        ClusterId.TryWriteBytes(block[12..28]);
        BinaryPrimitives.WriteInt32LittleEndian(block[28..], NodeIndex);
        BinaryPrimitives.WriteInt32LittleEndian(block[32..], DeviceIndex);
        BinaryPrimitives.WriteInt32LittleEndian(block[36..], DeviceCount);
        BinaryPrimitives.WriteInt64LittleEndian(block[40..], DeviceBytes);
        BinaryPrimitives.WriteInt32LittleEndian(block[48..], SegmentBytes);
        BinaryPrimitives.WriteInt32LittleEndian(block[52..], SegmentCount);
        BinaryPrimitives.WriteInt64LittleEndian(block[56..], MetadataOffset);
        BinaryPrimitives.WriteInt64LittleEndian(block[64..], MetadataSlotBytes);
        LogKey.TryWriteBytes(block[72..88]);
        BinaryPrimitives.WriteUInt32LittleEndian(block[CrcAt..], Crc32C.Compute(block[..CrcAt]));
    }

    /// <summary>True when <paramref name="block"/> carries no GFTL superblock at all (a device never formatted).</summary>
    public static bool IsBlank(ReadOnlySpan<byte> block) => BinaryPrimitives.ReadUInt64LittleEndian(block) != Magic;

    /// <summary>The superblock in <paramref name="block"/>, or null with the reason it is not one.</summary>
    public static Superblock? Decode(ReadOnlySpan<byte> block, out string problem)
    {
        if (BinaryPrimitives.ReadUInt64LittleEndian(block) != Magic)
        {
            problem = "it carries no Duroslight GFTL superblock (not formatted, or not a GFTL device)";
            return null;
        }

        // The version first: where the checksum sits depends on it.
        int version = BinaryPrimitives.ReadInt32LittleEndian(block[8..]);
        if (version != FormatVersion)
        {
            problem = $"its superblock has format version {version}, this build reads only version {FormatVersion}" +
                version switch
                {
                    1 => " (version 1 kept the catalog in the data directory; there is no in-place upgrade)",
                    2 => " (version 2 has no log key for record headers; there is no in-place upgrade)",
                    _ => "",
                };
            return null;
        }

        if (BinaryPrimitives.ReadUInt32LittleEndian(block[CrcAt..]) != Crc32C.Compute(block[..CrcAt]))
        {
            problem = "its superblock checksum is wrong (damaged)";
            return null;
        }

        problem = "";
        return new Superblock(
            new Guid(block[12..28]),
            BinaryPrimitives.ReadInt32LittleEndian(block[28..]),
            BinaryPrimitives.ReadInt32LittleEndian(block[32..]),
            BinaryPrimitives.ReadInt32LittleEndian(block[36..]),
            BinaryPrimitives.ReadInt64LittleEndian(block[40..]),
            BinaryPrimitives.ReadInt32LittleEndian(block[48..]),
            BinaryPrimitives.ReadInt32LittleEndian(block[52..]),
            BinaryPrimitives.ReadInt64LittleEndian(block[56..]),
            BinaryPrimitives.ReadInt64LittleEndian(block[64..]),
            new Guid(block[72..88]));
    }
}
