using System.Globalization;
using System.Net;
using Duroslight.Protocol.Subsystems;
using Duroslight.Reactor;
using Duroslight.Server.Cli;
using Duroslight.Server.Cluster;
using Duroslight.Server.Replication;
using Duroslight.Server.Control;
using Duroslight.Server.Execution;
using Duroslight.Server.Metrics;
using Duroslight.Server.Transport;
using Duroslight.Storage.Devices;
using Duroslight.Storage.Gftl;
using Duroslight.Storage.Volumes;
using Microsoft.Extensions.Logging;

namespace Duroslight.Server.Hosting;

/// <summary>
/// One node's process: storage, protocol target, transport, metrics and control API, started in the product's
/// order and stopped gracefully (stop accepting, finish in-flight commands, disconnect hosts, flush, close).
/// </summary>
public sealed class NodeHost : IAsyncDisposable
{
    private const int BlockSize = NodeVolumes.BlockSize;

    private readonly ILogger _logger;
    private readonly ILoggerFactory _loggers;
    private readonly VolumeTable _volumeTable;
    private readonly TaskCompletionSource _shutdownRequested = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private IVolumeStore? _store;
    private NodeVolumes? _volumes;
    private ShardGroup? _shards;
    private FaultRules? _faultRules;
    private ITransport? _transport;
    private MetricsServer? _metrics;
    private ControlServer? _control;
    private ApiServer? _api;
    private ClusterMember? _cluster;
    private Replicator? _replicator;
    private volatile NodeState _state = NodeState.Inactive;
    private Timer? _deviceWatch;

    public NodeHost(ServeSettings settings, ILoggerFactory loggers)
    {
        Settings = settings;
        _loggers = loggers;
        _logger = loggers.CreateLogger("duroslight");
        _volumeTable = new VolumeTable();
        Target = new Target(new TargetOptions
        {
            SubsystemNqn = settings.SubsystemNqn,
            AuxSubsystemCount = settings.AuxSubsystemCount,
            NodeIndex = settings.NodeIndex,
            SerialNumber = $"DSL{settings.NodeIndex:D2}",
            MaxControllersPerPool = settings.MaxControllersPerPool,
            MaxIoQueuesPerController = settings.MaxCtrlIoQueues,
            DiscoveryDefaultKatoMs = settings.DiscoveryKatoMs,
            HostDataTimeoutMs = settings.HostDataTimeoutMs,
            StorageTimeoutMs = settings.StorageTimeoutMs,
            HostDataBudgetPerShard = settings.HostDataBudgetPerShard,
            MaxInCapsuleData = settings.MaxInCapsuleData,
            InitialHostAccess = Access(settings.AllowedHosts),
            BackendNqn = settings.IsClustered ? Replicator.BackendNqnFor(settings.SubsystemNqn) : null,
        });
        foreach (var (pool, hosts) in settings.SubsystemHosts)
            if (pool < Target.Subsystems.Count) Target.SetHostAccess(Target.Subsystems[pool], Access(hosts));
    }

    public ServeSettings Settings { get; }
    public Target Target { get; }
    public NodeState State => _state;
    public DateTimeOffset StartedAt { get; } = DateTimeOffset.UtcNow;
    public int ConnectionCount => _transport?.ConnectionCount ?? 0;
    public IReadOnlyCollection<IBlockVolume> Volumes => _volumeTable.Volumes;
    /// <summary>Per-shard I/O counters (one shard until the reactor started).</summary>
    public IoMetrics IoMetrics => _volumeTable.Metrics;

    /// <summary>Volume operations (control API); available once the node passed the Duroslight state.</summary>
    public NodeVolumes VolumeOps => _volumes ?? throw ControlException.Conflict($"node is {_state.Name()}: no volumes yet");

    /// <summary>Completes when the control API asked for a graceful shutdown.</summary>
    public Task ShutdownRequested => _shutdownRequested.Task;

    /// <summary>Called on every lifecycle state change (the process reports it to systemd as STATUS=).</summary>
    public Action<NodeState>? StateChanged { get; init; }

    public IReadOnlyList<VolumeView> VolumeList() => _volumes?.List() ?? [];

    public void RequestShutdown()
    {
        _logger.LogInformation("shutdown requested through the control API");
        _shutdownRequested.TrySetResult();
    }

    /// <summary>The reactor's shards (null until started).</summary>
    public ShardGroup? Shards => _shards;

