namespace Duroslight.Host;

/// <summary>How <see cref="NvmeTcpController"/> connects.</summary>
public sealed record NvmeTcpControllerOptions
{
    public bool HeaderDigest { get; init; }

    public bool DataDigest { get; init; }

    /// <summary>I/O queues to ask for (Set Features Number of Queues may grant fewer).</summary>
    public int IoQueues { get; init; } = 1;

    /// <summary>Outstanding commands per I/O queue; clamped to CAP.MQES + 1.</summary>
    public int QueueDepth { get; init; } = 32;

    /// <summary>Admin queue depth (Linux NVME_AQ_DEPTH is 32).</summary>
    public int AdminQueueDepth { get; init; } = 32;

    /// <summary>KATO in ms sent in the admin Connect; Keep Alive goes out every KATO/2. 0 disables both.</summary>
    public int KeepAliveTimeoutMs { get; init; } = 5000;

    /// <summary>Host identifier; <see cref="Guid.Empty"/> picks a random one per controller.</summary>
    public Guid HostId { get; init; }

    public int AdminInCapsuleDataLimit { get; init; } = HostQueueOptions.AdminInCapsuleData;

    /// <summary>I/O in-capsule data limit; null derives it from Identify Controller IOCCSZ (IOCCSZ*16 - 64).</summary>
    public int? IoInCapsuleDataLimit { get; init; }

    /// <summary>MAXR2T (0's based) asked for in ICReq.</summary>
    public uint MaxR2T { get; init; }

    /// <summary>Connect I/O queues with CATTR bit 2: no SQ flow control, so reads may finish with C2HData SUCCESS.</summary>
    public bool DisableSqFlowControl { get; init; }

    /// <summary>
    /// Called with DW0 of each Asynchronous Event Request completion (on a thread-pool thread). When set, the controller
    /// enables the notices (AEC bit 8, or bit 31 on a discovery controller) and keeps one AER outstanding. The handler
    /// should read the log page named in DW0 bits 23:16 without RAE so the target re-arms the event.
    /// </summary>
    public Action<uint>? AsyncEventHandler { get; init; }

    /// <summary>How long to wait for CSTS.RDY / CSTS.SHST at most, whatever CAP.TO says.</summary>
    public TimeSpan StateChangeTimeout { get; init; } = TimeSpan.FromSeconds(10);
}
