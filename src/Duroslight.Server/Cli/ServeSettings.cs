using System.Net;

namespace Duroslight.Server.Cli;

/// <summary>A volume the config asks for: created at start when the store has none of that name.</summary>
public sealed record VolumeSpec(string Name, long SizeBytes);

/// <summary>The remote control API (HTTPS): off while <see cref="Listen"/> is null; then the other two are required.</summary>
/// <param name="Certificate">PEM with certificate and private key, or PKCS#12 (.pfx/.p12) without password.</param>
/// <param name="Tokens">Bearer tokens, one per line; the file must be readable by the service user only.</param>
public sealed record ApiSettings(IPEndPoint? Listen = null, string? Certificate = null, string? Tokens = null);

/// <summary>Everything `duroslight serve` needs; defaults are the embedded demo's (README lists them all).</summary>
public sealed record ServeSettings
{
    public IPEndPoint Listen { get; init; } = IPEndPoint.Parse("127.0.0.1:4420");
    public IPEndPoint Discovery { get; init; } = IPEndPoint.Parse("127.0.0.1:8009");
    /// <summary>Metrics endpoint, or null to disable.</summary>
    public IPEndPoint? Metrics { get; init; } = IPEndPoint.Parse("127.0.0.1:9180");
    /// <summary>The control API over HTTPS with bearer tokens; off by default.</summary>
    public ApiSettings Api { get; init; } = new();
    /// <summary>The address written into discovery log entries (traddr) for the I/O listener; defaults to the listen address.</summary>
    public string? AdvertiseAddress { get; init; }
    /// <summary>The traddr of the discovery listener in the log; defaults to the I/O listener's advertised address.</summary>
    public string? DiscoveryAdvertiseAddress { get; init; }
    public string DataDirectory { get; init; } = "./duroslight-data";
    /// <summary>The control API's Unix socket; null = "control.sock" in the data directory.</summary>
    public string? ControlSocket { get; init; }
    public string SubsystemNqn { get; init; } = Protocol.Subsystems.TargetOptions.DefaultSubsystemNqn;
    public int AuxSubsystemCount { get; init; } = 4;
    public int NodeIndex { get; init; }
    /// <summary>Name of the cluster this node belongs to (status, metrics, logs).</summary>
    public string ClusterId { get; init; } = "duroslight";
    /// <summary>etcd client URLs holding the cluster state; none: the node runs alone, as a single node.</summary>
    public IReadOnlyList<string> EtcdEndpoints { get; init; } = [];
    /// <summary>TTL of the node's etcd lease: how long after the node dies its liveness key (and leadership) stays.</summary>
    public int LeaseTtlSeconds { get; init; } = 6;
    /// <summary>Rebuild copy rate of a primary, MiB/s per replica rebuild (0: unlimited); low, so host I/O keeps most of the bandwidth.</summary>
    public int RebuildMiBPerSecond { get; init; } = 64;
    public bool IsClustered => EtcdEndpoints.Count > 0;
    /// <summary>Allowed host NQNs for every subsystem; empty means any host may connect.</summary>
    public IReadOnlyList<string> AllowedHosts { get; init; } = [];
    /// <summary>Per-subsystem host lists (pool 0 = default, N = aux-N), overriding <see cref="AllowedHosts"/>.</summary>
    public IReadOnlyDictionary<int, IReadOnlyList<string>> SubsystemHosts { get; init; } = new Dictionary<int, IReadOnlyList<string>>();
    /// <summary>Size of the volume created when the data directory holds none and no volumes are configured.</summary>
    public long DefaultVolumeBytes { get; init; } = 1L << 30;
    /// <summary>Volumes created at start if missing.</summary>
    public IReadOnlyList<VolumeSpec> Volumes { get; init; } = [];
    public int MaxControllersPerPool { get; init; } = 2030;
    /// <summary>max_ctrl_io_queues: I/O queues one controller may create (32 or 64 for many connections).</summary>
    public int MaxCtrlIoQueues { get; init; } = 32;
    /// <summary>host_data_timeout_ms: how long a connection may owe data without sending any (TargetOptions.HostDataTimeoutMs).</summary>
    public int HostDataTimeoutMs { get; init; } = 15_000;
    /// <summary>command_timeout_ms: how long storage may hold a command before it is answered (TargetOptions.StorageTimeoutMs).</summary>
    public int StorageTimeoutMs { get; init; } = 20_000;
    /// <summary>device_error_threshold, device_error_window_ms, device_stall_ms: when a device goes out of service.</summary>
    public DeviceHealthOptions DeviceHealth { get; init; } = new();
    /// <summary>host_data_budget: per shard, write buffers hosts may owe R2T'd data for (TargetOptions.HostDataBudgetPerShard).</summary>
    public long HostDataBudgetPerShard { get; init; } = 256L << 20;
    /// <summary>in_capsule_data: write data a host may send inside the command capsule (TargetOptions.MaxInCapsuleData).</summary>
    public int MaxInCapsuleData { get; init; } = 8192;
    /// <summary>KATO given to a discovery controller that connects with KATO 0.</summary>
    public int DiscoveryKatoMs { get; init; } = 120_000;
    /// <summary>Referrals to other nodes' discovery services, as ADDR:PORT.</summary>
    public IReadOnlyList<IPEndPoint> Referrals { get; init; } = [];
    public bool InMemory { get; init; }
    /// <summary>CPUs for the reactor's shards, one pinned shard each; empty: every CPU the process may use.</summary>
    public IReadOnlyList<int> Cores { get; init; } = [];
    /// <summary>
    /// Sleep by default: a busy-polling shard holds its core at 100% even when idle, which is right on dedicated
    /// storage cores (pass --poll busy) but wrong on a shared or small machine, where it starves the initiator.
    /// </summary>
    public Reactor.PollMode Poll { get; init; } = Reactor.PollMode.Sleep;
    /// <summary>gftl (default), sparse (one sparse file per volume) or memory.</summary>
    public string StoreKind { get; init; } = "gftl";
    /// <summary>GFTL devices in set order; none means one sparse file in the data directory.</summary>
    public IReadOnlyList<Storage.Gftl.GftlDeviceSpec> Devices { get; init; } = [];
    public Microsoft.Extensions.Logging.LogLevel LogLevel { get; init; } = Microsoft.Extensions.Logging.LogLevel.Information;
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(30);

    public string AdvertisedAddress => AdvertiseAddress ?? Listen.Address.ToString();
    public string DiscoveryAdvertisedAddress => DiscoveryAdvertiseAddress ?? AdvertisedAddress;
    public string ControlSocketPath => ControlSocket ?? Path.Combine(DataDirectory, "control.sock");
}
