using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;

namespace Duroslight.Protocol.Engine;

/// <summary>
/// A controller's Set Features / Get Features state (NVMe base spec 5.21 and 5.15). Touched on the admin
/// connection's thread only; I/O queues read <see cref="WriteCacheEnabled"/> (a plain bool: a stale read orders
/// nothing the host could observe, since it races with the host's own Set Features).
/// </summary>
internal sealed class ControllerFeatures(TargetOptions options, bool isDiscovery, int katoMs)
{
    private const uint SelectCurrent = 0, SelectCapabilities = 3;
    private const uint CapabilityChangeable = 1u << 2;
    private const uint DefaultTemperatureThreshold = 0x0157; // 343 K, the spec's customary default.

    public int KatoMs { get; private set; } = katoMs;
    public uint AsyncEventConfig { get; private set; }
    /// <summary>I/O queues this controller may connect (Number of Queues, 1-based).</summary>
    public int IoQueuesGranted { get; private set; } = options.MaxIoQueuesPerController;
    public bool WriteCacheEnabled { get; private set; } = true;
    public uint TemperatureThreshold { get; private set; } = DefaultTemperatureThreshold;

    /// <summary>Discovery controllers have only Asynchronous Event Configuration and Keep Alive Timer.</summary>
    private bool Exists(byte fid) => !isDiscovery || fid is FeatureId.AsyncEventConfiguration or FeatureId.KeepAliveTimer;

    public NvmeStatus Set(in SubmissionEntry cmd, out ulong result)
    {
        result = 0;
        byte fid = (byte)cmd.Cdw10;
        if ((cmd.Cdw10 & (1u << 31)) != 0) return NvmeStatus.FeatureIdNotSaveable;
        if (!Exists(fid)) return NvmeStatus.InvalidField;
        uint value = cmd.Cdw11;
        switch (fid)
        {
            case FeatureId.NumberOfQueues:
                return SetNumberOfQueues(value, out result);
            case FeatureId.AsyncEventConfiguration:
                AsyncEventConfig = value & (isDiscovery ? 1u << 31 : AsyncEvent.IoNotices);
                return NvmeStatus.Success;
            case FeatureId.KeepAliveTimer:
                KatoMs = (int)Math.Min(value, int.MaxValue);
                return NvmeStatus.Success;
            case FeatureId.VolatileWriteCache:
                WriteCacheEnabled = (value & 1) != 0;
                return NvmeStatus.Success;
            case FeatureId.TemperatureThreshold:
                TemperatureThreshold = value & 0xFFFF;
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

    private NvmeStatus SetNumberOfQueues(uint value, out ulong result)
    {
        result = 0;
        uint nsqr = value & 0xFFFF, ncqr = value >> 16;
        if (nsqr == 0xFFFF || ncqr == 0xFFFF) return NvmeStatus.InvalidField;
        uint max = (uint)options.MaxIoQueuesPerController - 1; // 0's based
        uint nsqa = Math.Min(nsqr, max), ncqa = Math.Min(ncqr, max);
        IoQueuesGranted = (int)Math.Min(nsqa, ncqa) + 1;
        result = nsqa | ncqa << 16;
        return NvmeStatus.Success;
    }

    /// <summary>Get Features' checks of the select field and the feature's existence (run first, once).</summary>
    public NvmeStatus CheckGet(in SubmissionEntry cmd) =>
        ((cmd.Cdw10 >> 8) & 0x7) > SelectCapabilities || !Exists((byte)cmd.Cdw10) ? NvmeStatus.InvalidField : NvmeStatus.Success;

    /// <summary>Get Features, after <see cref="CheckGet"/>, for every feature but Host Identifier (which returns data).</summary>
    public NvmeStatus Get(in SubmissionEntry cmd, out ulong result)
    {
        result = 0;
        uint select = (cmd.Cdw10 >> 8) & 0x7;
        if (!TryValue((byte)cmd.Cdw10, select == SelectCurrent, out uint value)) return NvmeStatus.InvalidField;
        result = select == SelectCapabilities ? CapabilityChangeable : value;
        return NvmeStatus.Success;
    }

    /// <summary>The current (or default) value of a feature; saved values equal defaults (nothing is saveable).</summary>
    private bool TryValue(byte fid, bool current, out uint value)
    {
        uint maxQueues = (uint)options.MaxIoQueuesPerController - 1;
        uint granted = (uint)IoQueuesGranted - 1;
        value = fid switch
        {
            FeatureId.NumberOfQueues => current ? granted | granted << 16 : maxQueues | maxQueues << 16,
            FeatureId.AsyncEventConfiguration => current ? AsyncEventConfig : 0,
            FeatureId.KeepAliveTimer => current ? (uint)KatoMs : 0,
            FeatureId.VolatileWriteCache => current ? (WriteCacheEnabled ? 1u : 0u) : 1u,
            FeatureId.TemperatureThreshold => current ? TemperatureThreshold : DefaultTemperatureThreshold,
            FeatureId.Arbitration or FeatureId.PowerManagement or FeatureId.ErrorRecovery or FeatureId.WriteAtomicityNormal => 0,
            _ => uint.MaxValue,
        };
        return value != uint.MaxValue;
    }
}
