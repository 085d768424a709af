using System.Buffers.Binary;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Reservations;
using Duroslight.Protocol.Subsystems;

namespace Duroslight.Protocol.Engine;

/// <summary>
/// The Reservation Register, Report, Acquire and Release I/O commands (NVMe Base 2.0, section 7; rules in 8.19):
/// decoding and data only. The rules are <see cref="ReservationState"/>'s; <see cref="Target.Reserve"/> applies them
/// serialised per target and publishes the new state to the I/O path's conflict check (<c>IoCommands.Admit</c>).
/// </summary>
internal static class ReservationCommands
{
    private const uint IekeyBit = 1u << 3;

    public static bool Handles(byte opcode) => opcode is IoOpcode.ReservationRegister or IoOpcode.ReservationReport
        or IoOpcode.ReservationAcquire or IoOpcode.ReservationRelease;

    /// <summary>
    /// The Host Identifier as reservations key it: the 16 bytes of the Connect data HOSTID in wire order (the Guid was
    /// read big-endian from them), as a little-endian number, so the Report writes back exactly the host's bytes.
    /// </summary>
    public static UInt128 HostOf(Guid hostId)
    {
        Span<byte> bytes = stackalloc byte[16];
        hostId.TryWriteBytes(bytes, bigEndian: true, out _);
        return BinaryPrimitives.ReadUInt128LittleEndian(bytes);
    }

    /// <summary>
    /// Before any data moves: the namespace (masking applies; no conflict check, the rules decide), and a data
    /// transfer that holds the command's keys (Register and Acquire 16 bytes, Release 8) or fits the Report.
    /// </summary>
    public static NvmeStatus Check(CommandSlot slot, NvmeStatus admitted, NamespaceInfo? ns, long maxTransferBytes)
    {
        if (!admitted.IsSuccess) return admitted;
        slot.Namespace = ns;
        var cmd = slot.Command;
        if (cmd.SglLength > maxTransferBytes) return NvmeStatus.DataSglLengthInvalid;
        int needed = cmd.Opcode switch
        {
            IoOpcode.ReservationRegister or IoOpcode.ReservationAcquire => 16,
            IoOpcode.ReservationRelease => 8,
            _ => 0,
        };
        return cmd.SglLength < needed ? NvmeStatus.DataSglLengthInvalid : NvmeStatus.Success;
    }

    /// <summary>
    /// Runs a checked command whose data is in; null when it completes later (<see cref="Target.Reserve"/>: a record
    /// being stored, or Preempt and Abort waiting for the preempted hosts' commands).
    /// </summary>
    public static NvmeStatus? Run(CommandSlot slot, Controller ctrl, Target target, TargetConnection queue)
    {
        var cmd = slot.Command;
        var ns = slot.Namespace!;
        uint cdw10 = cmd.Cdw10;
        bool iekey = (cdw10 & IekeyBit) != 0;
        var type = (ReservationType)(byte)(cdw10 >> 8);
        var host = ctrl.ReservationHost;
        switch (cmd.Opcode)
        {
            case IoOpcode.ReservationReport:
                return Report(slot, ns);
            case IoOpcode.ReservationRegister:
                var change = (PtplChange)(cdw10 >> 30);
                // Without a store for the record the controller cannot honour PTPL (RESCAP bit 0 is clear then).
                if (change == PtplChange.Set && !target.PtplCapable) return NvmeStatus.InvalidField;
                ulong crkey = Key(slot, 0), nrkey = Key(slot, 8);
                return target.Reserve(ns, s => s.Register(host, (RegisterAction)(cdw10 & 7), iekey, crkey, nrkey, change), queue, slot);
            case IoOpcode.ReservationAcquire:
                ulong current = Key(slot, 0), preempt = Key(slot, 8);
                return target.Reserve(ns, s => s.Acquire(host, (AcquireAction)(cdw10 & 7), iekey, type, current, preempt), queue, slot);
            default:
                ulong key = Key(slot, 0);
                return target.Reserve(ns, s => s.Release(host, (ReleaseAction)(cdw10 & 7), iekey, type, key), queue, slot);
        }
    }

    /// <summary>
    /// The extended data structure only (CDW11 bit 0, EDS): this target's host identifiers are 128 bits, so a request
    /// for the 64-bit form is Host Identifier Inconsistent Format. NUMD (CDW10, 0-based dwords) bounds the copy.
    /// </summary>
    private static NvmeStatus Report(CommandSlot slot, NamespaceInfo ns)
    {
        var cmd = slot.Command;
        if ((cmd.Cdw11 & 1) == 0) return NvmeStatus.HostIdentifierInconsistentFormat;
        long bytes = Math.Min(((long)cmd.Cdw10 + 1) * 4, cmd.SglLength);
        if (bytes < ReservationCodec.ExtendedEntryBytes) return NvmeStatus.InvalidField;
        slot.RentBuffer((int)bytes);
        var page = slot.Buffer.Span[..(int)bytes];
        page.Clear();
        ReservationCodec.WriteReport(ns.Reservation, page);
        return NvmeStatus.Success;
    }

    private static ulong Key(CommandSlot slot, int offset) => BinaryPrimitives.ReadUInt64LittleEndian(slot.Data.Span[offset..]);
}
