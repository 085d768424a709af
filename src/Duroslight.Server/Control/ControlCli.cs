using System.Globalization;
using System.Net.Http;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Duroslight.Server.Cli;

namespace Duroslight.Server.Control;

/// <summary>
/// `duroslight ctl ...` and `duroslight status`: thin commands over the control API. Exit codes: 0 done,
/// 1 refused by the node (the HTTP-style status and message go to stderr), 2 usage error, 3 node unreachable.
/// </summary>
public static class ControlCli
{
    public const string Usage = """
        usage: duroslight status [--json] [--socket PATH | --config FILE]
               duroslight ctl [--json] [--socket PATH | --config FILE] COMMAND
          state
          volumes list | show [VOL] | create NAME SIZE [--hosts NQN,...|none] [--replicas 1..3] | delete VOL | resize VOL SIZE
          volumes snapshot VOL NAME | clone VOL NAME          (VOL: name, ID or nsid:N)
          volumes attach VOL NQN | detach VOL NQN | hosts VOL any|none|NQN...   (per-volume host access)
          volumes move VOL --to N [--from N] | move-status VOL | move-cancel VOL
                                                    (cluster: move a replica of VOL to node N while it is served;
                                                     --from: the only replica, else the primary)
          hosts list | allow SUB NQN | deny SUB NQN | set SUB [NQN...] | any SUB
                                                    (SUB: all, default, aux-N, pool number or NQN)
          controllers list | disconnect POOL CNTLID
          nodes list                                (a cluster's nodes: index, addresses, state, leader, volumes)
          nodes drain N | undrain N                 (hand node N's primaries to other nodes, place nothing new there)
          devices [list]                            (devices under the volumes: state in_service|failed, errors)
          referrals list | add ADDR:PORT | remove ADDR:PORT
          shutdown
        socket: --socket, else $DUROSLIGHT_CONTROL_SOCKET, else control_socket/data_dir of --config,
                else ./duroslight-data/control.sock
        """;

    private sealed record Options(string Socket, bool Json, List<string> Words, string? Hosts, int? Replicas, int? To, int? From);

    public static async Task<int> StatusAsync(IReadOnlyList<string> args, TextWriter stdout, TextWriter stderr)
    {
        if (!TryParse(args, stderr, out var o)) return 2;
        if (o.Words.Count > 0) return UsageError(stderr, $"status takes no arguments: '{o.Words[0]}'");
        return await RunAsync(o, HttpMethod.Get, "v1/state", null, stdout, stderr).ConfigureAwait(false);
    }

    public static async Task<int> CtlAsync(IReadOnlyList<string> args, TextWriter stdout, TextWriter stderr)
    {
        if (!TryParse(args, stderr, out var o)) return 2;
        (HttpMethod Method, string Path, JsonObject? Body)? request;
        try
        {
            request = ToRequest(o);
        }
        catch (UsageException e)
        {
            return UsageError(stderr, e.Message);
        }
        if (request is not { } r) return UsageError(stderr, o.Words.Count == 0 ? "ctl needs a command" : $"unknown command '{string.Join(' ', o.Words)}'");
        return await RunAsync(o, r.Method, r.Path, r.Body, stdout, stderr).ConfigureAwait(false);
    }

    /// <summary>Maps the command words to a request; null when they are not a command.</summary>
    private static (HttpMethod, string, JsonObject?)? ToRequest(Options o)
    {
        var (w, hosts, replicas) = (o.Words, o.Hosts, o.Replicas);
        if (hosts is not null && (w.Count < 2 || w[0] != "volumes" || w[1] != "create"))
            throw new UsageException("--hosts goes with volumes create");
        if ((o.To ?? o.From) is not null && (w.Count < 2 || w[0] != "volumes" || w[1] != "move"))
            throw new UsageException("--to and --from go with volumes move");
        string At(int i) => i < w.Count ? w[i] : throw new UsageException($"'{string.Join(' ', w)}' needs more arguments");
        string E(int i) => Uri.EscapeDataString(At(i));
        var get = HttpMethod.Get;
        var post = HttpMethod.Post;
        var delete = HttpMethod.Delete;
        return (w.Count > 0 ? w[0] : "", w.Count > 1 ? w[1] : "") switch
        {
            ("state", _) => (get, "v1/state", null),
            ("devices", _) => (get, "v1/devices", null),
            ("shutdown", _) => (post, "v1/shutdown", null),
            ("volumes", "list") => (get, "v1/volumes", null),
            ("volumes", "show") when w.Count == 2 => (get, "v1/volumes", null),
            ("volumes", "show") => (get, $"v1/volumes/{E(2)}", null),
            ("volumes", "create") => (post, "v1/volumes", new JsonObject { ["name"] = At(2), ["size"] = At(3), ["hosts"] = HostList(hosts), ["replicas"] = replicas }),
            ("volumes", "attach" or "detach") => (post, $"v1/volumes/{E(2)}/{w[1]}", new JsonObject { ["host"] = At(3) }),
            ("volumes", "hosts") => (post, $"v1/volumes/{E(2)}/hosts", new JsonObject
            {
                ["hosts"] = At(3) == "any" ? null : HostList(string.Join(',', w.Skip(3))),
            }),
            ("volumes", "move") => (post, $"v1/volumes/{E(2)}/move", new JsonObject
            {
                ["to"] = o.To ?? throw new UsageException("volumes move needs --to NODE"),
                ["from"] = o.From,
            }),
            ("volumes", "move-status") => (get, $"v1/volumes/{E(2)}/move", null),
            ("volumes", "move-cancel") => (delete, $"v1/volumes/{E(2)}/move", null),
            ("nodes", "list") => (get, "v1/nodes", null),
            ("nodes", "drain" or "undrain") => (post, $"v1/nodes/{E(2)}/{w[1]}", null),
            ("volumes", "delete") => (delete, $"v1/volumes/{E(2)}", null),
            ("volumes", "resize") => (post, $"v1/volumes/{E(2)}/resize", new JsonObject { ["size"] = At(3) }),
            ("volumes", "snapshot" or "clone") => (post, $"v1/volumes/{E(2)}/{w[1]}", new JsonObject { ["name"] = At(3) }),
            ("hosts", "list") => (get, "v1/subsystems", null),
            ("hosts", "allow" or "deny") => (post, $"v1/subsystems/{E(2)}/hosts/{w[1]}", new JsonObject { ["host"] = At(3) }),
            ("hosts", "set") => (post, $"v1/subsystems/{E(2)}/hosts/set", new JsonObject { ["hosts"] = new JsonArray([.. w.Skip(3).Select(h => (JsonNode)h)]) }),
            ("hosts", "any") => (post, $"v1/subsystems/{E(2)}/hosts/any", null),
            ("controllers", "list") => (get, "v1/controllers", null),
            ("controllers", "disconnect") => (delete, $"v1/controllers/{E(2)}/{E(3)}", null),
            ("referrals", "list") => (get, "v1/referrals", null),
            ("referrals", "add") => (post, "v1/referrals", new JsonObject { ["address"] = At(2) }),
            ("referrals", "remove") => (delete, $"v1/referrals/{E(2)}", null),
            _ => null,
        };
    }

