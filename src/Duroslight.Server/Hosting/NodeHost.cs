using System.Globalization;
using System.Net;
using Duroslight.Protocol.Subsystems;
using Duroslight.Server.Cli;
using Duroslight.Server.Execution;
using Duroslight.Server.Metrics;
using Duroslight.Server.Transport;
using Duroslight.Storage.Gftl;
using Duroslight.Storage.Volumes;
using Microsoft.Extensions.Logging;

namespace Duroslight.Server.Hosting;

/// <summary>
/// One node's process: storage, protocol target, transport and metrics, started in the product's order and
/// stopped gracefully (stop accepting, finish in-flight commands, disconnect hosts, flush, close).
/// </summary>
public sealed class NodeHost : IAsyncDisposable
{
    private const int BlockSize = 4096;
    private const ushort IoPortId = 1, DiscoveryPortId = 2;

    private readonly ServeSettings _settings;
    private readonly ILogger _logger;
    private readonly StorageExecutor _executor = new();
    private IVolumeStore? _store;
    private ITransport? _transport;
    private MetricsServer? _metrics;
    private volatile NodeState _state = NodeState.Inactive;

    public NodeHost(ServeSettings settings, ILoggerFactory loggers)
    {
        _settings = settings;
        _logger = loggers.CreateLogger("duroslight");
        Target = new Target(new TargetOptions
        {
            SubsystemNqn = settings.SubsystemNqn,
            AuxSubsystemCount = settings.AuxSubsystemCount,
            NodeIndex = settings.NodeIndex,
            SerialNumber = $"DSL{settings.NodeIndex:D2}",
            InitialHostAccess = settings.AllowedHosts.Count == 0 ? HostAccess.AllowAny : HostAccess.Only(settings.AllowedHosts),
        });
    }

    public Target Target { get; }
    public NodeState State => _state;
    public int ConnectionCount => _transport?.ConnectionCount ?? 0;
    public IReadOnlyCollection<IBlockVolume> Volumes => _executor.Volumes;

    public void Start()
    {
        Enter(NodeState.Gftl);
        _store = OpenStore();
        Enter(NodeState.Duroslight);
        ExposeVolumes(_store);
        Enter(NodeState.Activating);
        StartListeners();
        if (_settings.Metrics is { } metricsEndPoint)
        {
            _metrics = new MetricsServer(this, _logger);
            _metrics.Start(metricsEndPoint);
        }
        Enter(NodeState.Active);
    }

    /// <summary>Graceful shutdown; idempotent.</summary>
    public async Task StopAsync()
    {
        if (_state is NodeState.Draining or NodeState.Stopped) return;
        Enter(NodeState.Draining);
        if (_transport is not null) await _transport.DrainAsync(_settings.DrainTimeout).ConfigureAwait(false);
        Target.DisconnectAll();
        foreach (var v in _executor.Volumes) await v.FlushAsync().ConfigureAwait(false);
        if (_metrics is not null) await _metrics.DisposeAsync().ConfigureAwait(false);
        if (_transport is not null) await _transport.DisposeAsync().ConfigureAwait(false);
        _store?.Dispose();
        Enter(NodeState.Stopped);
    }

    public async ValueTask DisposeAsync() => await StopAsync().ConfigureAwait(false);

    private void Enter(NodeState state)
    {
        _state = state;
        _logger.LogInformation("state {State}", state);
    }

    /// <summary>The store when it is the GFTL (space, GC and write amplification for metrics); null otherwise.</summary>
    public GftlStore? Gftl => _store as GftlStore;

    /// <summary>Start-up recovery of the GFTL (checkpoint or device scan), readable while it runs; null for other stores.</summary>
    public GftlRecoveryProgress? StoreRecovery { get; private set; }

    private IVolumeStore OpenStore()
    {
        IVolumeStore store = _settings.InMemory ? new MemoryVolumeStore(blockSize: BlockSize)
            : _settings.StoreKind == "sparse" ? new SparseFileVolumeStore(_settings.DataDirectory, BlockSize)
            : OpenGftl();
        if (store.List().Count == 0)
        {
            var created = store.Create("default", _settings.DefaultVolumeBytes);
            _logger.LogInformation("created volume {Name} {Id} ({Bytes} bytes)", created.Name, created.Id, created.SizeBytes);
        }
        return store;
    }

    /// <summary>
    /// The GFTL over the configured devices, or over one sparse file in the data directory (thin: twice the default
    /// volume, at least 1 GiB). One partition until the reactor passes its shard count.
    /// </summary>
    private GftlStore OpenGftl()
    {
        IReadOnlyList<GftlDeviceSpec> devices = _settings.Devices.Count > 0 ? _settings.Devices
            : [new GftlDeviceSpec(Path.Combine(_settings.DataDirectory, "gftl-device0.img"), Math.Max(1L << 30, 2 * _settings.DefaultVolumeBytes))];
        return new GftlStore(new GftlOptions
        {
            DataDirectory = _settings.DataDirectory,
            Devices = devices,
            NodeIndex = _settings.NodeIndex,
            Log = message => _logger.LogInformation("{Message}", message),
            Progress = progress => StoreRecovery = progress,
        });
    }

    /// <summary>Every volume becomes a namespace (NSID in catalog order) of the default and aux subsystems.</summary>
    private void ExposeVolumes(IVolumeStore store)
    {
        var volumes = new List<IBlockVolume>();
        uint nsid = 1;
        foreach (var d in store.List())
        {
            var volume = store.Open(d.Id);
            volumes.Add(volume);
            Target.AddNamespace(new NamespaceInfo(nsid, d.Id, d.SizeBytes / d.BlockSize, d.BlockSize)
            {
                AllocatedBlocks = () => volume.AllocatedBytes / volume.BlockSize,
            });
            _logger.LogInformation("namespace {Nsid} = volume {Name} {Id}", nsid, d.Name, d.Id);
            nsid++;
        }
        _executor.SetVolumes(volumes);
    }

    private void StartListeners()
    {
        bool wildcard = _settings.Listen.Address.Equals(IPAddress.Any) || _settings.Listen.Address.Equals(IPAddress.IPv6Any);
        if (_settings.AdvertiseAddress is null && wildcard)
            throw new UsageException("listening on a wildcard address needs --advertise ADDR: hosts connect to the address in the discovery log");
        string advertised = _settings.AdvertisedAddress;
        Target.AddListener(new ListenerInfo(advertised, Port(_settings.Listen), IoPortId, IsDiscovery: false));
        Target.AddListener(new ListenerInfo(advertised, Port(_settings.Discovery), DiscoveryPortId, IsDiscovery: true));
        _transport = new SocketTransport(Target, _executor, _logger);
        _transport.Start([new TransportEndpoint(_settings.Listen, false), new TransportEndpoint(_settings.Discovery, true)]);
    }

    private static string Port(IPEndPoint endPoint) => endPoint.Port.ToString(CultureInfo.InvariantCulture);
}
