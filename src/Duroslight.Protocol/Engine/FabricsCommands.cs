using System.Buffers.Binary;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;

namespace Duroslight.Protocol.Engine;

/// <summary>Fabrics commands of one queue: Connect, Property Get/Set, Disconnect (NVMe-oF 1.1 chapter 3).</summary>
internal sealed class FabricsCommands(Target target, TargetConnection queue)
{
    private const int ConnectDataSize = 1024;
    private const ushort DynamicCntlid = 0xFFFF;
    // Offsets the Connect response's IPO reports (NVMe-oF "Connect Response", IATTR bit 16 = data, 0 = SQE).
    private const int IpoQid = 42, IpoSqSize = 44;
    private const int IpoDataCntlid = 16, IpoDataSubNqn = 256, IpoDataHostNqn = 512;
    private const uint IattrData = 1u << 16;

    private readonly TargetOptions _options = target.Options;

    /// <summary>
    /// Runs a fabrics command for a queue whose controller is <paramref name="ctrl"/> (null before Connect).
    /// <paramref name="connected"/> is the controller a successful Connect joined; <paramref name="disconnect"/>
    /// asks the caller to close the queue after the response.
    /// </summary>
    public NvmeStatus Run(CommandSlot slot, Controller? ctrl, out ulong result, out Controller? connected, out bool disconnect)
    {
        var cmd = slot.Command;
        result = 0;
        connected = null;
        disconnect = false;
        switch (cmd.FabricsCommandType)
        {
            case FabricsType.Connect:
                return ctrl is not null ? NvmeStatus.CommandSequenceError : Connect(slot, out result, out connected);
            case FabricsType.PropertyGet when queue.QueueId == 0 && ctrl is not null:
                return ctrl.GetProperty(cmd.Cdw10 & 0x7, cmd.Cdw11, out result);
            case FabricsType.PropertySet when queue.QueueId == 0 && ctrl is not null:
                return ctrl.SetProperty(cmd.Cdw10 & 0x7, cmd.Cdw11, cmd.Cdw12);
            case FabricsType.Disconnect when ctrl is not null:
                disconnect = true;
                return NvmeStatus.Success;
            case FabricsType.PropertyGet or FabricsType.PropertySet or FabricsType.Disconnect:
                return ctrl is null ? NvmeStatus.CommandSequenceError : NvmeStatus.InvalidOpcode;
            default:
                return NvmeStatus.InvalidOpcode;
        }
    }

    private NvmeStatus Connect(CommandSlot slot, out ulong result, out Controller? ctrl)
    {
        result = 0;
        ctrl = null;
        var cmd = slot.Command;
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
        Subsystem? subsystem = discovery ? null : target.ResolveSubsystem(subNqn);
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
            ? ConnectAdmin(subsystem, hostNqn, hostId, cntlid, (int)cmd.Cdw12, out result, out ctrl)
            : ConnectIo(subsystem, hostNqn, qid, cntlid, out result, out ctrl);
        if (!status.IsSuccess) return status;
        ctrl!.Touch(queue.Now);
        result = ctrl.Cntlid;
        queue.OnConnected(qid, sqsize + 1, sqFlowControlDisabled: (cattr & 0x4) != 0);
        return status;
    }

    private NvmeStatus ConnectAdmin(Subsystem? subsystem, string hostNqn, Guid hostId, ushort cntlid, int katoMs,
        out ulong result, out Controller? ctrl)
    {
        result = 0;
        ctrl = null;
        if (cntlid != DynamicCntlid) return InvalidConnectParameter(IattrData | IpoDataCntlid, out result);
        if (subsystem is null && katoMs == 0) katoMs = _options.DiscoveryDefaultKatoMs;
        return target.CreateController(subsystem, hostNqn, hostId, katoMs, queue, out ctrl);
    }

    private NvmeStatus ConnectIo(Subsystem? subsystem, string hostNqn, ushort qid, ushort cntlid,
        out ulong result, out Controller? ctrl)
    {
        result = 0;
        ctrl = null;
        if (subsystem is null) return InvalidConnectParameter(IpoQid, out result);
        var found = target.FindController(subsystem, cntlid);
        if (found is null || found.HostNqn != hostNqn) return InvalidConnectParameter(IattrData | IpoDataCntlid, out result);
        if (!found.IsReady) return NvmeStatus.CommandSequenceError;
        if (qid > found.Features.IoQueuesGranted || !found.TryAttach(queue, qid)) return InvalidConnectParameter(IpoQid, out result);
        ctrl = found;
        return NvmeStatus.Success;
    }

    private static NvmeStatus InvalidConnectParameter(uint ipoIattr, out ulong result)
    {
        result = ipoIattr;
        return NvmeStatus.ConnectInvalidParameters;
    }
}