    /// <summary>Test instrumentation: device faults from a rules file (over the power-loss shadows, if both are on).</summary>
    private void InjectFaults(string rulesFile)
    {
        _logger.LogWarning("TEST INSTRUMENTATION: {Variable}={File}, device I/O fails or stalls as that file's rules say; never set it in production", FaultRules.EnvironmentVariable, rulesFile);
        _faultRules = FaultRules.Watch(rulesFile, message => _logger.LogWarning("{Message}", message),
            count => _logger.LogWarning("TEST INSTRUMENTATION: {Count} device fault rules in force", count));
        FaultRules rules = _faultRules;
        Func<IBlockIo, IBlockIo> under = PowerLossShadowBlockIo.Requested ? static io => new PowerLossShadowBlockIo(io) : static io => io;
        BlockIo.WrapAll(io => new FaultInjectingBlockIo(under(io), rules, ShardRunning(io)));
    }

    /// <summary>For a shard's ring I/O, runs an action on that shard (found when needed: shards start after wrapping).</summary>
    private Action<Action>? ShardRunning(IBlockIo io)
    {
        if (io is SyncBlockIo) return null;
        return action =>
        {
            for (int i = 0; i < _shards!.Count; i++)
            {
                if (!ReferenceEquals(_shards[i].DeviceIo, io)) continue;
                _shards[i].Post(new ShardAction(action));
                return;
            }

            action(); // not a shard's: any thread may submit
        };
    }

    private sealed class ShardAction(Action action) : IShardWork
    {
        public void Execute() => action();
    }

    public void Start()
    {
        if (PowerLossShadowBlockIo.Requested)
        {
            _logger.LogWarning("TEST INSTRUMENTATION: {Variable}=1, every device write is shadowed for a power-loss test; never set it in production", PowerLossShadowBlockIo.EnvironmentVariable);
            BlockIo.WrapAll(static io => new PowerLossShadowBlockIo(io));
        }

        if (FaultRules.RequestedFile is { } faultsFile) InjectFaults(faultsFile);

        StartShards();
        WatchDevices();
        Enter(NodeState.Gftl);
        _store = OpenStore();
        Enter(NodeState.BuildingTarget);
        _volumes = new NodeVolumes(_store, Target, _volumeTable, _logger);
        Target.ReservationPersistence = _volumes.PersistReservation;
        if (!Settings.IsClustered) _volumes.ExposeAll();
        foreach (var r in Settings.Referrals) Target.AddReferral(new Referral(r.Address.ToString(), Port(r)));
        Enter(NodeState.Activating);
        StartListeners();
        if (Settings.IsClustered) JoinCluster();
        if (Settings.Metrics is { } metricsEndPoint)
        {
            _metrics = new MetricsServer(this, _loggers);
            _metrics.Start(metricsEndPoint);
        }
        _control = new ControlServer(this, _loggers);
        _control.Start(Settings.ControlSocketPath);
        _api = new ApiServer(this, _loggers);
        _api.Start(Settings.Api);
        Enter(NodeState.Active);
    }

    /// <summary>Graceful shutdown; idempotent.</summary>
    public async Task StopAsync()
    {
        if (_state is NodeState.Draining or NodeState.Stopped) return;
        Enter(NodeState.Draining);
        // Leave first: the lease goes, so the cluster sees the node down and another node leads at once.
        if (_cluster is not null) await _cluster.DisposeAsync().ConfigureAwait(false);
        if (_transport is not null) await _transport.DrainAsync(Settings.DrainTimeout).ConfigureAwait(false);
        if (_replicator is not null) await _replicator.DisposeAsync().ConfigureAwait(false);
        Target.DisconnectAll();
        _faultRules?.Dispose(); // stalled device I/O must not hold the final flush
        if (_volumes is not null) await _volumes.FlushAllAsync().ConfigureAwait(false);
        if (_api is not null) await _api.DisposeAsync().ConfigureAwait(false);
        if (_control is not null) await _control.DisposeAsync().ConfigureAwait(false);
        if (_metrics is not null) await _metrics.DisposeAsync().ConfigureAwait(false);
        if (_transport is not null) await _transport.DisposeAsync().ConfigureAwait(false);
        Gftl?.StopCollector(); // its slices run on the shards
        _shards?.Dispose();
        _deviceWatch?.Dispose();
        DeviceHealth.DeviceFailed -= OnDeviceFailed;
        _store?.Dispose();
        Enter(NodeState.Stopped);
    }

    public async ValueTask DisposeAsync() => await StopAsync().ConfigureAwait(false);

    private static HostAccess Access(IReadOnlyList<string> hosts) => hosts.Count == 0 ? HostAccess.AllowAny : HostAccess.Only(hosts);

    /// <summary>The cluster membership (null when the node runs alone, without etcd).</summary>
    public ClusterMember? Cluster => _cluster;

    /// <summary>Replicated writes (null when the node runs alone).</summary>
    public Replicator? Replicator => _replicator;

