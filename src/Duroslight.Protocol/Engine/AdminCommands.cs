using System.Buffers;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;

namespace Duroslight.Protocol.Engine;

/// <summary>
/// Admin commands: Identify, Get Log Page, Set/Get Features, AER, Keep Alive, Abort. Stateless: what they change
/// lives in the <see cref="Controller"/>.
/// </summary>
internal sealed class AdminCommands(Target target, TargetConnection queue)
{
    private const int HostIdentifierSize = 16;

    private readonly TargetOptions _options = target.Options;

    /// <summary>Runs an admin command; null means it completes later (a parked AER, a PTPL change being stored).</summary>
    public NvmeStatus? Run(CommandSlot slot, Controller ctrl, out ulong result)
    {
        result = 0;
        var cmd = slot.Command;
        switch (cmd.Opcode)
        {
            case AdminOpcode.Identify: return Identify(slot, ctrl);
            case AdminOpcode.GetLogPage: return GetLogPage(slot, ctrl);
            case AdminOpcode.SetFeatures when (byte)cmd.Cdw10 == ReservationNotificationMaskId: return SetReservationMask(cmd, ctrl, out result);
            case AdminOpcode.SetFeatures when (byte)cmd.Cdw10 == ReservationPersistenceId: return SetReservationPersistence(slot, ctrl, out result);
            case AdminOpcode.SetFeatures: return ctrl.Features.Set(cmd, out result);
            case AdminOpcode.GetFeatures when (byte)cmd.Cdw10 == ReservationNotificationMaskId: return GetReservationMask(cmd, ctrl, out result);
            case AdminOpcode.GetFeatures when (byte)cmd.Cdw10 == ReservationPersistenceId: return GetReservationPersistence(cmd, ctrl, out result);
            case AdminOpcode.GetFeatures: return GetFeatures(slot, ctrl, out result);
            case AdminOpcode.AsyncEventRequest: return ctrl.ParkAer(slot);
            case AdminOpcode.KeepAlive: return NvmeStatus.Success;
            case AdminOpcode.Abort:
                result = 1; // DW0 bit 0: command not aborted (commands here finish quickly; no cancellation).
                return NvmeStatus.Success;
            default: return NvmeStatus.InvalidOpcode;
        }
    }

    /// <summary>Feature 82h, Reservation Notification Mask: per namespace (or all, NSID FFFFFFFFh), not saveable.</summary>
    private const byte ReservationNotificationMaskId = 0x82;

    private NvmeStatus SetReservationMask(in SubmissionEntry cmd, Controller ctrl, out ulong result)
    {
        result = 0;
        if (ctrl.IsDiscovery) return NvmeStatus.InvalidField;
        if ((cmd.Cdw10 & (1u << 31)) != 0) return NvmeStatus.FeatureIdNotSaveable;
        if (cmd.Nsid != uint.MaxValue && target.GetNamespace(cmd.Nsid, ctrl.HostNqn) is null) return NvmeStatus.InvalidNamespaceOrFormat;
        ctrl.ReservationLog.SetMask(cmd.Nsid, cmd.Cdw11);
        return NvmeStatus.Success;
    }

    private NvmeStatus GetReservationMask(in SubmissionEntry cmd, Controller ctrl, out ulong result)
    {
        result = 0;
        if (ctrl.IsDiscovery) return NvmeStatus.InvalidField;
        if (target.GetNamespace(cmd.Nsid, ctrl.HostNqn) is null) return NvmeStatus.InvalidNamespaceOrFormat;
        result = ctrl.ReservationLog.MaskOf(cmd.Nsid);
        return NvmeStatus.Success;
    }

    private const byte ReservationPersistenceId = 0x83;

    /// <summary>
    /// Feature 83h, Reservation Persistence: CDW11 bit 0 is PTPL of one namespace, kept in its reservation state (and,
    /// set, stored with the volume before the command completes). Setting it needs a store (<see cref="Target.PtplCapable"/>).
    /// </summary>
    private NvmeStatus? SetReservationPersistence(CommandSlot slot, Controller ctrl, out ulong result)
    {
        result = 0;
        var cmd = slot.Command;
        if (ctrl.IsDiscovery) return NvmeStatus.InvalidField;
        if ((cmd.Cdw10 & (1u << 31)) != 0) return NvmeStatus.FeatureIdNotSaveable;
        var ns = target.GetNamespace(cmd.Nsid, ctrl.HostNqn);
        if (ns is null) return NvmeStatus.InvalidNamespaceOrFormat;
        bool ptpl = (cmd.Cdw11 & 1) != 0;
        if (ptpl && !target.PtplCapable) return NvmeStatus.InvalidField;
        return target.Reserve(ns, s => s.ChangePtpl(ptpl), queue, slot);
    }

