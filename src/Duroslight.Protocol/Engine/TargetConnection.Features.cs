using Duroslight.Protocol.Nvme;

namespace Duroslight.Protocol.Engine;

/// <summary>Set Features / Get Features (NVMe base spec 5.21 and 5.15).</summary>
public sealed partial class TargetConnection
{
    private const uint SelectCurrent = 0, SelectDefault = 1, SelectSaved = 2, SelectCapabilities = 3;
    private const uint CapabilityChangeable = 1u << 2;
    private const int HostIdentifierSize = 16;

    private NvmeStatus SetFeatures(in SubmissionEntry cmd, Controller ctrl, out ulong result)
    {
        result = 0;
        byte fid = (byte)cmd.Cdw10;
        if ((cmd.Cdw10 & (1u << 31)) != 0) return NvmeStatus.FeatureIdNotSaveable;
        if (ctrl.IsDiscovery && fid is not (FeatureId.AsyncEventConfiguration or FeatureId.KeepAliveTimer)) return NvmeStatus.InvalidField;
        uint value = cmd.Cdw11;
        switch (fid)
        {
            case FeatureId.NumberOfQueues:
                return SetNumberOfQueues(ctrl, value, out result);
            case FeatureId.AsyncEventConfiguration:
                ctrl.AsyncEventConfig = value & (ctrl.IsDiscovery ? 1u << 31 : AsyncEvent.IoNotices);
                return NvmeStatus.Success;
            case FeatureId.KeepAliveTimer:
                ctrl.KatoMs = (int)Math.Min(value, int.MaxValue);
                return NvmeStatus.Success;
            case FeatureId.VolatileWriteCache:
                ctrl.WriteCacheEnabled = (value & 1) != 0;
                return NvmeStatus.Success;
            case FeatureId.TemperatureThreshold:
                ctrl.TemperatureThreshold = value & 0xFFFF;
                return NvmeStatus.Success;
            case FeatureId.PowerManagement:
                // One power state (NPSS = 0): only PS 0 exists.
                return (value & 0x1F) == 0 ? NvmeStatus.Success : NvmeStatus.InvalidField;
            case FeatureId.Arbitration or FeatureId.ErrorRecovery or FeatureId.WriteAtomicityNormal:
                // Accepted and without effect: fabrics queues have no arbitration burst, no TLER, and every
                // write is already atomic per logical block.
                return NvmeStatus.Success;
            case FeatureId.HostIdentifier:
                // The host identifier comes from the Connect data and cannot be changed on fabrics.
                return NvmeStatus.CommandSequenceError;
            default:
                return NvmeStatus.InvalidField;
        }
    }

    private NvmeStatus SetNumberOfQueues(Controller ctrl, uint value, out ulong result)
    {
        result = 0;
        uint nsqr = value & 0xFFFF, ncqr = value >> 16;
        if (nsqr == 0xFFFF || ncqr == 0xFFFF) return NvmeStatus.InvalidField;
        uint max = (uint)_options.MaxIoQueuesPerController - 1; // 0's based
        uint nsqa = Math.Min(nsqr, max), ncqa = Math.Min(ncqr, max);
        ctrl.IoQueuesGranted = (int)Math.Min(nsqa, ncqa) + 1;
        result = nsqa | ncqa << 16;
        return NvmeStatus.Success;
    }

    private NvmeStatus GetFeatures(CommandSlot slot, Controller ctrl, out ulong result)
    {
        result = 0;
        var cmd = slot.Command;
        byte fid = (byte)cmd.Cdw10;
        uint select = (cmd.Cdw10 >> 8) & 0x7;
        if (select > SelectCapabilities) return NvmeStatus.InvalidField;
        if (ctrl.IsDiscovery && fid is not (FeatureId.AsyncEventConfiguration or FeatureId.KeepAliveTimer)) return NvmeStatus.InvalidField;
        if (fid == FeatureId.HostIdentifier) return GetHostIdentifier(slot, ctrl);
        if (!TryFeatureValue(fid, ctrl, select == SelectCurrent, out uint value)) return NvmeStatus.InvalidField;
        result = select == SelectCapabilities ? CapabilityChangeable : value;
        return NvmeStatus.Success;
    }

    /// <summary>The current (or default) value of a feature; saved values equal defaults (nothing is saveable).</summary>
    private bool TryFeatureValue(byte fid, Controller ctrl, bool current, out uint value)
    {
        uint maxQueues = (uint)_options.MaxIoQueuesPerController - 1;
        uint granted = (uint)ctrl.IoQueuesGranted - 1;
        value = fid switch
        {
            FeatureId.NumberOfQueues => current ? granted | granted << 16 : maxQueues | maxQueues << 16,
            FeatureId.AsyncEventConfiguration => current ? ctrl.AsyncEventConfig : 0,
            FeatureId.KeepAliveTimer => current ? (uint)ctrl.KatoMs : 0,
            FeatureId.VolatileWriteCache => current ? (ctrl.WriteCacheEnabled ? 1u : 0u) : 1u,
            FeatureId.TemperatureThreshold => current ? ctrl.TemperatureThreshold : 0x0157,
            FeatureId.Arbitration or FeatureId.PowerManagement or FeatureId.ErrorRecovery or FeatureId.WriteAtomicityNormal => 0,
            _ => uint.MaxValue,
        };
        return value != uint.MaxValue;
    }

    private static NvmeStatus GetHostIdentifier(CommandSlot slot, Controller ctrl)
    {
        // EXHID must be 1: fabrics hosts use the 128-bit identifier.
        if ((slot.Command.Cdw11 & 1) == 0) return NvmeStatus.InvalidField;
        slot.RentBuffer(HostIdentifierSize);
        ctrl.HostId.TryWriteBytes(slot.Buffer.Span[..HostIdentifierSize], bigEndian: true, out _);
        return NvmeStatus.Success;
    }
}
