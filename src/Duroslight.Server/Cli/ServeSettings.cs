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
    /// <summary>gftl (default), sparse (one sparse file per volume) or memory.</summary>
    public string StoreKind { get; init; } = "gftl";
    /// <summary>GFTL devices in set order; none means one sparse file in the data directory.</summary>
    public IReadOnlyList<Storage.Gftl.GftlDeviceSpec> Devices { get; init; } = [];
    public Microsoft.Extensions.Logging.LogLevel LogLevel { get; init; } = Microsoft.Extensions.Logging.LogLevel.Information;
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(30);

    public string AdvertisedAddress => AdvertiseAddress ?? Listen.Address.ToString();
}
