using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Duroslight.Server.Cli;

/// <summary>
/// The YAML config file: a flat mapping of the same settings as the flags (snake_case keys). Every error names
/// the file, line and key.
/// </summary>
public static class ConfigFile
{
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
        }
        return settings;
    }

    private static ServeSettings Apply(ServeSettings s, string key, YamlNode node) => key switch
    {
        "listen" => s with { Listen = CommandLine.ParseEndPoint(key, Scalar(node)) },
        "discovery" => s with { Discovery = CommandLine.ParseEndPoint(key, Scalar(node)) },
        "metrics" => s with { Metrics = Scalar(node) is "off" ? null : CommandLine.ParseEndPoint(key, Scalar(node)) },
        "advertise" => s with { AdvertiseAddress = Scalar(node) },
        "data_dir" => s with { DataDirectory = Scalar(node) },
        "nqn" => s with { SubsystemNqn = Scalar(node) },
        "aux_count" => s with { AuxSubsystemCount = CommandLine.ParseInt(key, Scalar(node), 0, 4) },
        "node_index" => s with { NodeIndex = CommandLine.ParseInt(key, Scalar(node), 0, 31) },
        "allowed_hosts" => s with { AllowedHosts = Sequence(node) },
        "volume_size" => s with { DefaultVolumeBytes = CommandLine.ParseSize(key, Scalar(node)) },
        "memory" => s with { InMemory = Scalar(node) is "true" or "yes" },
        "store" => CommandLine.ParseStore(s, key, Scalar(node)),
        "devices" => s with { Devices = Array.ConvertAll(Sequence(node), d => CommandLine.ParseDevice(key, d)) },
        "log_level" => s with { LogLevel = CommandLine.ParseLevel(Scalar(node)) },
        _ => throw new UsageException("unknown key"),
    };

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