    /// <summary>
    /// Activating in a cluster: register in etcd, then open the replicas the cluster places here, every cluster
    /// volume's channels forwarding through the replicator.
    /// </summary>
    private void JoinCluster()
    {
        _replicator = new Replicator(_shards!, Target.Backend!.Nqn, Replicator.NodeHostNqn(Settings.ClusterId, Settings.NodeIndex), _logger)
        {
            RebuildBytesPerSecond = (long)Settings.RebuildMiBPerSecond << 20,
            Self = Settings.NodeIndex,
        };
        _volumeTable.WrapChannel = _replicator.Wrap;
        _cluster = new ClusterMember(Settings, _volumes!, _logger, Target.Fence, _replicator)
        {
            ViewApplied = ApplyClusterView,
            FenceChanged = _ => Target.NotifyAnaChange(),
        };
        _volumes!.SharedReservations = _cluster.StoreReservationAsync;
        _replicator.DropInEtcd = _cluster.DropFromInSyncAsync;
        _replicator.JoinInEtcd = _cluster.JoinInSyncAsync;
        _replicator.SaveSyncPointInEtcd = _cluster.SaveSyncPointAsync;
        _cluster.JoinAsync($"{Settings.AdvertisedAddress}:{Port(Settings.Listen)}", $"{Settings.DiscoveryAdvertisedAddress}:{Port(Settings.Discovery)}")
            .GetAwaiter().GetResult();
    }

    /// <summary>
    /// Port IDs are distinct across the cluster's nodes (one subsystem spans them): node N's I/O port is 2N+1, its
    /// discovery port 2N+2 (a lone node 0: 1 and 2).
    /// </summary>
    public static ushort IoPortId(int nodeIndex) => (ushort)(2 * nodeIndex + 1);

    private ushort DiscoveryPortId => (ushort)(2 * Settings.NodeIndex + 2);

    /// <summary>After each read of the cluster state: the peers' ports in the discovery log, the cluster's host lists.</summary>
    private void ApplyClusterView(ClusterView view)
    {
        AllowPeers(view);
        AdvertisePeers(view);
        ApplyHostLists(view);
    }

    /// <summary>
    /// The host lists set through the cluster replace the configured ones (controllers of removed hosts are torn
    /// down); a view read before this node's own last change is skipped, so it cannot briefly undo that change.
    /// </summary>
    private void ApplyHostLists(ClusterView view)
    {
        if (view.Revision < _cluster!.HostListsWrittenAt) return;
        foreach (var (pool, (record, _)) in view.HostLists)
        {
            if (pool >= Target.Subsystems.Count) continue;
            var s = Target.Subsystems[pool];
            var access = record.ToAccess();
            if (s.Access.IsAllowAny == access.IsAllowAny && s.Access.Hosts.SetEquals(access.Hosts)) continue;
            Target.SetHostAccess(s, access);
            _logger.LogInformation("hosts of {Subsystem} from the cluster: {Access}", s.Nqn, access.IsAllowAny ? "any" : string.Join(",", access.Hosts));
        }
    }

    /// <summary>The backend subsystem admits the cluster's nodes (their host NQNs), no one else.</summary>
    private void AllowPeers(ClusterView view)
    {
        var nodes = new List<string>();
        foreach (int index in view.Nodes.Keys) nodes.Add(Replicator.NodeHostNqn(Settings.ClusterId, index));
        var backend = Target.Backend!;
        if (!backend.Access.IsAllowAny && backend.Access.Hosts.SetEquals(nodes)) return;
        Target.SetHostAccess(backend, HostAccess.Only(nodes));
    }

    /// <summary>Every live peer's I/O port goes into this node's discovery log; a node that comes or goes changes it (AEN).</summary>
    private void AdvertisePeers(ClusterView view)
    {
        var peers = new List<ListenerInfo>();
        foreach (var (index, record) in view.Nodes)
        {
            if (index == Settings.NodeIndex || !view.Alive.ContainsKey(index)) continue;
            int colon = record.Io.LastIndexOf(':');
            if (colon <= 0) continue;
            peers.Add(new ListenerInfo(record.Io[..colon].Trim('[', ']'), record.Io[(colon + 1)..], IoPortId(index), IsDiscovery: false));
        }
        if (Target.SetPeerListeners(peers)) _logger.LogInformation("discovery log: {Count} peer I/O ports", peers.Count);
    }

    private void Enter(NodeState state)
    {
        _state = state;
        _cluster?.SetState(state);
        _logger.LogInformation("state {State}", state.Name());
        StateChanged?.Invoke(state);
    }

    /// <summary>First, so a machine where io_uring cannot run is refused before anything else happens.</summary>
    private void StartShards()
    {
        _shards = new ShardGroup(Settings.Cores, Settings.Poll);
        foreach (string warning in ShardGroup.CheckLimits(expectedConnections: 4096)) _logger.LogWarning("{Warning}", warning);
        _shards.Start();
        _volumeTable.Metrics = new IoMetrics(_shards.Count);
        _logger.LogInformation("reactor: {Count} shards ({Mode} polling), io_uring setup flags 0x{Flags:x}",
            _shards.Count, Settings.Poll, _shards[0].RingFlags);
    }

