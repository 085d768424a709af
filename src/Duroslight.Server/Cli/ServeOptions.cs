using System.Text;
using YamlDotNet.RepresentationModel;
using static Duroslight.Server.Cli.CommandLine;

namespace Duroslight.Server.Cli;

/// <summary>
/// One setting of `duroslight serve`: its config key and/or flag, its help line and default, and how a value is
/// applied. <see cref="Apply"/> takes one value (a flag's argument or the key's scalar); <c>what</c> is the flag or
/// key to name in errors.
/// </summary>
public sealed record ServeOption(string? Key, string? Flag, string? Value, string Default, string Help)
{
    public Func<ServeSettings, string, string, ServeSettings>? Apply { get; init; }

    /// <summary>A repeatable flag and a list key: every value at once (the flags replace the config's list).</summary>
    public Func<ServeSettings, string, IReadOnlyList<string>, ServeSettings>? ApplyList { get; init; }

    /// <summary>A key whose value may be a mapping or a list of mappings (the config file only).</summary>
    internal Func<ServeSettings, string, YamlNode, ServeSettings>? ApplyYaml { get; init; }

    /// <summary>A flag without a value: it applies "true".</summary>
    public bool IsSwitch { get; init; }
}

/// <summary>
/// The one table of `serve` settings: the flag parser (<see cref="CommandLine"/>), the config reader
/// (<see cref="ConfigFile"/>) and --help all read it; README's "Configuration" table is checked against it by a test.
/// </summary>
public static class ServeOptions
{
    public static readonly IReadOnlyList<ServeOption> All =
    [
        new(null, "--config", "FILE", "", "YAML config file (flags override it)") { Apply = (s, _, _) => s },
        new("node_index", "--node-index", "N", "0", "node index in the cluster 0..31: picks the node's controller-ID range")
            { Apply = (s, w, v) => s with { NodeIndex = ParseInt(w, v, 0, 31) } },
        new("cluster", "--cluster", "NAME", "duroslight", "cluster name; config: NAME or {name, etcd: [URL...], lease_ttl_s}")
        {
            Apply = (s, _, v) => s with { ClusterId = v },
            ApplyYaml = (s, key, node) => ConfigFile.Cluster(s, node, key),
        },
        new(null, "--etcd", "URL", "none (the node runs alone)", "etcd client URL holding the cluster state (repeatable; config: cluster.etcd)")
            { ApplyList = (s, w, list) => s with { EtcdEndpoints = [.. list.Select(u => ParseEtcdUrl(w, u))] } },
        new(null, "--lease-ttl", "SECONDS", "6", "the node's etcd lease: it is shown down this long after it dies (config: cluster.lease_ttl_s)")
            { Apply = (s, w, v) => s with { LeaseTtlSeconds = ParseInt(w, v, 2, 600) } },
        new(null, "--rebuild-rate", "MIB_S", "64", "a primary's copy rate per replica rebuild, MiB/s, 0 unlimited (config: cluster.rebuild_mib_s)")
            { Apply = (s, w, v) => s with { RebuildMiBPerSecond = ParseInt(w, v, 0, 1_000_000) } },
        new("nqn", "--nqn", "NQN", "nqn.2026-11.io.duroslight:default", "default subsystem NQN; aux ones are <nqn>:aux-N")
            { Apply = (s, _, v) => s with { SubsystemNqn = v } },
        new("aux_count", "--aux-count", "N", "4", "auxiliary subsystems 0..4") { Apply = (s, w, v) => s with { AuxSubsystemCount = ParseInt(w, v, 0, 4) } },
        new("listen", "--listen", "ADDR:PORT", "127.0.0.1:4420", "NVMe/TCP I/O listener")
        {
            Apply = (s, w, v) => s with { Listen = ParseEndPoint(w, v) },
            ApplyYaml = (s, key, node) => ConfigFile.Listener(node, key, out string? adv) is var ep
                ? s with { Listen = ep, AdvertiseAddress = adv ?? s.AdvertiseAddress } : s,
        },
        new("discovery", "--discovery", "ADDR:PORT", "127.0.0.1:8009", "discovery listener")
        {
            Apply = (s, w, v) => s with { Discovery = ParseEndPoint(w, v) },
            ApplyYaml = (s, key, node) => ConfigFile.Listener(node, key, out string? adv) is var ep
                ? s with { Discovery = ep, DiscoveryAdvertiseAddress = adv ?? s.DiscoveryAdvertiseAddress } : s,
        },
        new("advertise", "--advertise", "ADDR", "the listen address", "traddr of the I/O listener in discovery log entries; required on 0.0.0.0 / behind NAT")
            { Apply = (s, _, v) => s with { AdvertiseAddress = v } },
        new(null, "--discovery-advertise", "ADDR", "--advertise", "traddr of the discovery listener (config: discovery.advertise)")
            { Apply = (s, _, v) => s with { DiscoveryAdvertiseAddress = v } },
        new("metrics", "--metrics", "ADDR:PORT|off", "127.0.0.1:9180", "Prometheus /metrics endpoint, or off")
            { Apply = (s, w, v) => s with { Metrics = v is "off" ? null : ParseEndPoint(w, v) } },
        new("api", "--api-listen", "ADDR:PORT|off", "off", "control API over HTTPS with bearer tokens (config: api: {listen, certificate, tokens})")
        {
            Apply = (s, w, v) => s with { Api = s.Api with { Listen = v is "off" ? null : ParseEndPoint(w, v) } },
            ApplyYaml = (s, key, node) => s with { Api = ConfigFile.Api(node, key) },
        },
        new(null, "--api-certificate", "FILE", "", "the API's TLS certificate: PEM with certificate and key, or .pfx/.p12 (config: api.certificate)")
            { Apply = (s, _, v) => s with { Api = s.Api with { Certificate = v } } },
        new(null, "--api-tokens", "FILE", "", "the API's bearer tokens, one per line, mode 0600 (config: api.tokens)")
            { Apply = (s, _, v) => s with { Api = s.Api with { Tokens = v } } },
        new("data_dir", "--data-dir", "DIR", "./duroslight-data", "data directory") { Apply = (s, _, v) => s with { DataDirectory = v } },
        new("control_socket", "--control-socket", "PATH", "DATA_DIR/control.sock", "control API Unix socket (mode 0600)")
            { Apply = (s, _, v) => s with { ControlSocket = v } },
        new("cores", "--cores", "LIST", "every allowed CPU", "CPUs to run shards on, one pinned shard each, e.g. 0-3,6")
            { Apply = (s, w, v) => s with { Cores = ParseCpuList(w, v) } },
        new("poll_mode", "--poll", "MODE", "sleep", "sleep|busy: how an idle shard waits (busy for dedicated cores)")
            { Apply = (s, w, v) => s with { Poll = ParsePollMode(w, v) } },
        new("store", "--store", "KIND", "gftl", "gftl | sparse | memory") { Apply = (s, w, v) => ParseStore(s, w, v) },
        new("devices", "--device", "PATH[:SIZE]", "DATA_DIR/gftl-device0.img", "a GFTL device, in set order (repeatable; a missing file is created with SIZE)")
            { ApplyList = (s, w, list) => s with { Devices = [.. list.Select(d => ParseDevice(w, d))] } },
        new("volumes", null, null, "none", "[{name, size}] created at start when missing")
            { ApplyYaml = (s, key, node) => s with { Volumes = ConfigFile.VolumeSpecs(node, key) } },
        new("volume_size", "--volume-size", "SIZE", "1G", "size of the volume created when the store is empty and no volumes are set")
            { Apply = (s, w, v) => s with { DefaultVolumeBytes = ParseSize(w, v) } },
        new("allowed_hosts", "--allow-host", "NQN", "any host", "host NQNs allowed on every subsystem (repeatable)")
            { ApplyList = (s, _, list) => s with { AllowedHosts = [.. list] } },
        new("hosts", null, null, "allowed_hosts", "per subsystem: {default: [NQN...], aux-1: [...]} (after aux_count)")
            { ApplyYaml = (s, key, node) => s with { SubsystemHosts = ConfigFile.HostLists(node, key, s.AuxSubsystemCount) } },
        new("max_controllers_per_pool", "--max-controllers", "N", "2030", "controllers per subsystem pool 1..2030")
            { Apply = (s, w, v) => s with { MaxControllersPerPool = ParseInt(w, v, 1, 2030) } },
        new("max_ctrl_io_queues", "--max-ctrl-io-queues", "N", "32", "I/O queues per controller (32 or 64 for many connections)")
            { Apply = (s, w, v) => s with { MaxCtrlIoQueues = ParseInt(w, v, 1, 65534) } },
        new("host_data_timeout_ms", "--host-data-timeout", "MS", "15000", "close a connection that owes data (R2T'd writes, a started PDU) and sends none this long; 0 off")
            { Apply = (s, w, v) => s with { HostDataTimeoutMs = ParseInt(w, v, 0, 3_600_000) } },
        new("command_timeout_ms", "--command-timeout", "MS", "20000", "answer a command storage holds this long (a stalled device) with Command Interrupted; 0 off")
            { Apply = (s, w, v) => s with { StorageTimeoutMs = ParseInt(w, v, 0, 3_600_000) } },
        new("device_error_threshold", "--device-error-threshold", "N", "32", "take a device (and its volumes) out of service after N I/O errors within device_error_window_ms; 0 never")
            { Apply = (s, w, v) => s with { DeviceHealth = s.DeviceHealth with { ErrorThreshold = ParseInt(w, v, 0, 1_000_000) } } },
        new("device_error_window_ms", "--device-error-window", "MS", "60000", "the window device_error_threshold counts errors in")
            { Apply = (s, w, v) => s with { DeviceHealth = s.DeviceHealth with { ErrorWindowMs = ParseInt(w, v, 1, 86_400_000) } } },
        new("device_stall_ms", "--device-stall", "MS", "60000", "take a device out of service when I/O is outstanding and none completes this long; 0 off")
            { Apply = (s, w, v) => s with { DeviceHealth = s.DeviceHealth with { StallTimeoutMs = ParseInt(w, v, 0, 86_400_000) } } },
        new("host_data_budget", "--host-data-budget", "SIZE", "256M", "per shard: write buffers hosts may owe R2T'd data for at once; later writes wait")
            {
                Apply = (s, w, v) => ParseSize(w, v) is var bytes && bytes >= 1 << 20
                    ? s with { HostDataBudgetPerShard = bytes }
                    : throw new UsageException($"{w}: '{v}' is below 1M, the largest write (MDTS) a host may send"),
            },
        new("in_capsule_data", "--in-capsule-data", "SIZE", "8K", "write data a host may send inside the command capsule (IOCCSZ); larger writes are fetched with R2Ts")
            {
                Apply = (s, w, v) => ParseSize(w, v) is var bytes && bytes <= 1 << 20
                    ? s with { MaxInCapsuleData = (int)bytes }
                    : throw new UsageException($"{w}: '{v}' is above 1M"),
            },
        new("keep_alive", null, null, "{discovery_default_ms: 120000}", "KATO given to a discovery controller that connects with KATO 0")
            { ApplyYaml = (s, key, node) => s with { DiscoveryKatoMs = ConfigFile.KeepAlive(node, key) } },
        new("referrals", "--referral", "ADDR:PORT", "none", "another node's discovery service (repeatable)")
            { ApplyList = (s, w, list) => s with { Referrals = [.. list.Select(r => ParseEndPoint(w, r))] } },
        new("drain_timeout_s", null, null, "30", "graceful-shutdown limit for in-flight commands")
            { Apply = (s, w, v) => s with { DrainTimeout = TimeSpan.FromSeconds(ParseInt(w, v, 1, 3600)) } },
        new("memory", "--memory", null, "false", "in-memory volumes (tests, benchmarks); nothing persists")
            { Apply = (s, _, v) => s with { InMemory = v is "true" or "yes" }, IsSwitch = true },
        new("log_level", "--log-level", "LEVEL", "information", "trace|debug|information|warning|error")
            { Apply = (s, _, v) => s with { LogLevel = ParseLevel(v) } },
    ];

    public static ServeOption? ByFlag(string flag)
    {
        foreach (var o in All) if (o.Flag == flag) return o;
        return null;
    }

    public static ServeOption? ByKey(string key)
    {
        foreach (var o in All) if (o.Key == key) return o;
        return null;
    }

    /// <summary>`duroslight serve --help`: every flag with its value, help and default.</summary>
    public static string Usage()
    {
        var text = new StringBuilder("usage: duroslight serve [options]\n");
        foreach (var o in All)
        {
            if (o.Flag is null) continue;
            string left = o.Value is null ? o.Flag : $"{o.Flag} {o.Value}";
            text.Append("  ").Append(left.PadRight(28)).Append(o.Help);
            if (o.Default.Length > 0) text.Append(" (default ").Append(o.Default).Append(')');
            text.Append('\n');
        }
        return text.Append("  config-file keys without a flag: ")
            .AppendJoin(", ", All.Where(o => o.Flag is null).Select(o => o.Key)).Append('\n').ToString();
    }
}
