using System.Buffers.Binary;

namespace Duroslight.Protocol.Nvme;

/// <summary>A 16-byte completion queue entry (NVMe base spec "Common Completion Queue Entry").</summary>
public readonly record struct CompletionEntry(ulong Result, ushort SqHead, ushort SqId, ushort CommandId, NvmeStatus Status)
{
    public const int Size = 16;

    public void WriteTo(Span<byte> dst)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(dst, Result);
        BinaryPrimitives.WriteUInt16LittleEndian(dst[8..], SqHead);
        BinaryPrimitives.WriteUInt16LittleEndian(dst[10..], SqId);
        BinaryPrimitives.WriteUInt16LittleEndian(dst[12..], CommandId);
        // Bit 0 is the phase tag, meaningless on fabrics and left 0.
        BinaryPrimitives.WriteUInt16LittleEndian(dst[14..], (ushort)(Status.Field << 1));
    }

    public static CompletionEntry Read(ReadOnlySpan<byte> src) => new(
        BinaryPrimitives.ReadUInt64LittleEndian(src),
        BinaryPrimitives.ReadUInt16LittleEndian(src[8..]),
        BinaryPrimitives.ReadUInt16LittleEndian(src[10..]),
        BinaryPrimitives.ReadUInt16LittleEndian(src[12..]),
        NvmeStatus.FromField((ushort)(BinaryPrimitives.ReadUInt16LittleEndian(src[14..]) >> 1)));
}
