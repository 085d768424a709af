using System.Globalization;
using System.Net;
using Duroslight.Protocol.Subsystems;
using Duroslight.Reactor;
using Duroslight.Server.Cli;
using Duroslight.Server.Execution;
using Duroslight.Server.Metrics;
using Duroslight.Server.Transport;
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
    private ShardGroup? _shards;
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

    /// <summary>The reactor's shards (null until started).</summary>
    public ShardGroup? Shards => _shards;

    public void Start()
    {
        StartShards();
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
        _shards?.Dispose();
        _store?.Dispose();
        Enter(NodeState.Stopped);
    }

    public async ValueTask DisposeAsync() => await StopAsync().ConfigureAwait(false);

    private void Enter(NodeState state)
    {
        _state = state;
        _logger.LogInformation("state {State}", state);
    }

    /// <summary>First, so a machine where io_uring cannot run is refused before anything else happens.</summary>
    private void StartShards()
    {
        _shards = new ShardGroup(_settings.Cores, _settings.Poll);
        foreach (string warning in ShardGroup.CheckLimits(expectedConnections: 4096)) _logger.LogWarning("{Warning}", warning);
        _shards.Start();
        _logger.LogInformation("reactor: {Count} shards ({Mode} polling), io_uring setup flags 0x{Flags:x}",
            _shards.Count, _settings.Poll, _shards[0].RingFlags);
    }

    private IVolumeStore OpenStore()
    {
        IVolumeStore store = _settings.InMemory
            ? new MemoryVolumeStore(blockSize: BlockSize)
            : new SparseFileVolumeStore(_settings.DataDirectory, BlockSize, directIo: true);
        if (store.List().Count == 0)
        {
            var created = store.Create("default", _settings.DefaultVolumeBytes);
            _logger.LogInformation("created volume {Name} {Id} ({Bytes} bytes)", created.Name, created.Id, created.SizeBytes);
        }
        return store;
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
            if (volume is SparseFileVolume { DirectIo: false })
                _logger.LogWarning("volume {Name}: the filesystem refused O_DIRECT; I/O goes through the page cache", d.Name);
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
        _transport = new ReactorTransport(Target, _shards!, _executor, _logger);
        _transport.Start([new TransportEndpoint(_settings.Listen, false), new TransportEndpoint(_settings.Discovery, true)]);
    }

    private static string Port(IPEndPoint endPoint) => endPoint.Port.ToString(CultureInfo.InvariantCulture);
}
