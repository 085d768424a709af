using System.Buffers.Binary;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;

namespace Duroslight.Protocol.Engine;

/// <summary>Fabrics commands: Connect, Property Get/Set, Disconnect (NVMe-oF 1.1 chapter 3).</summary>
public sealed partial class TargetConnection
{
    private const int ConnectDataSize = 1024;
    private const ushort DynamicCntlid = 0xFFFF;
    // Offsets the Connect response's IPO reports (NVMe-oF "Connect Response", IATTR bit 16 = data, 0 = SQE).
    private const int IpoQid = 42, IpoSqSize = 44;
    private const int IpoDataCntlid = 16, IpoDataSubNqn = 256, IpoDataHostNqn = 512;
    private const uint IattrData = 1u << 16;

    // CC and CSTS fields.
    private const uint CcEnable = 1, CcShnMask = 3u << 14;
    private const uint CstsReady = 1, CstsFatal = 2, CstsShstComplete = 2u << 2, CstsShstMask = 3u << 2;

    private void Execute(CommandSlot slot)
    {
        var cmd = slot.Command;
        if (cmd.Opcode == AdminOpcode.Fabrics)
        {
            ExecuteFabrics(slot);
            return;
        }
        var ctrl = Controller;
        if (ctrl is null || !ctrl.IsReady)
        {
            Complete(slot, NvmeStatus.CommandSequenceError);
            return;
        }
        NvmeStatus? status = QueueId == 0 ? ExecuteAdmin(slot, ctrl, out ulong result) : ExecuteIo(slot, ctrl, out result);
        if (status is { } done) Complete(slot, done, result);
    }

    private void ExecuteFabrics(CommandSlot slot)
    {
        var cmd = slot.Command;
        ulong result = 0;
        bool disconnect = false;
        NvmeStatus status;
        switch (cmd.FabricsCommandType)
        {
            case FabricsType.Connect:
                status = Connect(slot, out result);
                break;
            case FabricsType.PropertyGet when QueueId == 0 && Controller is not null:
                status = PropertyGet(cmd, Controller, out result);
                break;
            case FabricsType.PropertySet when QueueId == 0 && Controller is not null:
                status = PropertySet(cmd, Controller);
                break;
            case FabricsType.Disconnect when Controller is not null:
                status = NvmeStatus.Success;
                disconnect = true;
                break;
            case FabricsType.PropertyGet or FabricsType.PropertySet or FabricsType.Disconnect:
                status = Controller is null ? NvmeStatus.CommandSequenceError : NvmeStatus.InvalidOpcode;
                break;
            default:
                status = NvmeStatus.InvalidOpcode;
                break;
        }
        Complete(slot, status, result);
        // The response is already in the output: the driver sends it, then closes the socket.
        if (disconnect) Close();
    }

    private NvmeStatus Connect(CommandSlot slot, out ulong result)
    {
        result = 0;
        var cmd = slot.Command;
        if (_phase != Phase.AwaitingConnect) return NvmeStatus.CommandSequenceError;
        if ((cmd.Cdw10 & 0xFFFF) != 0) return NvmeStatus.ConnectIncompatibleFormat;
        if (!slot.HasBuffer || slot.DataLength != ConnectDataSize) return NvmeStatus.DataSglLengthInvalid;
        ushort qid = (ushort)(cmd.Cdw10 >> 16);
        int sqsize = (int)(cmd.Cdw11 & 0xFFFF);
        byte cattr = (byte)(cmd.Cdw11 >> 16);
        var data = slot.Buffer.Span[..ConnectDataSize];
        var hostId = new Guid(data[..16], bigEndian: true);
        ushort cntlid = BinaryPrimitives.ReadUInt16LittleEndian(data[16..]);
        string subNqn = WireStrings.ReadNqn(data.Slice(256, 256));
        string hostNqn = WireStrings.ReadNqn(data.Slice(512, 256));

        bool discovery = subNqn == TargetOptions.DiscoveryNqn;
        Subsystem? subsystem = discovery ? null : _target.ResolveSubsystem(subNqn);
        if (!discovery && subsystem is null) return InvalidConnectParameter(IattrData | IpoDataSubNqn, out result);
        // SPDK's tools send an empty Host NQN unless told one; like SPDK's and the kernel's targets we take it where
        // any host is allowed. Where a host list is set, Allows("") is false and it gets Connect Invalid Host below.
        if (hostNqn.Length != 0 && !Nqn.IsValid(hostNqn)) return InvalidConnectParameter(IattrData | IpoDataHostNqn, out result);
        if (subsystem is not null && !subsystem.Access.Allows(hostNqn))
        {
            result = IattrData | IpoDataHostNqn;
            return NvmeStatus.ConnectInvalidHost;
        }
        if (sqsize == 0 || sqsize >= _options.MaxQueueEntries) return InvalidConnectParameter(IpoSqSize, out result);

        var status = qid == 0
            ? ConnectAdmin(subsystem, hostNqn, hostId, cntlid, (int)cmd.Cdw12, out result)
            : ConnectIo(subsystem, hostNqn, qid, cntlid, out result);
        if (!status.IsSuccess) return status;
        QueueId = qid;
        _sqEntries = sqsize + 1;
        _sqFlowControlDisabled = (cattr & 0x4) != 0;
        GrowSlots(_sqEntries);
        _phase = Phase.Connected;
        return status;
    }

