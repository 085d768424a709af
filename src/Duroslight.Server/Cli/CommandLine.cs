using System.Globalization;
using System.Net;
using Microsoft.Extensions.Logging;

namespace Duroslight.Server.Cli;

/// <summary>A command-line or config mistake, reported to the operator as one clear line.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>Parses `duroslight serve` flags on top of the settings from the config file (flags win).</summary>
public static class CommandLine
{
    public const string Usage = """
        usage: duroslight serve [options]
          --config FILE         YAML config file (flags override it)
          --listen ADDR:PORT    NVMe/TCP I/O listener            (default 127.0.0.1:4420)
          --discovery ADDR:PORT discovery listener               (default 127.0.0.1:8009)
          --metrics ADDR:PORT   Prometheus /metrics, or 'off'    (default 127.0.0.1:9180)
          --advertise ADDR      traddr of the I/O listener in discovery log entries (default: the listen address)
          --discovery-advertise ADDR  traddr of the discovery listener (default: --advertise)
          --control-socket PATH control API Unix socket          (default DATA_DIR/control.sock)
          --cluster NAME        cluster identity                 (default duroslight)
          --max-controllers N   controllers per subsystem pool 1..2030 (default 2030)
          --max-ctrl-io-queues N  I/O queues per controller     (default 32)
          --referral ADDR:PORT  referral to another node's discovery service (repeatable)
          --data-dir DIR        data directory                   (default ./duroslight-data)
          --nqn NQN             default subsystem NQN            (default nqn.2026-11.io.duroslight:default)
          --aux-count N         auxiliary subsystems 0..4        (default 4)
          --node-index N        node index in the cluster 0..31  (default 0)
          --allow-host NQN      allow only these hosts (repeatable; default: any host)
          --volume-size SIZE    size of the volume created in an empty data dir (default 1G)
          --memory              keep volumes in memory (tests, benchmarks); nothing persists
          --cores LIST          CPUs to run shards on, one pinned shard each, e.g. 0-3,6 (default: every allowed CPU)
          --poll MODE           sleep|busy: how an idle shard waits   (default sleep)
          --store KIND          gftl | sparse | memory           (default gftl)
          --device PATH[:SIZE]  a GFTL device, in set order (repeatable; a missing file is created with SIZE;
                                default: one sparse file in the data dir)
          --log-level LEVEL     trace|debug|information|warning|error (default information)
        """;

    public static ServeSettings ParseServe(IReadOnlyList<string> args)
    {
        var settings = ConfigFile.Find(args) is { } path ? ConfigFile.Load(path) : new ServeSettings();
        var allowed = new List<string>();
        var referrals = new List<IPEndPoint>();
        var devices = new List<Storage.Gftl.GftlDeviceSpec>();
        for (int i = 0; i < args.Count; i++)
        {
            string flag = args[i];
            string Next() => i + 1 < args.Count ? args[++i] : throw new UsageException($"{flag} needs a value");
            settings = flag switch
            {
                "--config" => Skip(settings, Next()),
                "--listen" => settings with { Listen = ParseEndPoint(flag, Next()) },
                "--discovery" => settings with { Discovery = ParseEndPoint(flag, Next()) },
                "--metrics" => settings with { Metrics = Next() is "off" ? null : ParseEndPoint(flag, args[i]) },
                "--advertise" => settings with { AdvertiseAddress = Next() },
                "--discovery-advertise" => settings with { DiscoveryAdvertiseAddress = Next() },
                "--control-socket" => settings with { ControlSocket = Next() },
                "--cluster" => settings with { ClusterId = Next() },
                "--max-controllers" => settings with { MaxControllersPerPool = ParseInt(flag, Next(), 1, 2030) },
                "--max-ctrl-io-queues" => settings with { MaxCtrlIoQueues = ParseInt(flag, Next(), 1, 65534) },
                "--referral" => AddReferral(settings, referrals, ParseEndPoint(flag, Next())),
                "--data-dir" => settings with { DataDirectory = Next() },
                "--nqn" => settings with { SubsystemNqn = Next() },
                "--aux-count" => settings with { AuxSubsystemCount = ParseInt(flag, Next(), 0, 4) },
                "--node-index" => settings with { NodeIndex = ParseInt(flag, Next(), 0, 31) },
                "--allow-host" => AddHost(settings, allowed, Next()),
                "--volume-size" => settings with { DefaultVolumeBytes = ParseSize(flag, Next()) },
                "--memory" => settings with { InMemory = true },
                "--cores" => settings with { Cores = ParseCpuList(flag, Next()) },
                "--poll" => settings with { Poll = ParsePollMode(flag, Next()) },
                "--store" => ParseStore(settings, flag, Next()),
                "--device" => AddDevice(settings, devices, flag, Next()),
                "--log-level" => settings with { LogLevel = ParseLevel(Next()) },
                _ => throw new UsageException($"unknown option '{flag}'"),
            };
        }
        return settings;
    }