    /// <summary>SEL 0 current PTPL, 1/2 default and saved (clear), 3 capabilities: namespace specific, changeable when stored.</summary>
    private NvmeStatus GetReservationPersistence(in SubmissionEntry cmd, Controller ctrl, out ulong result)
    {
        result = 0;
        uint select = (cmd.Cdw10 >> 8) & 0x7;
        if (ctrl.IsDiscovery || select > 3) return NvmeStatus.InvalidField;
        var ns = target.GetNamespace(cmd.Nsid, ctrl.HostNqn);
        if (ns is null) return NvmeStatus.InvalidNamespaceOrFormat;
        result = select switch
        {
            0 => ns.Reservation.Ptpl ? 1u : 0u,
            3 => (1u << 1) | (target.PtplCapable ? 1u << 2 : 0u),
            _ => 0u,
        };
        return NvmeStatus.Success;
    }

    private static NvmeStatus GetFeatures(CommandSlot slot, Controller ctrl, out ulong result)
    {
        result = 0;
        var cmd = slot.Command;
        var status = ctrl.Features.CheckGet(cmd);
        if (!status.IsSuccess) return status;
        return (byte)cmd.Cdw10 == FeatureId.HostIdentifier ? GetHostIdentifier(slot, ctrl) : ctrl.Features.Get(cmd, out result);
    }

    private static NvmeStatus GetHostIdentifier(CommandSlot slot, Controller ctrl)
    {
        // EXHID must be 1: fabrics hosts use the 128-bit identifier.
        if ((slot.Command.Cdw11 & 1) == 0) return NvmeStatus.InvalidField;
        slot.RentBuffer(HostIdentifierSize);
        ctrl.HostId.TryWriteBytes(slot.Buffer.Span[..HostIdentifierSize], bigEndian: true, out _);
        return NvmeStatus.Success;
    }

    private ControllerIdentity IdentityOf(Controller ctrl) => new()
    {
        Cntlid = ctrl.Cntlid,
        Type = ctrl.IsDiscovery ? ControllerType.Discovery : ControllerType.Io,
        SerialNumber = SerialFor(ctrl),
        ModelNumber = _options.ModelNumber,
        FirmwareRevision = _options.FirmwareRevision,
        SubsystemNqn = ctrl.Subsystem?.Nqn ?? TargetOptions.DiscoveryNqn,
        Version = Controller.Version,
        Mdts = _options.Mdts,
        KeepAliveSupport = 1,
        IoCommandCapsuleSize16 = (uint)(SubmissionEntry.Size + _options.MaxInCapsuleData) / 16,
        IoResponseCapsuleSize16 = 1,
        NamespaceCount = ctrl.IsDiscovery ? 0 : Target.MaxNamespaces,
        MaxCommands = (ushort)Math.Min(_options.MaxQueueEntries, ushort.MaxValue),
        Oaes = ctrl.IsDiscovery ? 1u << 31 : AsyncEvent.IoNotices,
        AerLimit = Controller.AerLimit - 1,
        VolatileWriteCache = !ctrl.IsDiscovery,
        MultiController = true,
        AnaReporting = !ctrl.IsDiscovery,
    };

    /// <summary>One serial per subsystem (pool): the host treats each aux subsystem as its own subsystem.</summary>
    private string SerialFor(Controller ctrl)
    {
        string sn = _options.SerialNumber + (ctrl.Subsystem?.PoolId ?? 9).ToString(System.Globalization.CultureInfo.InvariantCulture);
        return sn.Length > 20 ? sn[^20..] : sn;
    }