    private NvmeStatus ConnectAdmin(Subsystem? subsystem, string hostNqn, Guid hostId, ushort cntlid, int katoMs, out ulong result)
    {
        result = 0;
        if (cntlid != DynamicCntlid) return InvalidConnectParameter(IattrData | IpoDataCntlid, out result);
        if (subsystem is null && katoMs == 0) katoMs = _options.DiscoveryDefaultKatoMs;
        var status = _target.CreateController(subsystem, hostNqn, hostId, katoMs, this, out var ctrl);
        if (!status.IsSuccess) return status;
        ctrl!.IoQueuesGranted = _options.MaxIoQueuesPerController;
        ctrl.Touch(_now);
        Controller = ctrl;
        result = ctrl.Cntlid;
        return status;
    }

    private NvmeStatus ConnectIo(Subsystem? subsystem, string hostNqn, ushort qid, ushort cntlid, out ulong result)
    {
        result = 0;
        if (subsystem is null) return InvalidConnectParameter(IpoQid, out result);
        var ctrl = _target.FindController(subsystem, cntlid);
        if (ctrl is null || ctrl.HostNqn != hostNqn) return InvalidConnectParameter(IattrData | IpoDataCntlid, out result);
        if (!ctrl.IsReady) return NvmeStatus.CommandSequenceError;
        if (qid > ctrl.IoQueuesGranted || !ctrl.TryAttach(this, qid)) return InvalidConnectParameter(IpoQid, out result);
        ctrl.Touch(_now);
        Controller = ctrl;
        result = ctrl.Cntlid;
        return NvmeStatus.Success;
    }

    private static NvmeStatus InvalidConnectParameter(uint ipoIattr, out ulong result)
    {
        result = ipoIattr;
        return NvmeStatus.ConnectInvalidParameters;
    }

    /// <summary>CAP: MQES, CQR, TO = 7.5 s, CSS = NVM command set, MPSMIN = 4 KiB.</summary>
    private ulong Capabilities => (ulong)(_options.MaxQueueEntries - 1) | 1UL << 16 | 15UL << 24 | 1UL << 37;

    private const uint Version = 0x0001_0300;

    /// <summary>Properties end where the vendor-specific range starts (NVMe-oF property map 0h..FFFh).</summary>
    private const uint PropertySpaceEnd = 0x1000;

    /// <summary>
    /// CAP (8 bytes), VS, CC, CSTS. Every other offset of the property space is reserved for a message-based
    /// controller (CMBSZ, PMRCAP, BPINFO, NSSR without subsystem reset...) and reads as 0h, as reserved register
    /// space does: SPDK's identify reads CMBSZ and PMRCAP and printed "Property Get failed" when they were refused.
    /// A defined property read in another width (properties are read in their native width), a misaligned or
    /// out-of-range offset, or a size other than 4 or 8 bytes is Invalid Field. Shutdown changes nothing here:
    /// CC and CSTS stay readable during and after it.
    /// </summary>
    private NvmeStatus PropertyGet(in SubmissionEntry cmd, Controller ctrl, out ulong value)
    {
        value = 0;
        uint size = cmd.Cdw10 & 0x7, offset = cmd.Cdw11;
        if (size > 1) return NvmeStatus.InvalidField;
        bool eightBytes = size == 1;
        ulong? known = (offset, eightBytes) switch
        {
            (PropertyOffset.Cap, true) => Capabilities,
            (PropertyOffset.Vs, false) => Version,
            (PropertyOffset.Cc, false) => ctrl.Cc,
            (PropertyOffset.Csts, false) => ctrl.Csts,
            _ => null,
        };
        if (known is { } v)
        {
            value = v;
            return NvmeStatus.Success;
        }
        bool definedProperty = offset is PropertyOffset.Cap or PropertyOffset.Cap + 4 or PropertyOffset.Vs or PropertyOffset.Cc or PropertyOffset.Csts;
        bool aligned = offset % (eightBytes ? 8u : 4u) == 0;
        return !definedProperty && aligned && offset < PropertySpaceEnd ? NvmeStatus.Success : NvmeStatus.InvalidField;
    }

    private NvmeStatus PropertySet(in SubmissionEntry cmd, Controller ctrl)
    {
        if (cmd.Cdw11 != PropertyOffset.Cc || (cmd.Cdw10 & 0x7) != 0) return NvmeStatus.InvalidField;
        uint old = ctrl.Cc, cc = cmd.Cdw12;
        ctrl.Cc = cc;
        if ((cc & CcEnable) != 0 && (old & CcEnable) == 0) EnableController(ctrl, cc);
        else if ((cc & CcEnable) == 0 && (old & CcEnable) != 0) ResetController(ctrl);
        if ((cc & CcShnMask) != 0 && (old & CcShnMask) == 0)
        {
            // Shutdown: nothing is cached above the store's own durability, so it completes at once.
            ctrl.Csts = (ctrl.Csts & ~CstsShstMask) | CstsShstComplete;
        }
        else if ((cc & CcShnMask) == 0)
        {
            ctrl.Csts &= ~CstsShstMask;
        }
        return NvmeStatus.Success;
    }

    private static void EnableController(Controller ctrl, uint cc)
    {
        uint css = (cc >> 4) & 0x7, mps = (cc >> 7) & 0xF, ams = (cc >> 11) & 0x7;
        uint iosqes = (cc >> 16) & 0xF, iocqes = (cc >> 20) & 0xF;
        bool valid = css == 0 && mps == 0 && ams == 0 && (ctrl.IsDiscovery || (iosqes == 6 && iocqes == 4));
        ctrl.Csts = valid ? CstsReady : CstsFatal;
        ctrl.SetReady(valid);
    }

    private static void ResetController(Controller ctrl)
    {
        ctrl.Csts = 0;
        ctrl.SetReady(false);
    }
}
