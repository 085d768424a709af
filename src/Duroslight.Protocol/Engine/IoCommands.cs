using System.Buffers.Binary;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Reservations;
using Duroslight.Protocol.Subsystems;

namespace Duroslight.Protocol.Engine;

/// <summary>
/// NVM command set I/O commands of one queue: Read, Write, Flush, Write Zeroes, Dataset Management, in two steps.
/// <see cref="Check"/> validates a command once, before any data moves, passes it through <see cref="Admit"/>
/// (the one gate between a command and a namespace) and prepares its <see cref="StorageRequest"/>;
/// <see cref="Run"/> attaches the data and hands the request to the driver.
/// </summary>
internal sealed class IoCommands(Target target, TargetConnection queue)
{
    private const int DsmRangeSize = 16;
    private const int MaxDsmRanges = 256;
    private const uint FuaBit = 1u << 30, DeallocateBit = 1u << 25, DsmAttributeDeallocate = 1u << 2;

    private readonly long _maxTransferBytes = target.Options.MaxTransferBytes;

    public NvmeStatus Check(CommandSlot slot, Controller ctrl, bool fetchesData)
    {
        var cmd = slot.Command;
        switch (cmd.Opcode)
        {
            case IoOpcode.Read: return CheckReadWrite(slot, ctrl, StorageOp.Read);
            case IoOpcode.Write: return CheckReadWrite(slot, ctrl, StorageOp.Write);
            case IoOpcode.Flush: return CheckFlush(slot, ctrl);
            case IoOpcode.WriteZeroes: return CheckWriteZeroes(slot, ctrl);
            case IoOpcode.DatasetManagement: return CheckDatasetManagement(slot, ctrl, fetchesData);
            case IoOpcode.ReservationRegister or IoOpcode.ReservationReport or IoOpcode.ReservationAcquire or IoOpcode.ReservationRelease:
                return ReservationCommands.Check(slot, Admit(cmd, ctrl, null, out var rns), rns, _maxTransferBytes);
            default: return NvmeStatus.InvalidOpcode;
        }
    }

    /// <summary>
    /// The one gate every namespace I/O command passes, once, before its data moves or storage sees it. Per-controller
    /// policy plugs in here, in this order: namespace masking (a namespace not attached to <paramref name="ctrl"/> is
    /// answered as inactive: Invalid Namespace or Format), the ANA state of the namespace's group on this port
    /// (inaccessible, persistent loss or change answers that ANA status), reservations (a command the holder's type
    /// refuses to this host answers Reservation Conflict).
    /// </summary>
    /// <param name="access">What the command does to the media; null for the Reservation commands, which the
    /// reservation rules check as they run.</param>
    private NvmeStatus Admit(in SubmissionEntry cmd, Controller ctrl, ReservationAccess? access, out NamespaceInfo? ns)
    {
        // A peer node's forwarded write: the primary already admitted the host's command. Only from the volume's
        // primary: a deposed one's forwards (sent late, from before its fence went down) are refused.
        if (ctrl.Subsystem is { IsBackend: true })
        {
            ns = target.GetNamespace(cmd.Nsid);
            if (ns is null) return NvmeStatus.InvalidNamespaceOrFormat;
            return ns.ForwardsOnlyFrom is not { } from || from == ctrl.HostNqn ? NvmeStatus.Success : NvmeStatus.AsymmetricAccessInaccessible;
        }
        // Masking: a namespace this host may not see is inactive to it, exactly as an unused NSID.
        ns = target.GetNamespace(cmd.Nsid, ctrl.HostNqn);
        if (ns is null) return NvmeStatus.InvalidNamespaceOrFormat;
        // ANA: on a path that is not optimized (a secondary replica's node) the namespace answers its ANA state.
        NvmeStatus ana = AnaAccess.Admit(ns);
        if (!ana.IsSuccess) return ana;
        // Reservations (8.19): a command the holder's type refuses to this host.
        return access is { } a && !ns.Reservation.Permits(ctrl.ReservationHost, a) ? NvmeStatus.ReservationConflict : NvmeStatus.Success;
    }

    private static bool InRange(NamespaceInfo ns, ulong slba, ulong blocks) =>
        slba < (ulong)ns.BlockCount && blocks <= (ulong)ns.BlockCount - slba;

    /// <summary>NSID, LBA range, MDTS and SGL length: for a Write before its R2Ts, for a Read before its buffer.</summary>
    private NvmeStatus CheckReadWrite(CommandSlot slot, Controller ctrl, StorageOp op)
    {
        var cmd = slot.Command;
        var status = Admit(cmd, ctrl, op == StorageOp.Read ? ReservationAccess.Read : ReservationAccess.Write, out var ns);
        if (!status.IsSuccess) return status;
        if (!InRange(ns!, cmd.Slba, cmd.BlockCount)) return NvmeStatus.LbaOutOfRange;
        long bytes = (long)cmd.BlockCount << ns!.BlockShift;
        if (bytes > _maxTransferBytes) return NvmeStatus.InvalidField;
        if (cmd.SglLength != bytes) return NvmeStatus.DataSglLengthInvalid;
        var req = Prepare(slot, op, ns, (long)cmd.Slba << ns.BlockShift, bytes);
        req.ForceUnitAccess = op == StorageOp.Write && ((cmd.Cdw12 & FuaBit) != 0 || !ctrl.Features.WriteCacheEnabled);
        return NvmeStatus.Success;
    }

