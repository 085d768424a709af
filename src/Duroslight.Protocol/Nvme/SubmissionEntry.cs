using System.Buffers.Binary;

namespace Duroslight.Protocol.Nvme;

/// <summary>
/// Read-only view over a 64-byte submission queue entry (little-endian, NVMe base spec "Common Command Format").
/// </summary>
public readonly ref struct SubmissionEntry
{
    public const int Size = 64;
    private readonly ReadOnlySpan<byte> _b;

    public SubmissionEntry(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < Size) throw new ArgumentException("SQE needs 64 bytes", nameof(bytes));
        _b = bytes[..Size];
    }

    public ReadOnlySpan<byte> Bytes => _b;
    public byte Opcode => _b[0];
    /// <summary>FUSE bits 1:0 and PSDT bits 7:6 of byte 1.</summary>
    public byte Flags => _b[1];
    public ushort CommandId => BinaryPrimitives.ReadUInt16LittleEndian(_b[2..]);
    public uint Nsid => BinaryPrimitives.ReadUInt32LittleEndian(_b[4..]);
    /// <summary>Fabrics command type (byte 4, Fabrics opcode 7Fh only).</summary>
    public byte FabricsCommandType => _b[4];

    public DataDirection Direction => DataDirections.Of(Opcode, FabricsCommandType);

    /// <summary>SGL1 descriptor: address (bytes 24..31).</summary>
    public ulong SglAddress => BinaryPrimitives.ReadUInt64LittleEndian(_b[24..]);
    /// <summary>SGL1 descriptor: length (bytes 32..35).</summary>
    public uint SglLength => BinaryPrimitives.ReadUInt32LittleEndian(_b[32..]);
    /// <summary>SGL1 descriptor: type (high nibble) and subtype (low nibble), byte 39.</summary>
    public byte SglType => _b[39];

    public uint Cdw10 => BinaryPrimitives.ReadUInt32LittleEndian(_b[40..]);
    public uint Cdw11 => BinaryPrimitives.ReadUInt32LittleEndian(_b[44..]);
    public uint Cdw12 => BinaryPrimitives.ReadUInt32LittleEndian(_b[48..]);
    public uint Cdw13 => BinaryPrimitives.ReadUInt32LittleEndian(_b[52..]);
    public uint Cdw14 => BinaryPrimitives.ReadUInt32LittleEndian(_b[56..]);
    public uint Cdw15 => BinaryPrimitives.ReadUInt32LittleEndian(_b[60..]);

    /// <summary>Starting LBA of Read/Write/Write Zeroes (CDW10-11).</summary>
    public ulong Slba => BinaryPrimitives.ReadUInt64LittleEndian(_b[40..]);
    /// <summary>Number of logical blocks, 1-based (CDW12 bits 15:0 are 0's based).</summary>
    public uint BlockCount => (Cdw12 & 0xFFFF) + 1u;
}

/// <summary>SGL descriptor type bytes used by NVMe/TCP (byte 15 of the descriptor).</summary>
public static class SglTypes
{
    /// <summary>Data Block descriptor, Offset subtype: in-capsule data.</summary>
    public const byte InCapsuleData = 0x01;
    /// <summary>Transport SGL Data Block descriptor, transport-specific subtype: data moved by R2T/C2HData.</summary>
    public const byte TransportDataBlock = 0x5A;
}

/// <summary>Writes a 64-byte submission queue entry (used by the host library and tests).</summary>
public static class SubmissionEntryWriter
{
    public static void Write(Span<byte> sqe, byte opcode, ushort cid, uint nsid,
        byte sglType, uint sglLength, uint cdw10 = 0, uint cdw11 = 0, uint cdw12 = 0,
        uint cdw13 = 0, uint cdw14 = 0, uint cdw15 = 0, ulong sglAddress = 0)
    {
        sqe[..SubmissionEntry.Size].Clear();
        sqe[0] = opcode;
        sqe[1] = 0x40; // PSDT 01b: SGL for data transfer, as every fabrics host sets.
        BinaryPrimitives.WriteUInt16LittleEndian(sqe[2..], cid);
        BinaryPrimitives.WriteUInt32LittleEndian(sqe[4..], nsid);
        BinaryPrimitives.WriteUInt64LittleEndian(sqe[24..], sglAddress);
        BinaryPrimitives.WriteUInt32LittleEndian(sqe[32..], sglLength);
        sqe[39] = sglType;
        BinaryPrimitives.WriteUInt32LittleEndian(sqe[40..], cdw10);
        BinaryPrimitives.WriteUInt32LittleEndian(sqe[44..], cdw11);
        BinaryPrimitives.WriteUInt32LittleEndian(sqe[48..], cdw12);
        BinaryPrimitives.WriteUInt32LittleEndian(sqe[52..], cdw13);
        BinaryPrimitives.WriteUInt32LittleEndian(sqe[56..], cdw14);
        BinaryPrimitives.WriteUInt32LittleEndian(sqe[60..], cdw15);
    }
}