    /// <summary>The store's devices (GFTL devices, sparse volume files) and their health; empty before the store opened.</summary>
    public IReadOnlyList<DeviceHealth> Devices => _store?.Devices ?? [];

    /// <summary>
    /// Device health thresholds from the settings, the log line of a device going out of service, and the stall
    /// check (once a second: the bound is in tens of seconds).
    /// </summary>
    private void WatchDevices()
    {
        DeviceHealth.Options = Settings.DeviceHealth;
        DeviceHealth.DeviceFailed += OnDeviceFailed;
        _deviceWatch = new Timer(static _ => DeviceHealth.CheckStalls(Environment.TickCount64), null, 1000, 1000);
    }

    private void OnDeviceFailed(DeviceHealth device)
    {
        bool ours = false;
        foreach (DeviceHealth d in Devices) ours |= ReferenceEquals(d, device);
        if (!ours) return; // another node in this process (tests)
        _logger.LogError("device {Device} ({Kind}) is out of service: {Reason}; its volumes answer Namespace Not Ready until it is replaced and the node restarted",
            device.Name, device.Kind, device.Reason);
    }

    /// <summary>The store when it is the GFTL (space, GC and write amplification for metrics); null otherwise.</summary>
    public GftlStore? Gftl => _store as GftlStore;

    /// <summary>Start-up recovery of the GFTL (checkpoint or device scan), readable while it runs; null for other stores.</summary>
    public GftlRecoveryProgress? StoreRecovery { get; private set; }

    /// <summary>Opens the store and creates the configured volumes (or the default one in an empty store).</summary>
    private IVolumeStore OpenStore()
    {
        IVolumeStore store = Settings.InMemory ? new MemoryVolumeStore(blockSize: BlockSize)
            : Settings.StoreKind == "sparse" ? new SparseFileVolumeStore(Settings.DataDirectory, BlockSize, directIo: true)
            : OpenGftl();
        // In a cluster the volumes are the cluster's (etcd); the embedded default is a lone node's.
        var wanted = Settings.IsClustered ? [] : Settings.Volumes.Count > 0 ? Settings.Volumes
            : store.List().Count == 0 ? [new VolumeSpec("default", Settings.DefaultVolumeBytes)] : [];
        foreach (var spec in wanted)
        {
            bool exists = false;
            foreach (var d in store.List()) exists |= d.Name == spec.Name;
            if (exists) continue;
            var created = store.Create(spec.Name, spec.SizeBytes);
            _logger.LogInformation("created volume {Name} {Id} ({Bytes} bytes)", created.Name, created.Id, created.SizeBytes);
        }
        return store;
    }

    /// <summary>
    /// The GFTL over the configured devices, or over one sparse file in the data directory (thin: twice the default
    /// volume, at least 1 GiB). One partition per reactor shard, so a chunk's map entries belong to its owning shard.
    /// </summary>
    private GftlStore OpenGftl()
    {
        IReadOnlyList<GftlDeviceSpec> devices = Settings.Devices.Count > 0 ? Settings.Devices
            : [new GftlDeviceSpec(Path.Combine(Settings.DataDirectory, "gftl-device0.img"), Math.Max(1L << 30, 2 * Settings.DefaultVolumeBytes), Thin: true)];
        return new GftlStore(new GftlOptions
        {
            DataDirectory = Settings.DataDirectory,
            Devices = devices,
            NodeIndex = Settings.NodeIndex,
            ShardCount = _shards!.Count,
            Log = message => _logger.LogInformation("{Message}", message),
            Progress = progress => StoreRecovery = progress,
        });
    }

    private void StartListeners()
    {
        bool wildcard = Settings.Listen.Address.Equals(IPAddress.Any) || Settings.Listen.Address.Equals(IPAddress.IPv6Any);
        if (Settings.AdvertiseAddress is null && wildcard)
            throw new UsageException("listening on a wildcard address needs --advertise ADDR: hosts connect to the address in the discovery log");
        Target.AddListener(new ListenerInfo(Settings.AdvertisedAddress, Port(Settings.Listen), IoPortId(Settings.NodeIndex), IsDiscovery: false));
        Target.AddListener(new ListenerInfo(Settings.DiscoveryAdvertisedAddress, Port(Settings.Discovery), DiscoveryPortId, IsDiscovery: true));
        _transport = new ReactorTransport(Target, _shards!, _volumeTable, _logger);
        _transport.Start([new TransportEndpoint(Settings.Listen, false), new TransportEndpoint(Settings.Discovery, true)]);
    }

    private static string Port(IPEndPoint endPoint) => endPoint.Port.ToString(CultureInfo.InvariantCulture);
}