    private NvmeStatus CheckFlush(CommandSlot slot, Controller ctrl)
    {
        var cmd = slot.Command;
        if (cmd.Nsid == uint.MaxValue)
        {
            Prepare(slot, StorageOp.Flush, null, 0, 0); // every namespace: Guid.Empty
            return NvmeStatus.Success;
        }
        var status = Admit(cmd, ctrl, ReservationAccess.Write, out var ns);
        if (status.IsSuccess) Prepare(slot, StorageOp.Flush, ns, 0, 0);
        return status;
    }

    private NvmeStatus CheckWriteZeroes(CommandSlot slot, Controller ctrl)
    {
        var cmd = slot.Command;
        var status = Admit(cmd, ctrl, ReservationAccess.Write, out var ns);
        if (!status.IsSuccess) return status;
        if (!InRange(ns!, cmd.Slba, cmd.BlockCount)) return NvmeStatus.LbaOutOfRange;
        var req = Prepare(slot, StorageOp.WriteZeroes, ns, (long)cmd.Slba << ns!.BlockShift, (long)cmd.BlockCount << ns.BlockShift);
        req.MayDeallocate = (cmd.Cdw12 & DeallocateBit) != 0;
        req.ForceUnitAccess = (cmd.Cdw12 & FuaBit) != 0 || !ctrl.Features.WriteCacheEnabled;
        return NvmeStatus.Success;
    }

    /// <summary>The namespace and the transfer bound; the ranges themselves are checked as <see cref="Run"/> reads them.</summary>
    private NvmeStatus CheckDatasetManagement(CommandSlot slot, Controller ctrl, bool fetchesData)
    {
        var cmd = slot.Command;
        if (fetchesData && cmd.SglLength > _maxTransferBytes) return NvmeStatus.DataSglLengthInvalid;
        var status = Admit(cmd, ctrl, ReservationAccess.Write, out var ns);
        if (status.IsSuccess) Prepare(slot, StorageOp.Deallocate, ns, 0, 0);
        return status;
    }

    /// <summary>Hands a checked command to the driver; a status when there is nothing to do or its data is bad.</summary>
    public NvmeStatus? Run(CommandSlot slot, Controller ctrl)
    {
        if (ReservationCommands.Handles(slot.Command.Opcode)) return ReservationCommands.Run(slot, ctrl, target, queue);
        var req = slot.Request;
        switch (req.Op)
        {
            case StorageOp.Read:
                slot.RentBuffer((int)req.Length);
                req.Buffer = slot.Data;
                break;
            case StorageOp.Write:
                // Check matched the SGL to the range, and the transport gathered exactly the SGL's bytes.
                req.Buffer = slot.Data;
                break;
            case StorageOp.Deallocate:
                var status = ReadDsmRanges(slot);
                if (status is not null) return status;
                break;
        }
        queue.SubmitStorage(slot);
        return null;
    }

    /// <summary>Reads the Deallocate ranges into the request; a status when there is nothing to submit.</summary>
    private static NvmeStatus? ReadDsmRanges(CommandSlot slot)
    {
        var cmd = slot.Command;
        var ns = slot.Namespace!;
        int count = (int)(cmd.Cdw10 & 0xFF) + 1;
        // Linux sends the range list in a whole 4 KiB page: accept any transfer that holds all the ranges.
        if (!slot.HasBuffer || slot.DataLength < count * DsmRangeSize) return NvmeStatus.DataSglLengthInvalid;
        // Without AD the ranges are only hints (IDR/IDW): nothing to do.
        if ((cmd.Cdw11 & DsmAttributeDeallocate) == 0) return NvmeStatus.Success;
        var req = slot.Request;
        if (req.Ranges.Length < MaxDsmRanges) req.Ranges = new ByteRange[MaxDsmRanges]; // once per slot
        int used = 0;
        var data = slot.Data.Span;
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
        req.RangeCount = used;
        return null;
    }

    /// <summary>Fills the slot's storage request from a checked command (every field, since the request is reused).</summary>
    private static StorageRequest Prepare(CommandSlot slot, StorageOp op, NamespaceInfo? ns, long offset, long length)
    {
        slot.Namespace = ns;
        var req = slot.Request;
        req.Op = op;
        req.VolumeId = ns?.VolumeId ?? Guid.Empty;
        req.Offset = offset;
        req.Length = length;
        req.Buffer = default;
        req.ForceUnitAccess = false;
        req.MayDeallocate = false;
        req.RangeCount = 0;
        return req;
    }
}
