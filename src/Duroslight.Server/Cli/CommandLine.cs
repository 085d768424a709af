using System.Globalization;
using System.Net;
using Microsoft.Extensions.Logging;

namespace Duroslight.Server.Cli;

/// <summary>A command-line or config mistake, reported to the operator as one clear line.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>Parses `duroslight serve` flags on top of the config file (flags win), and the value syntaxes both share.</summary>
public static class CommandLine
{
    /// <summary>`serve --help`, from the option table.</summary>
    public static string Usage => ServeOptions.Usage();

    /// <summary>
    /// Flags from <see cref="ServeOptions"/> over the config file's settings. A repeatable flag's values replace the
    /// file's list as a whole.
    /// </summary>
    public static ServeSettings ParseServe(IReadOnlyList<string> args)
    {
        var settings = ConfigFile.Find(args) is { } path ? ConfigFile.Load(path) : new ServeSettings();
        var lists = new Dictionary<ServeOption, List<string>>();
        for (int i = 0; i < args.Count; i++)
        {
            string flag = args[i];
            var option = ServeOptions.ByFlag(flag) ?? throw new UsageException($"unknown option '{flag}'");
            if (option.IsSwitch)
            {
                settings = option.Apply!(settings, flag, "true");
                continue;
            }
            string value = i + 1 < args.Count ? args[++i] : throw new UsageException($"{flag} needs a value");
            if (option.ApplyList is not null)
            {
                if (!lists.TryGetValue(option, out var values)) lists[option] = values = [];
                values.Add(value);
            }
            else
            {
                settings = option.Apply!(settings, flag, value);
            }
        }
        foreach (var (option, values) in lists) settings = option.ApplyList!(settings, option.Flag!, values);
        if (settings.Api.Listen is not null && (settings.Api.Certificate is null || settings.Api.Tokens is null))
            throw new UsageException("--api-listen needs --api-certificate and --api-tokens (HTTPS with bearer tokens only)");
        return settings;
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

    /// <summary>An etcd client URL: http://HOST:PORT (TLS is not configured yet, so https is refused rather than half-done).</summary>
    public static string ParseEtcdUrl(string what, string text) =>
        Uri.TryCreate(text, UriKind.Absolute, out var uri) && uri.Scheme == "http" && uri.Port > 0 && uri.AbsolutePath == "/"
            ? $"http://{uri.Authority}"
            : throw new UsageException($"{what}: '{text}' is not an etcd client URL http://HOST:PORT");

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