    /// <summary>"NQN,NQN" as a JSON list; "none" is the empty list (no host yet); null (no --hosts) is any host.</summary>
    private static JsonArray? HostList(string? hosts) => hosts switch
    {
        null => null,
        "none" => [],
        _ => new JsonArray([.. hosts.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(h => (JsonNode)h)]),
    };

    private static async Task<int> RunAsync(Options o, HttpMethod method, string path, JsonObject? body, TextWriter stdout, TextWriter stderr)
    {
        using var client = new ControlClient(o.Socket);
        int status;
        JsonNode? answer;
        try
        {
            (status, answer) = await client.SendAsync(method, path, body).ConfigureAwait(false);
        }
        catch (HttpRequestException e) when (e.InnerException is SocketException or null)
        {
            await stderr.WriteLineAsync($"duroslight: cannot reach the node at unix:{o.Socket}: {e.Message}").ConfigureAwait(false);
            return 3;
        }
        if (status != 200)
        {
            await stderr.WriteLineAsync($"duroslight: error {status}: {answer?["error"]?.GetValue<string>() ?? answer?.ToJsonString()}").ConfigureAwait(false);
            return 1;
        }
        await stdout.WriteAsync(o.Json ? answer?.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n" : Lines(answer)).ConfigureAwait(false);
        return 0;
    }

    /// <summary>One line of key=value per object (flexnbd-style), a list as one line per item.</summary>
    public static string Lines(JsonNode? node)
    {
        var text = new StringBuilder();
        if (node is JsonArray list) foreach (var item in list) text.Append(Line(item)).Append('\n');
        else text.Append(Line(node)).Append('\n');
        return text.ToString();
    }

    private static string Line(JsonNode? node)
    {
        if (node is not JsonObject obj) return node?.ToJsonString() ?? "";
        var parts = new List<string>();
        foreach (var (k, v) in obj)
            parts.Add($"{k}={(v is JsonValue value && value.TryGetValue(out string? s) ? s : v?.ToJsonString() ?? "")}");
        return string.Join(' ', parts);
    }

    private static bool TryParse(IReadOnlyList<string> args, TextWriter stderr, out Options options)
    {
        string? socket = null, config = null, hosts = null;
        bool json = false;
        int? replicas = null, to = null, from = null;
        var words = new List<string>();
        options = null!;
        for (int i = 0; i < args.Count; i++)
        {
            switch (args[i])
            {
                case "--json": json = true; break;
                case "--socket" when i + 1 < args.Count: socket = args[++i]; break;
                case "--config" when i + 1 < args.Count: config = args[++i]; break;
                case "--hosts" when i + 1 < args.Count: hosts = args[++i]; break;
                case "--replicas" when i + 1 < args.Count:
                    if (!int.TryParse(args[++i], out int n) || n is < 1 or > 3) { UsageError(stderr, $"--replicas: '{args[i]}' is not 1..3"); return false; }
                    replicas = n;
                    break;
                case "--to" or "--from" when i + 1 < args.Count:
                    if (!int.TryParse(args[i + 1], NumberStyles.None, CultureInfo.InvariantCulture, out int node) || node > 99)
                    {
                        UsageError(stderr, $"{args[i]}: '{args[i + 1]}' is not a node index");
                        return false;
                    }
                    if (args[i++] == "--to") to = node; else from = node;
                    break;
                case "-h" or "--help": stderr.Write(Usage); return false;
                case var a when a.StartsWith("--", StringComparison.Ordinal): UsageError(stderr, $"unknown option '{a}'"); return false;
                default: words.Add(args[i]); break;
            }
        }
        try
        {
            socket ??= Environment.GetEnvironmentVariable("DUROSLIGHT_CONTROL_SOCKET") is { Length: > 0 } env ? env
                : (config is null ? new ServeSettings() : ConfigFile.Load(config)).ControlSocketPath;
        }
        catch (UsageException e)
        {
            UsageError(stderr, e.Message);
            return false;
        }
        options = new Options(socket, json, words, hosts, replicas, to, from);
        return true;
    }

    private static int UsageError(TextWriter stderr, string message)
    {
        stderr.WriteLine($"duroslight: {message}\n{Usage}");
        return 2;
    }
}
