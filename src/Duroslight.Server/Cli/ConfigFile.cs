using System.Net;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Duroslight.Server.Cli;

/// <summary>
/// The YAML config file: the keys of <see cref="ServeOptions"/> (README "Configuration" lists them). Keys are snake_case; a
/// listener is "ADDR:PORT" or a mapping {address, advertise}. Every error names the file, line and key.
/// </summary>
public static class ConfigFile
{
    /// <summary>An error at one node of the file; formatted as "file:line: key 'k': message".</summary>
    private sealed class KeyError(YamlNode node, string key, string message) : Exception(message)
    {
        public long Line => node.Start.Line;
        public string Key => key;
    }

    public static string? Find(IReadOnlyList<string> args)
    {
        for (int i = 0; i < args.Count - 1; i++) if (args[i] == "--config") return args[i + 1];
        return null;
    }

    public static ServeSettings Load(string path)
    {
        if (!File.Exists(path)) throw new UsageException($"--config: file '{path}' does not exist");
        var yaml = new YamlStream();
        try
        {
            using var reader = new StreamReader(path);
            yaml.Load(reader);
        }
        catch (YamlException e)
        {
            throw new UsageException($"{path}:{e.Start.Line}: {e.Message}");
        }
        if (yaml.Documents.Count == 0) return new ServeSettings();
        if (yaml.Documents[0].RootNode is not YamlMappingNode root)
            throw new UsageException($"{path}:{yaml.Documents[0].RootNode.Start.Line}: the config must be a mapping of key: value");
        var settings = new ServeSettings();
        foreach (var (keyNode, valueNode) in root.Children)
        {
            string key = ((YamlScalarNode)keyNode).Value ?? "";
            try
            {
                settings = Apply(settings, key, valueNode);
            }
            catch (UsageException e)
            {
                throw new UsageException($"{path}:{keyNode.Start.Line}: key '{key}': {e.Message}");
            }
            catch (KeyError e)
            {
                throw new UsageException($"{path}:{e.Line}: key '{e.Key}': {e.Message}");
            }
        }
        return settings;
    }

    /// <summary>One key, as <see cref="ServeOptions"/> says: a mapping/list parser, a list of values, or one value.</summary>
    private static ServeSettings Apply(ServeSettings s, string key, YamlNode node)
    {
        var option = ServeOptions.ByKey(key) ?? throw new UsageException("unknown key");
        if (option.ApplyYaml is not null) return option.ApplyYaml(s, key, node);
        if (option.ApplyList is not null) return option.ApplyList(s, key, Sequence(node));
        return option.Apply!(s, key, Scalar(node));
    }

    /// <summary>"ADDR:PORT" or {address: ADDR:PORT, advertise: ADDR}.</summary>
    internal static IPEndPoint Listener(YamlNode node, string key, out string? advertise)
    {
        advertise = null;
        if (node is YamlScalarNode) return CommandLine.ParseEndPoint(key, Scalar(node));
        IPEndPoint? ep = null;
        foreach (var (k, v) in Mapping(node, key))
        {
            string sub = $"{key}.{k}";
            switch (k)
            {
                case "address": ep = At(v, sub, () => CommandLine.ParseEndPoint(sub, Scalar(v))); break;
                case "advertise": advertise = At(v, sub, () => Scalar(v)); break;
                default: throw new KeyError(v, sub, "unknown key (address, advertise)");
            }
        }
        return ep ?? throw new KeyError(node, key, "needs 'address: ADDR:PORT'");
    }

    /// <summary>{default: [nqn...], aux-1: [...]}: host lists per subsystem.</summary>
    internal static Dictionary<int, IReadOnlyList<string>> HostLists(YamlNode node, string key, int auxCount)
    {
        var lists = new Dictionary<int, IReadOnlyList<string>>();
        foreach (var (k, v) in Mapping(node, key))
        {
            string sub = $"{key}.{k}";
            int pool = k == "default" ? 0
                : k.StartsWith("aux-", StringComparison.Ordinal) && int.TryParse(k.AsSpan(4), out int n) && n >= 1 && n <= 4 ? n
                : throw new KeyError(v, sub, "subsystem must be 'default' or 'aux-1'..'aux-4'");
            if (pool > auxCount) throw new KeyError(v, sub, $"aux_count is {auxCount} (set aux_count before hosts)");
            lists[pool] = At(v, sub, () => Sequence(v));
        }
        return lists;
    }