    private NvmeStatus Identify(CommandSlot slot, Controller ctrl)
    {
        var cmd = slot.Command;
        byte cns = (byte)cmd.Cdw10;
        byte csi = (byte)(cmd.Cdw11 >> 24);
        if (ctrl.IsDiscovery && cns != IdentifyCns.Controller) return NvmeStatus.InvalidField;
        slot.RentBuffer(IdentifyPages.PageSize);
        var page = slot.Buffer.Span[..IdentifyPages.PageSize];
        page.Clear();
        switch (cns)
        {
            case IdentifyCns.Controller:
                IdentifyPages.Controller(page, IdentityOf(ctrl));
                return NvmeStatus.Success;
            case IdentifyCns.Namespace:
                return IdentifyNamespace(page, cmd.Nsid, ctrl, (p, ns) => IdentifyPages.Namespace(p, ns, target.PtplCapable), inactiveIsZero: true);
            case IdentifyCns.NamespaceDescriptorList:
                return IdentifyNamespace(page, cmd.Nsid, ctrl, static (p, ns) => IdentifyPages.NamespaceDescriptors(p, ns), inactiveIsZero: false);
            case IdentifyCns.IoCommandSetNamespace when csi == 0:
                // The NVM command set's I/O-specific namespace structure: no fields apply (no PI, no extended LBA formats).
                return IdentifyNamespace(page, cmd.Nsid, ctrl, static (p, _) => IdentifyPages.NvmCommandSetNamespace(p), inactiveIsZero: false);
            case IdentifyCns.ActiveNamespaceList:
            case IdentifyCns.IoCommandSetActiveNamespaceList when csi == 0:
                return ActiveNamespaces(page, cmd.Nsid, ctrl);
            case IdentifyCns.IoCommandSetController when csi == 0:
                IdentifyPages.NvmCommandSetController(page);
                return NvmeStatus.Success;
            default:
                return NvmeStatus.InvalidField;
        }
    }

    private delegate void NamespaceWriter(Span<byte> page, NamespaceInfo ns);

    /// <summary>A namespace masked from the controller's host answers as an inactive NSID.</summary>
    private NvmeStatus IdentifyNamespace(Span<byte> page, uint nsid, Controller ctrl, NamespaceWriter write, bool inactiveIsZero)
    {
        if (nsid == 0 || (nsid > Target.MaxNamespaces && nsid != uint.MaxValue)) return NvmeStatus.InvalidNamespaceOrFormat;
        var ns = target.GetNamespace(nsid, ctrl.HostNqn);
        if (ns is not null)
        {
            write(page, ns);
            return NvmeStatus.Success;
        }
        // An inactive but valid NSID gets a zero-filled structure (CNS 00h); the other CNS values refuse it.
        return inactiveIsZero && nsid != uint.MaxValue ? NvmeStatus.Success : NvmeStatus.InvalidNamespaceOrFormat;
    }

    /// <summary>The active namespace list: only the namespaces the controller's host may see.</summary>
    private NvmeStatus ActiveNamespaces(Span<byte> page, uint startAfter, Controller ctrl)
    {
        if (startAfter >= 0xFFFF_FFFE) return NvmeStatus.InvalidNamespaceOrFormat;
        var table = target.Namespaces;
        // The table never holds more than MaxNamespaces (1024) entries: 4 KiB of stack.
        Span<uint> ids = stackalloc uint[(int)Target.MaxNamespaces];
        int count = 0;
        foreach (var ns in table)
            if (ns.IsVisibleTo(ctrl.HostNqn)) ids[count++] = ns.Nsid;
        ids = ids[..count];
        IdentifyPages.ActiveNamespaceList(page, ids, startAfter);
        return NvmeStatus.Success;
    }

    private NvmeStatus GetLogPage(CommandSlot slot, Controller ctrl)
    {
        var cmd = slot.Command;
        byte lid = (byte)cmd.Cdw10;
        bool retainEvent = (cmd.Cdw10 & (1u << 15)) != 0;
        ulong dwords = ((ulong)(cmd.Cdw11 & 0xFFFF) << 16 | (cmd.Cdw10 >> 16)) + 1;
        ulong offset = (ulong)cmd.Cdw13 << 32 | cmd.Cdw12;
        ulong length = dwords * 4;
        if ((offset & 3) != 0) return NvmeStatus.InvalidField;
        // NUMD defines the transfer; the SGL length is not checked against it (see Complete).
        if (length > (ulong)_options.MaxTransferBytes) return NvmeStatus.DataSglLengthInvalid;
        if (!IsLogPageSupported(lid, ctrl)) return NvmeStatus.InvalidLogPage;

        byte[] full = lid == LogPageId.AsymmetricNamespaceAccess ? AnaAccess.BuildLog(target, cmd.Cdw10, out int fullLength, out ulong genctr) : BuildLogPage(lid, ctrl, retainEvent, out fullLength, out genctr);
        try
        {
            slot.RentBuffer((int)length);
            if (!LogPages.CopyWindow(full.AsSpan(0, fullLength), offset, slot.Buffer.Span[..(int)length]))
                return NvmeStatus.InvalidField;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(full);
        }
        if (!retainEvent) Unmask(ctrl, lid, genctr);
        return NvmeStatus.Success;
    }

