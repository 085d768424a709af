namespace Duroslight.Protocol.Subsystems;

/// <summary>Protocol-level settings of one node's target; every value has a default a demo can run with.</summary>
public sealed record TargetOptions
{
    public const string DiscoveryNqn = "nqn.2014-08.org.nvmexpress.discovery";
    public const string DefaultSubsystemNqn = "nqn.2026-11.io.duroslight:default";

    /// <summary>NQN of the default subsystem (pool 0); aux subsystems are "&lt;nqn&gt;.aux-N" (":aux-N" is accepted too).</summary>
    public string SubsystemNqn { get; init; } = DefaultSubsystemNqn;

    /// <summary>Number of auxiliary subsystems (0..4), each exposing every namespace of the default subsystem.</summary>
    public int AuxSubsystemCount { get; init; } = 4;

    /// <summary>This node's index in the cluster: selects its disjoint controller-ID range.</summary>
    public int NodeIndex { get; init; }

    public int MaxControllersPerPool { get; init; } = 2030;

    /// <summary>Most I/O queues one controller may create (max_ctrl_io_queues).</summary>
    public int MaxIoQueuesPerController { get; init; } = 32;

    /// <summary>Largest queue (entries) a host may connect: CAP.MQES + 1.</summary>
    public int MaxQueueEntries { get; init; } = 1024;

    /// <summary>In-capsule data accepted per command, on admin and I/O queues (IOCCSZ = (64 + this) / 16).</summary>
    public int MaxInCapsuleData { get; init; } = 8192;

    /// <summary>MAXH2CDATA announced in ICResp; R2Ts never ask for more than this at once.</summary>
    public int MaxH2CData { get; init; } = 128 * 1024;

    /// <summary>MDTS as a power of two of 4 KiB pages: 8 = 1 MiB per command.</summary>
    public byte Mdts { get; init; } = 8;

    public string SerialNumber { get; init; } = "DSL0000000000000000";
    public string ModelNumber { get; init; } = "Duroslight";
    public string FirmwareRevision { get; init; } = "0.1.0";

    /// <summary>Keep-alive for a discovery controller that connects with KATO 0 (as Linux nvmet: 2 minutes).</summary>
    public int DiscoveryDefaultKatoMs { get; init; } = 120_000;

    /// <summary>
    /// How long a connection may owe bytes without sending any: the rest of a PDU, R2T'd data, or ICReq and Connect
    /// after the TCP accept. Past it the connection is closed and its buffers freed, so a host that stalls (or
    /// never sends what it announced) holds memory for a bounded time. An idle connected queue owes nothing and
    /// is left to keep-alive. 0 disables it.
    /// </summary>
    public int HostDataTimeoutMs { get; init; } = 15_000;

    /// <summary>
    /// Per shard: bytes of write buffers (size classes) that hosts may owe data for at once; writes beyond it wait
    /// for their R2T. With <see cref="HostDataTimeoutMs"/> it bounds what stalled hosts can hold on a shard.
    /// </summary>
    public long HostDataBudgetPerShard { get; init; } = 256L << 20;

    /// <summary>
    /// How long a command may sit in the storage layer (a stalled device) before the target answers it with Command
    /// Interrupted; its buffer stays held until storage returns, and that late completion is dropped. Under the
    /// Linux host's 30 s I/O timeout, so the host gets a status instead of resetting the controller. 0 disables it.
    /// </summary>
    public int StorageTimeoutMs { get; init; } = 20_000;

    /// <summary>Host access applied to the default and aux subsystems at start.</summary>
    public HostAccess InitialHostAccess { get; init; } = HostAccess.AllowAny;

    /// <summary>
    /// NQN of the backend subsystem that a cluster's primaries forward replicated writes to (null: none, a lone node).
    /// Not listed in the discovery log; its host list starts empty.
    /// </summary>
    public string? BackendNqn { get; init; }

    public int MaxTransferBytes => 4096 << Mdts;

    public void Validate()
    {
        if (AuxSubsystemCount is < 0 or > 4) throw new ArgumentOutOfRangeException(nameof(AuxSubsystemCount), AuxSubsystemCount, "aux subsystem count must be 0..4");
        if (MaxIoQueuesPerController is < 1 or > 65534) throw new ArgumentOutOfRangeException(nameof(MaxIoQueuesPerController), MaxIoQueuesPerController, "must be 1..65534");
        if (MaxQueueEntries is < 32 or > 65536) throw new ArgumentOutOfRangeException(nameof(MaxQueueEntries), MaxQueueEntries, "must be 32..65536");
        if (MaxH2CData < 4096 || MaxH2CData % 4 != 0) throw new ArgumentOutOfRangeException(nameof(MaxH2CData), MaxH2CData, "MAXH2CDATA must be >= 4096 and a multiple of 4");
        if (MaxInCapsuleData is < 1024 or > 1 << 20 || MaxInCapsuleData % 16 != 0) throw new ArgumentOutOfRangeException(nameof(MaxInCapsuleData), MaxInCapsuleData, "in-capsule data must be 1024..1 MiB and a multiple of 16 (Connect needs 1024)");
        if (HostDataBudgetPerShard < 4096L << Mdts) throw new ArgumentOutOfRangeException(nameof(HostDataBudgetPerShard), HostDataBudgetPerShard, "must hold at least one MDTS-sized write");
        if (StorageTimeoutMs < 0) throw new ArgumentOutOfRangeException(nameof(StorageTimeoutMs), StorageTimeoutMs, "must be >= 0 (0 disables it)");
        if (HostDataTimeoutMs < 0) throw new ArgumentOutOfRangeException(nameof(HostDataTimeoutMs), HostDataTimeoutMs, "must be >= 0 (0 disables it)");
        if (Mdts is < 1 or > 10) throw new ArgumentOutOfRangeException(nameof(Mdts), Mdts, "MDTS must be 1..10");
        if (BackendNqn is not null && !Nqn.IsValid(BackendNqn)) throw new ArgumentException($"invalid backend NQN '{BackendNqn}'", nameof(BackendNqn));
        if (!Nqn.IsValid(SubsystemNqn)) throw new ArgumentException($"invalid subsystem NQN '{SubsystemNqn}'", nameof(SubsystemNqn));
    }
}

/// <summary>NQN syntax checks (NVMe base spec 4.5: "nqn.yyyy-mm.reverse-domain:..." or the UUID form, at most 223 bytes).</summary>
public static class Nqn
{
    public static bool IsValid(string nqn) =>
        nqn.Length is > 11 and <= Nvme.WireStrings.MaxNqnBytes && nqn.StartsWith("nqn.", StringComparison.Ordinal) && IsPrintableAscii(nqn);

    private static bool IsPrintableAscii(string s)
    {
        foreach (char c in s) if (c is < (char)0x21 or > (char)0x7E) return false;
        return true;
    }
}