    /// <summary>{listen: ADDR:PORT, certificate: FILE, tokens: FILE}: the remote API, all three or none.</summary>
    internal static ApiSettings Api(YamlNode node, string key)
    {
        var api = new ApiSettings();
        foreach (var (k, v) in Mapping(node, key))
        {
            string sub = $"{key}.{k}";
            api = k switch
            {
                "listen" => api with { Listen = At(v, sub, () => CommandLine.ParseEndPoint(sub, Scalar(v))) },
                "certificate" => api with { Certificate = At(v, sub, () => Scalar(v)) },
                "tokens" => api with { Tokens = At(v, sub, () => Scalar(v)) },
                _ => throw new KeyError(v, sub, "unknown key (listen, certificate, tokens)"),
            };
        }
        if (api.Listen is not null && (api.Certificate is null || api.Tokens is null))
            throw new KeyError(node, key, "api.listen needs api.certificate and api.tokens (HTTPS with bearer tokens only)");
        return api;
    }

    internal static List<VolumeSpec> VolumeSpecs(YamlNode node, string key)
    {
        if (node is not YamlSequenceNode seq) throw new UsageException("expected a list of {name, size}");
        var specs = new List<VolumeSpec>();
        foreach (var item in seq.Children)
        {
            string? name = null;
            long size = 0;
            foreach (var (k, v) in Mapping(item, key))
            {
                string sub = $"{key}.{k}";
                switch (k)
                {
                    case "name": name = At(v, sub, () => Scalar(v)); break;
                    case "size": size = At(v, sub, () => CommandLine.ParseSize(sub, Scalar(v))); break;
                    default: throw new KeyError(v, sub, "unknown key (name, size)");
                }
            }
            if (string.IsNullOrEmpty(name) || size == 0) throw new KeyError(item, key, "each volume needs a name and a size");
            specs.Add(new VolumeSpec(name, size));
        }
        return specs;
    }

    /// <summary>"NAME" or {name, etcd: [URL...], lease_ttl_s, rebuild_mib_s}.</summary>
    internal static ServeSettings Cluster(ServeSettings s, YamlNode node, string key)
    {
        if (node is YamlScalarNode) return s with { ClusterId = Scalar(node) };
        foreach (var (k, v) in Mapping(node, key))
        {
            string sub = $"{key}.{k}";
            s = k switch
            {
                "name" => s with { ClusterId = At(v, sub, () => Scalar(v)) },
                "etcd" => s with { EtcdEndpoints = At(v, sub, () => Array.ConvertAll(Sequence(v), u => CommandLine.ParseEtcdUrl(sub, u))) },
                "lease_ttl_s" => s with { LeaseTtlSeconds = At(v, sub, () => CommandLine.ParseInt(sub, Scalar(v), 2, 600)) },
                "rebuild_mib_s" => s with { RebuildMiBPerSecond = At(v, sub, () => CommandLine.ParseInt(sub, Scalar(v), 0, 1_000_000)) },
                _ => throw new KeyError(v, sub, "unknown key (name, etcd, lease_ttl_s, rebuild_mib_s)"),
            };
        }
        return s;
    }

    internal static int KeepAlive(YamlNode node, string key)
    {
        int discoveryKatoMs = 120_000;
        foreach (var (k, v) in Mapping(node, key))
        {
            string sub = $"{key}.{k}";
            discoveryKatoMs = k == "discovery_default_ms"
                ? At(v, sub, () => CommandLine.ParseInt(sub, Scalar(v), 1000, 3_600_000))
                : throw new KeyError(v, sub, "unknown key (discovery_default_ms)");
        }
        return discoveryKatoMs;
    }

    private static IEnumerable<(string Key, YamlNode Value)> Mapping(YamlNode node, string key)
    {
        if (node is not YamlMappingNode map) throw new KeyError(node, key, "expected a mapping of key: value");
        foreach (var (k, v) in map.Children) yield return (((YamlScalarNode)k).Value ?? "", v);
    }

    /// <summary>Runs a nested parse, attributing its usage errors to the nested node's line and key.</summary>
    private static T At<T>(YamlNode node, string key, Func<T> parse)
    {
        try
        {
            return parse();
        }
        catch (UsageException e)
        {
            throw new KeyError(node, key, e.Message);
        }
    }

    private static string Scalar(YamlNode node) =>
        node is YamlScalarNode { Value: { } v } ? v : throw new UsageException("expected a single value");

    private static string[] Sequence(YamlNode node)
    {
        if (node is not YamlSequenceNode seq) throw new UsageException("expected a list");
        var items = new string[seq.Children.Count];
        for (int i = 0; i < items.Length; i++) items[i] = Scalar(seq.Children[i]);
        return items;
    }
}