    /// <summary>
    /// A read with RAE=0 re-arms the page's notice. Log 70h re-arms it on every discovery controller of the host
    /// NQN (a host may keep a persistent discovery connection and read the log on a short one); a change the host
    /// has not seen yet is then notified.
    /// </summary>
    private void Unmask(Controller ctrl, byte lid, ulong genctrRead)
    {
        if (lid == LogPageId.Discovery)
        {
            target.OnDiscoveryLogRead(ctrl.HostNqn, genctrRead);
            return;
        }
        bool stale;
        lock (ctrl.ChangedNamespaces) stale = lid == LogPageId.ChangedNamespaceList && ctrl.ChangedNamespaces.Count > 0;
        stale |= lid == ReservationNotificationLogId && ctrl.ReservationLog.Pending > 0;
        ctrl.UnmaskLogPage(lid, stale);
    }

    private static bool IsLogPageSupported(byte lid, Controller ctrl) => ctrl.IsDiscovery
        ? lid is LogPageId.Discovery or LogPageId.CommandsSupportedAndEffects
        : lid is LogPageId.ErrorInformation or LogPageId.SmartHealth or LogPageId.FirmwareSlot
            or LogPageId.ChangedNamespaceList or LogPageId.CommandsSupportedAndEffects or LogPageId.AsymmetricNamespaceAccess
            or ReservationNotificationLogId;

    /// <summary>Log page 80h, Reservation Notification: one entry per read (<see cref="ReservationLog"/>).</summary>
    private const byte ReservationNotificationLogId = 0x80;

    /// <summary>The whole log page in a pooled buffer (the caller returns it) of which <paramref name="length"/> bytes count.</summary>
    private byte[] BuildLogPage(byte lid, Controller ctrl, bool retainEvent, out int length, out ulong genctr)
    {
        genctr = 0;
        if (lid == LogPageId.Discovery) return BuildDiscoveryLog(ctrl, out length, out genctr);
        length = lid switch
        {
            LogPageId.ErrorInformation => LogPages.ErrorInformationEntrySize,
            LogPageId.SmartHealth or LogPageId.FirmwareSlot => 512,
            ReservationNotificationLogId => ReservationLog.PageBytes,
            _ => 4096,
        };
        var buffer = ArrayPool<byte>.Shared.Rent(length);
        var page = buffer.AsSpan(0, length);
        page.Clear();
        switch (lid)
        {
            case LogPageId.ErrorInformation: LogPages.ErrorInformation(page); break;
            case LogPageId.SmartHealth: LogPages.SmartHealth(page, new SmartHealthInfo(308, 100, 0, 0, 0, 0, 0, 0)); break;
            case LogPageId.FirmwareSlot: LogPages.FirmwareSlot(page, _options.FirmwareRevision); break;
            case LogPageId.ChangedNamespaceList: ChangedNamespaceLog(page, ctrl, retainEvent); break;
            case ReservationNotificationLogId: ctrl.ReservationLog.Take(page); break;
            case LogPageId.CommandsSupportedAndEffects:
                LogPages.CommandsSupportedAndEffects(page, ctrl.IsDiscovery ? ControllerType.Discovery : ControllerType.Io);
                break;
        }
        return buffer;
    }

    private static void ChangedNamespaceLog(Span<byte> page, Controller ctrl, bool retainEvent)
    {
        lock (ctrl.ChangedNamespaces)
        {
            var ids = new uint[ctrl.ChangedNamespaces.Count];
            ctrl.ChangedNamespaces.CopyTo(ids);
            LogPages.ChangedNamespaceList(page, ids);
            if (!retainEvent) ctrl.ChangedNamespaces.Clear();
        }
    }

    private byte[] BuildDiscoveryLog(Controller ctrl, out int length, out ulong genctr)
    {
        var entries = target.DiscoveryEntriesFor(ctrl.HostNqn, out genctr);
        length = LogPages.DiscoveryLogSize(entries.Count);
        var buffer = ArrayPool<byte>.Shared.Rent(length);
        buffer.AsSpan(0, length).Clear();
        LogPages.DiscoveryLog(buffer.AsSpan(0, length), genctr, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(entries));
        return buffer;
    }
}
