using System.Globalization;
using System.Net;
using Duroslight.Protocol.Subsystems;
using Duroslight.Reactor;
using Duroslight.Server.Cli;
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
    private const int BlockSize = 4096;
    private const ushort IoPortId = 1, DiscoveryPortId = 2;

    private readonly ILogger _logger;
    private readonly ILoggerFactory _loggers;
    private readonly VolumeTable _volumeTable;
    private readonly TaskCompletionSource _shutdownRequested = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private IVolumeStore? _store;
    private NodeVolumes? _volumes;
    private ShardGroup? _shards;
    private ITransport? _transport;
    private MetricsServer? _metrics;
    private ControlServer? _control;
    private volatile NodeState _state = NodeState.Inactive;

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
            InitialHostAccess = Access(settings.AllowedHosts),
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

    public void Start()
    {
        if (PowerLossShadowBlockIo.Requested)
        {
            _logger.LogWarning("TEST INSTRUMENTATION: {Variable}=1, every device write is shadowed for a power-loss test; never set it in production", PowerLossShadowBlockIo.EnvironmentVariable);
            BlockIo.WrapAll(static io => new PowerLossShadowBlockIo(io));
        }

        StartShards();
        Enter(NodeState.Gftl);
        _store = OpenStore();
        Enter(NodeState.BuildingTarget);
        _volumes = new NodeVolumes(_store, Target, _volumeTable, _logger);
        _volumes.ExposeAll();
        foreach (var r in Settings.Referrals) Target.AddReferral(new Referral(r.Address.ToString(), Port(r)));
        Enter(NodeState.Activating);
        StartListeners();
        if (Settings.Metrics is { } metricsEndPoint)
        {
            _metrics = new MetricsServer(this, _loggers);
            _metrics.Start(metricsEndPoint);
        }
        _control = new ControlServer(this, _loggers);
        _control.Start(Settings.ControlSocketPath);
        Enter(NodeState.Active);
    }

    /// <summary>Graceful shutdown; idempotent.</summary>
    public async Task StopAsync()
    {
        if (_state is NodeState.Draining or NodeState.Stopped) return;
        Enter(NodeState.Draining);
        if (_transport is not null) await _transport.DrainAsync(Settings.DrainTimeout).ConfigureAwait(false);
        Target.DisconnectAll();
        if (_volumes is not null) await _volumes.FlushAllAsync().ConfigureAwait(false);
        if (_control is not null) await _control.DisposeAsync().ConfigureAwait(false);
        if (_metrics is not null) await _metrics.DisposeAsync().ConfigureAwait(false);
        if (_transport is not null) await _transport.DisposeAsync().ConfigureAwait(false);
        _shards?.Dispose();
        _store?.Dispose();
        Enter(NodeState.Stopped);
    }

    public async ValueTask DisposeAsync() => await StopAsync().ConfigureAwait(false);

    private static HostAccess Access(IReadOnlyList<string> hosts) => hosts.Count == 0 ? HostAccess.AllowAny : HostAccess.Only(hosts);

    private void Enter(NodeState state)
    {
        _state = state;
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
        var wanted = Settings.Volumes.Count > 0 ? Settings.Volumes : store.List().Count == 0 ? [new VolumeSpec("default", Settings.DefaultVolumeBytes)] : [];
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
            : [new GftlDeviceSpec(Path.Combine(Settings.DataDirectory, "gftl-device0.img"), Math.Max(1L << 30, 2 * Settings.DefaultVolumeBytes))];
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
        Target.AddListener(new ListenerInfo(Settings.AdvertisedAddress, Port(Settings.Listen), IoPortId, IsDiscovery: false));
        Target.AddListener(new ListenerInfo(Settings.DiscoveryAdvertisedAddress, Port(Settings.Discovery), DiscoveryPortId, IsDiscovery: true));
        _transport = new ReactorTransport(Target, _shards!, _volumeTable, _logger);
        _transport.Start([new TransportEndpoint(Settings.Listen, false), new TransportEndpoint(Settings.Discovery, true)]);
    }

    private static string Port(IPEndPoint endPoint) => endPoint.Port.ToString(CultureInfo.InvariantCulture);
}
