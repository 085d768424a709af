using Duroslight.Protocol.Nvme;

namespace Duroslight.Host;

/// <summary>
/// The caller-chosen part of a submission queue entry. The host queue adds what the transport owns: the command
/// identifier and the SGL descriptor. For Fabrics commands (opcode 7Fh) <see cref="Nsid"/> carries FCTYPE in its low
/// byte, which is exactly where SQE byte 4 sits.
/// </summary>
public readonly record struct NvmeCommand(byte Opcode, uint Nsid = 0, uint Cdw10 = 0, uint Cdw11 = 0, uint Cdw12 = 0,
    uint Cdw13 = 0, uint Cdw14 = 0, uint Cdw15 = 0)
{
    public bool IsFabrics => Opcode == AdminOpcode.Fabrics;

    public byte FabricsCommandType => (byte)Nsid;

    public DataDirection Direction => DataDirections.Of(Opcode, FabricsCommandType);

    public bool IsConnect => IsFabrics && FabricsCommandType == FabricsType.Connect;
}

/// <summary>A range of logical blocks (Dataset Management).</summary>
public readonly record struct LbaRange(ulong Slba, uint Blocks);

/// <summary>Builders for the commands the initiator sends (field positions per NVMe Base 2.0 and NVMe-oF 1.1).</summary>
public static class NvmeCommands
{
    private const uint FuaBit = 1u << 30, DeallocateBit = 1u << 25, DsmAttributeDeallocate = 1u << 2;
    private const uint RetainAsyncEventBit = 1u << 15;

    public static NvmeCommand Read(uint nsid, ulong slba, int blocks) =>
        new(IoOpcode.Read, nsid, (uint)slba, (uint)(slba >> 32), ZeroBasedBlocks(blocks));

    public static NvmeCommand Write(uint nsid, ulong slba, int blocks, bool fua = false) =>
        new(IoOpcode.Write, nsid, (uint)slba, (uint)(slba >> 32), ZeroBasedBlocks(blocks) | (fua ? FuaBit : 0));

    /// <summary>Flush; NSID FFFFFFFFh flushes every attached namespace.</summary>
    public static NvmeCommand Flush(uint nsid) => new(IoOpcode.Flush, nsid);

    public static NvmeCommand WriteZeroes(uint nsid, ulong slba, int blocks, bool deallocate = false, bool fua = false) =>
        new(IoOpcode.WriteZeroes, nsid, (uint)slba, (uint)(slba >> 32),
            ZeroBasedBlocks(blocks) | (deallocate ? DeallocateBit : 0) | (fua ? FuaBit : 0));

    /// <summary>Dataset Management over <paramref name="rangeCount"/> 16-byte ranges sent as data.</summary>
    public static NvmeCommand DatasetManagement(uint nsid, int rangeCount, bool deallocate = true)
    {
        if (rangeCount is < 1 or > 256) throw new ArgumentOutOfRangeException(nameof(rangeCount), rangeCount, "1..256 ranges");
        return new(IoOpcode.DatasetManagement, nsid, (uint)(rangeCount - 1), deallocate ? DsmAttributeDeallocate : 0);
    }

    public static NvmeCommand Identify(byte cns, uint nsid = 0, ushort cntid = 0, byte csi = 0) =>
        new(AdminOpcode.Identify, nsid, cns | (uint)cntid << 16, (uint)csi << 24);

    /// <summary>Get Log Page of <paramref name="byteLength"/> bytes (a multiple of 4) from <paramref name="offset"/>.</summary>
    public static NvmeCommand GetLogPage(byte logPageId, int byteLength, ulong offset = 0, bool retainAsyncEvent = false,
        uint nsid = uint.MaxValue)
    {
        if (byteLength <= 0 || byteLength % 4 != 0)
            throw new ArgumentOutOfRangeException(nameof(byteLength), byteLength, "a positive multiple of 4");
        uint numd = (uint)(byteLength / 4 - 1);
        uint cdw10 = logPageId | (retainAsyncEvent ? RetainAsyncEventBit : 0) | (numd & 0xFFFF) << 16;
        return new(AdminOpcode.GetLogPage, nsid, cdw10, numd >> 16, (uint)offset, (uint)(offset >> 32));
    }

    public static NvmeCommand SetFeatures(byte featureId, uint cdw11, uint cdw12 = 0) =>
        new(AdminOpcode.SetFeatures, 0, featureId, cdw11, cdw12);

    /// <summary>Get Features; <paramref name="select"/> 0 = current, 1 = default, 2 = saved, 3 = capabilities.</summary>
    public static NvmeCommand GetFeatures(byte featureId, uint select = 0, uint cdw11 = 0) =>
        new(AdminOpcode.GetFeatures, 0, featureId | (select & 0x7) << 8, cdw11);

    public static NvmeCommand KeepAlive() => new(AdminOpcode.KeepAlive);

    public static NvmeCommand AsyncEventRequest() => new(AdminOpcode.AsyncEventRequest);

    public static NvmeCommand Fabrics(byte fctype, uint cdw10 = 0, uint cdw11 = 0, uint cdw12 = 0, uint cdw13 = 0) =>
        new(AdminOpcode.Fabrics, fctype, cdw10, cdw11, cdw12, cdw13);

    /// <summary>Connect: QID, SQSIZE (0's based), CATTR (bit 2 disables SQ flow control), KATO in ms; data is <see cref="ConnectData"/>.</summary>
    public static NvmeCommand Connect(ushort qid, ushort sqSizeZeroBased, byte cattr = 0, uint keepAliveTimeoutMs = 0) =>
        Fabrics(FabricsType.Connect, (uint)qid << 16, sqSizeZeroBased | (uint)cattr << 16, keepAliveTimeoutMs);

    /// <summary>Property Get; ATTRIB bits 2:0 = 1 reads 8 bytes (CAP), 0 reads 4.</summary>
    public static NvmeCommand PropertyGet(uint offset, bool eightBytes) =>
        Fabrics(FabricsType.PropertyGet, eightBytes ? 1u : 0u, offset);

    public static NvmeCommand PropertySet(uint offset, ulong value, bool eightBytes = false) =>
        Fabrics(FabricsType.PropertySet, eightBytes ? 1u : 0u, offset, (uint)value, (uint)(value >> 32));

    public static NvmeCommand Disconnect() => Fabrics(FabricsType.Disconnect);

    /// <summary>NLB is 0's based and 16 bits wide: 1..65536 blocks per command.</summary>
    private static uint ZeroBasedBlocks(int blocks)
    {
        if (blocks is < 1 or > 65536) throw new ArgumentOutOfRangeException(nameof(blocks), blocks, "1..65536 blocks");
        return (uint)(blocks - 1);
    }
}