    private static ServeSettings Skip(ServeSettings s, string _) => s;

    private static ServeSettings AddHost(ServeSettings s, List<string> allowed, string nqn)
    {
        allowed.Add(nqn);
        return s with { AllowedHosts = [.. allowed] };
    }

    private static ServeSettings AddReferral(ServeSettings s, List<IPEndPoint> referrals, IPEndPoint ep)
    {
        referrals.Add(ep);
        return s with { Referrals = [.. referrals] };
    }

    private static ServeSettings AddDevice(ServeSettings s, List<Storage.Gftl.GftlDeviceSpec> devices, string flag, string text)
    {
        devices.Add(ParseDevice(flag, text));
        return s with { Devices = [.. devices] };
    }

    public static ServeSettings ParseStore(ServeSettings s, string what, string kind) => kind switch
    {
        "gftl" or "sparse" => s with { StoreKind = kind, InMemory = false },
        "memory" => s with { StoreKind = kind, InMemory = true },
        _ => throw new UsageException($"{what}: '{kind}' is not one of gftl, sparse, memory"),
    };

    /// <summary>PATH or PATH:SIZE (the part after the last ':' is a size when it starts with a digit).</summary>
    public static Storage.Gftl.GftlDeviceSpec ParseDevice(string what, string text)
    {
        int colon = text.LastIndexOf(':');
        if (colon > 0 && colon < text.Length - 1 && char.IsAsciiDigit(text[colon + 1]))
            return new(text[..colon], ParseSize(what, text[(colon + 1)..]));
        return text.Length > 0 ? new(text) : throw new UsageException($"{what}: a device path must not be empty");
    }

    public static IPEndPoint ParseEndPoint(string what, string text) =>
        IPEndPoint.TryParse(text, out var ep) && ep.Port != 0
            ? ep
            : throw new UsageException($"{what}: '{text}' is not ADDR:PORT (e.g. 127.0.0.1:4420)");

    public static int ParseInt(string what, string text, int min, int max) =>
        int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) && v >= min && v <= max
            ? v
            : throw new UsageException($"{what}: '{text}' is not an integer in {min}..{max}");

    /// <summary>Bytes with an optional K/M/G/T suffix (powers of 1024); a multiple of 4096.</summary>
    public static long ParseSize(string what, string text)
    {
        string t = text.Trim().ToUpperInvariant().TrimEnd('B', 'I');
        int shift = t.Length > 0 ? t[^1] switch { 'K' => 10, 'M' => 20, 'G' => 30, 'T' => 40, _ => 0 } : 0;
        if (shift > 0) t = t[..^1];
        if (!long.TryParse(t, NumberStyles.Integer, CultureInfo.InvariantCulture, out long v) || v <= 0 || v > long.MaxValue >> shift)
            throw new UsageException($"{what}: '{text}' is not a size (e.g. 1G, 512M, 1073741824)");
        long bytes = v << shift;
        return bytes % 4096 == 0 ? bytes : throw new UsageException($"{what}: {bytes} is not a multiple of 4096");
    }

    /// <summary>A Linux CPU list (as taskset -c): "0", "0-3", "1,3,5-7". Duplicates are refused.</summary>
    public static int[] ParseCpuList(string what, string text)
    {
        var cpus = new List<int>();
        foreach (string part in text.Split(',', StringSplitOptions.TrimEntries))
        {
            string[] bounds = part.Split('-', StringSplitOptions.TrimEntries);
            if (bounds.Length > 2 || !TryCpu(bounds[0], out int first) || !TryCpu(bounds[^1], out int last) || last < first)
                throw new UsageException($"{what}: '{text}' is not a CPU list (e.g. 0-3,6)");
            for (int cpu = first; cpu <= last; cpu++)
            {
                if (cpus.Contains(cpu)) throw new UsageException($"{what}: CPU {cpu} is listed twice");
                cpus.Add(cpu);
            }
        }
        return [.. cpus];
    }

    private static bool TryCpu(string text, out int cpu) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out cpu) && cpu < 1024;

    public static Reactor.PollMode ParsePollMode(string what, string text) => text switch
    {
        "sleep" => Reactor.PollMode.Sleep,
        "busy" => Reactor.PollMode.Busy,
        _ => throw new UsageException($"{what}: '{text}' is not sleep or busy"),
    };

    public static LogLevel ParseLevel(string text) =>
        Enum.TryParse<LogLevel>(text, ignoreCase: true, out var level)
            ? level
            : throw new UsageException($"--log-level: '{text}' is not one of trace, debug, information, warning, error");
}
