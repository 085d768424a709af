using System.Net;

namespace Duroslight.Server.Cli;

/// <summary>Everything `duroslight serve` needs; defaults are the embedded demo's.</summary>
public sealed record ServeSettings
{
    public IPEndPoint Listen { get; init; } = IPEndPoint.Parse("127.0.0.1:4420");
    public IPEndPoint Discovery { get; init; } = IPEndPoint.Parse("127.0.0.1:8009");
    /// <summary>Metrics endpoint, or null to disable.</summary>
    public IPEndPoint? Metrics { get; init; } = IPEndPoint.Parse("127.0.0.1:9180");
    /// <summary>The address written into discovery log entries (traddr); defaults to the listen address.</summary>
    public string? AdvertiseAddress { get; init; }
    public string DataDirectory { get; init; } = "./duroslight-data";
    public string SubsystemNqn { get; init; } = Protocol.Subsystems.TargetOptions.DefaultSubsystemNqn;
    public int AuxSubsystemCount { get; init; } = 4;
    public int NodeIndex { get; init; }
    /// <summary>Allowed host NQNs; empty means any host may connect.</summary>
    public IReadOnlyList<string> AllowedHosts { get; init; } = [];
    /// <summary>Size of the volume created when the data directory holds none.</summary>
    public long DefaultVolumeBytes { get; init; } = 1L << 30;
    public bool InMemory { get; init; }
    /// <summary>CPUs for the reactor's shards, one pinned shard each; empty: every CPU the process may use.</summary>
    public IReadOnlyList<int> Cores { get; init; } = [];
    /// <summary>
    /// Sleep by default: a busy-polling shard holds its core at 100% even when idle, which is right on dedicated
    /// storage cores (pass --poll busy) but wrong on a shared or small machine, where it starves the initiator.
    /// </summary>
    public Reactor.PollMode Poll { get; init; } = Reactor.PollMode.Sleep;
    public Microsoft.Extensions.Logging.LogLevel LogLevel { get; init; } = Microsoft.Extensions.Logging.LogLevel.Information;
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(30);

    public string AdvertisedAddress => AdvertiseAddress ?? Listen.Address.ToString();
}
