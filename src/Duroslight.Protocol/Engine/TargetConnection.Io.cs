using System.Buffers.Binary;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;

namespace Duroslight.Protocol.Engine;

/// <summary>NVM command set I/O commands: Read, Write, Flush, Write Zeroes, Dataset Management.</summary>
public sealed partial class TargetConnection
{
    private const int DsmRangeSize = 16;
    private const uint FuaBit = 1u << 30, DeallocateBit = 1u << 25, DsmAttributeDeallocate = 1u << 2;

    /// <summary>Runs an I/O command; null means a storage request was emitted and completes later.</summary>
    private NvmeStatus? ExecuteIo(CommandSlot slot, Controller ctrl, out ulong result)
    {
        result = 0;
        var cmd = slot.Command;
        if (AnaAccess.Refuse(_target, cmd.Nsid) is { } ana) return ana;
        return cmd.Opcode switch
        {
            IoOpcode.Read => ReadWrite(slot, ctrl, StorageOp.Read),
            IoOpcode.Write => ReadWrite(slot, ctrl, StorageOp.Write),
            IoOpcode.Flush => Flush(slot),
            IoOpcode.WriteZeroes => WriteZeroes(slot, ctrl),
            IoOpcode.DatasetManagement => DatasetManagement(slot),
            _ => NvmeStatus.InvalidOpcode,
        };
    }

    /// <summary>NSID, LBA range, MDTS and SGL length checks shared by Read and Write (and Write's pre-R2T check).</summary>
    private NvmeStatus ValidateReadWrite(in SubmissionEntry cmd, out NamespaceInfo? ns, out long offset, out int length)
    {
        offset = 0;
        length = 0;
        ns = _target.GetNamespace(cmd.Nsid);
        if (ns is null) return NvmeStatus.InvalidNamespaceOrFormat;
        if (!InRange(ns, cmd.Slba, cmd.BlockCount)) return NvmeStatus.LbaOutOfRange;
        long bytes = (long)cmd.BlockCount << ns.BlockShift;
        if (bytes > _options.MaxTransferBytes) return NvmeStatus.InvalidField;
        if (cmd.SglLength != bytes) return NvmeStatus.DataSglLengthInvalid;
        offset = (long)cmd.Slba << ns.BlockShift;
        length = (int)bytes;
        return NvmeStatus.Success;
    }

    private static bool InRange(NamespaceInfo ns, ulong slba, ulong blocks) =>
        slba < (ulong)ns.BlockCount && blocks <= (ulong)ns.BlockCount - slba;

    private NvmeStatus? ReadWrite(CommandSlot slot, Controller ctrl, StorageOp op)
    {
        var cmd = slot.Command;
        var status = ValidateReadWrite(cmd, out var ns, out long offset, out int length);
        if (!status.IsSuccess) return status;
        if (op == StorageOp.Read) slot.RentBuffer(length);
        else if (!slot.HasBuffer || slot.DataLength != length) return NvmeStatus.DataSglLengthInvalid;
        var req = slot.Request;
        Prepare(req, op, ns!.VolumeId, offset, length);
        req.Buffer = slot.Data;
        req.ForceUnitAccess = op == StorageOp.Write && ((cmd.Cdw12 & FuaBit) != 0 || !ctrl.WriteCacheEnabled);
        SubmitStorage(slot);
        return null;
    }

    private NvmeStatus? Flush(CommandSlot slot)
    {
        uint nsid = slot.Command.Nsid;
        Guid volume = Guid.Empty;
        if (nsid != uint.MaxValue)
        {
            var ns = _target.GetNamespace(nsid);
            if (ns is null) return NvmeStatus.InvalidNamespaceOrFormat;
            volume = ns.VolumeId;
        }
        Prepare(slot.Request, StorageOp.Flush, volume, 0, 0);
        SubmitStorage(slot);
        return null;
    }

    private NvmeStatus? WriteZeroes(CommandSlot slot, Controller ctrl)
    {
        var cmd = slot.Command;
        var ns = _target.GetNamespace(cmd.Nsid);
        if (ns is null) return NvmeStatus.InvalidNamespaceOrFormat;
        if (!InRange(ns, cmd.Slba, cmd.BlockCount)) return NvmeStatus.LbaOutOfRange;
        var req = slot.Request;
        Prepare(req, StorageOp.WriteZeroes, ns.VolumeId, (long)cmd.Slba << ns.BlockShift, (long)cmd.BlockCount << ns.BlockShift);
        req.MayDeallocate = (cmd.Cdw12 & DeallocateBit) != 0;
        req.ForceUnitAccess = (cmd.Cdw12 & FuaBit) != 0 || !ctrl.WriteCacheEnabled;
        SubmitStorage(slot);
        return null;
    }

    private NvmeStatus? DatasetManagement(CommandSlot slot)
    {
        var cmd = slot.Command;
        var ns = _target.GetNamespace(cmd.Nsid);
        if (ns is null) return NvmeStatus.InvalidNamespaceOrFormat;
        int count = (int)(cmd.Cdw10 & 0xFF) + 1;
        // Linux sends the range list in a whole 4 KiB page: accept any transfer that holds all the ranges.
        if (!slot.HasBuffer || slot.DataLength < count * DsmRangeSize) return NvmeStatus.DataSglLengthInvalid;
        // Without AD the ranges are only hints (IDR/IDW): nothing to do.
        if ((cmd.Cdw11 & DsmAttributeDeallocate) == 0) return NvmeStatus.Success;
        var req = slot.Request;
        if (req.Ranges.Length < 256) req.Ranges = new ByteRange[256]; // once per slot, at most 256 ranges
        int used = 0;
        var data = slot.Buffer.Span[..slot.DataLength];
        for (int i = 0; i < count; i++)
        {
            var r = data.Slice(i * DsmRangeSize, DsmRangeSize);
            uint blocks = BinaryPrimitives.ReadUInt32LittleEndian(r[4..]);
            ulong slba = BinaryPrimitives.ReadUInt64LittleEndian(r[8..]);
            if (blocks == 0) continue;
            if (!InRange(ns, slba, blocks)) return NvmeStatus.LbaOutOfRange;
            req.Ranges[used++] = new ByteRange((long)slba << ns.BlockShift, (long)blocks << ns.BlockShift);
        }
        if (used == 0) return NvmeStatus.Success;
        Prepare(req, StorageOp.Deallocate, ns.VolumeId, 0, 0);
        req.RangeCount = used;
        SubmitStorage(slot);
        return null;
    }

    private static void Prepare(StorageRequest req, StorageOp op, Guid volume, long offset, long length)
    {
        req.Op = op;
        req.VolumeId = volume;
        req.Offset = offset;
        req.Length = length;
        req.Buffer = default;
        req.ForceUnitAccess = false;
        req.MayDeallocate = false;
        req.RangeCount = 0;
    }
}
