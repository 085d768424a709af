using System.Buffers.Binary;

namespace Duroslight.Storage.Gftl;

/// <summary>
/// The first 4 KiB of every device: who it belongs to (cluster and node), where it sits in the set, and the
/// geometry the log was laid out with. Checked at every start so a wrong, missing or reordered device is refused.
/// </summary>
internal sealed record Superblock(Guid ClusterId, int NodeIndex, int DeviceIndex, int DeviceCount, long DeviceBytes, int SegmentBytes, int SegmentCount)
{
    public const int FormatVersion = 1;
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
        BinaryPrimitives.WriteUInt32LittleEndian(block[60..], Crc32C.Compute(block[..60]));
    }

    /// <summary>The superblock in <paramref name="block"/>, or null with the reason it is not one.</summary>
    public static Superblock? Decode(ReadOnlySpan<byte> block, out string problem)
    {
        if (BinaryPrimitives.ReadUInt64LittleEndian(block) != Magic)
        {
            problem = "it carries no Duroslight GFTL superblock (not formatted, or not a GFTL device)";
            return null;
        }

        if (BinaryPrimitives.ReadUInt32LittleEndian(block[60..]) != Crc32C.Compute(block[..60]))
        {
            problem = "its superblock checksum is wrong (damaged)";
            return null;
        }

        int version = BinaryPrimitives.ReadInt32LittleEndian(block[8..]);
        if (version != FormatVersion)
        {
            problem = $"its format version is {version}, this build reads {FormatVersion}";
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
            BinaryPrimitives.ReadInt32LittleEndian(block[52..]));
    }
}
