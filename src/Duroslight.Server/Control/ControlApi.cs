using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Duroslight.Protocol.Subsystems;
using Duroslight.Server.Cli;
using Duroslight.Server.Hosting;
using Microsoft.Extensions.Logging;

namespace Duroslight.Server.Control;

/// <summary>
/// The control API's routes (README "Control API"). Requests and answers are JSON; a refusal is an HTTP-style
/// status with {"error": message}. Every operation validates before it changes anything.
/// </summary>
public sealed class ControlApi(NodeHost node, ILogger logger)
{
    private const string JsonType = "application/json";
    private readonly object _aclGate = new();

    public Task<HttpResponse> HandleAsync(HttpRequest request) => Task.FromResult(Handle(request));

    private HttpResponse Handle(HttpRequest request)
    {
        try
        {
            var result = Route(request.Method, request.Path.TrimEnd('/').Split('/'), request);
            return new HttpResponse(200, JsonType, result.ToJsonString() + "\n");
        }
        catch (ControlException e)
        {
            if (e.Status >= 400) logger.LogInformation("control {Method} {Path} refused {Status}: {Error}", request.Method, request.Path, e.Status, e.Message);
            return Error(e.Status, e.Message);
        }
        catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException)
        {
            return Error(400, e.Message);
        }
    }

    private static HttpResponse Error(int status, string message) =>
        new(status, JsonType, new JsonObject { ["status"] = status, ["error"] = message }.ToJsonString() + "\n");

    /// <summary>Path segments start with "", "v1".</summary>
    private JsonNode Route(string method, string[] p, HttpRequest r)
    {
        if (p.Length < 3 || p[1] != "v1") throw ControlException.NotFound($"no route {r.Path} (try GET /v1/state)");
        return (method, p[2], p.Length) switch
        {
            ("GET", "state", 3) => State(),
            ("GET", "volumes", 3) => Volumes(),
            ("GET", "volumes", 4) => ToJson(node.VolumeOps.Find(Unescape(p[3]))),
            ("POST", "volumes", 3) => CreateVolume(Body(r)),
            ("DELETE", "volumes", 4) => DeleteVolume(Unescape(p[3])),
            ("POST", "volumes", 5) => VolumeAction(Unescape(p[3]), p[4], Body(r)),
            ("GET", "subsystems", 3) => Subsystems(),
            ("POST", "subsystems", 6) when p[4] == "hosts" => HostAction(Unescape(p[3]), p[5], Body(r)),
            ("GET", "controllers", 3) => Controllers(),
            ("DELETE", "controllers", 5) => DisconnectController(p[3], p[4]),
            ("GET", "referrals", 3) => Referrals(),
            ("POST", "referrals", 3) => AddReferral(Body(r)),
            ("DELETE", "referrals", 4) => RemoveReferral(Unescape(p[3])),
            ("POST", "shutdown", 3) => Shutdown(),
            (_, "state" or "volumes" or "subsystems" or "controllers" or "referrals" or "shutdown", _) =>
                throw new ControlException(405, $"{method} {r.Path} is not supported"),
            _ => throw ControlException.NotFound($"no route {r.Path}"),
        };
    }

    public JsonObject State()
    {
        var s = node.Settings;
        return new JsonObject
        {
            ["state"] = node.State.ToString(),
            ["node_index"] = s.NodeIndex,
            ["cluster"] = s.ClusterId,
            ["nqn"] = s.SubsystemNqn,
            ["aux_count"] = s.AuxSubsystemCount,
            ["pid"] = Environment.ProcessId,
            ["uptime_s"] = (long)(DateTimeOffset.UtcNow - node.StartedAt).TotalSeconds,
            ["volumes"] = node.VolumeList().Count,
            ["namespaces"] = node.Target.Namespaces.Length,
            ["controllers"] = node.Target.ListControllers().Count,
            ["connections"] = node.ConnectionCount,
            ["genctr"] = node.Target.DiscoveryGeneration,
            ["listen"] = s.Listen.ToString(),
            ["discovery"] = s.Discovery.ToString(),
            ["metrics"] = s.Metrics?.ToString() ?? "off",
        };
    }

    private JsonArray Volumes()
    {
        var list = new JsonArray();
        foreach (var v in node.VolumeList()) list.Add(ToJson(v));
        return list;
    }

    private JsonObject CreateVolume(JsonObject body)
    {
        string name = RequiredString(body, "name");
        long size = Size(body);
        return ToJson(node.VolumeOps.Create(name, size));
    }

    private JsonObject DeleteVolume(string key)
    {
        node.VolumeOps.Delete(key);
        return new JsonObject { ["deleted"] = key };
    }

    private JsonObject VolumeAction(string key, string action, JsonObject body) => action switch
    {
        "resize" => ToJson(node.VolumeOps.Resize(key, Size(body))),
        "snapshot" => ToJson(node.VolumeOps.Snapshot(key, RequiredString(body, "name"))),
        "clone" => ToJson(node.VolumeOps.Clone(key, RequiredString(body, "name"))),
        _ => throw ControlException.NotFound($"no volume action '{action}' (resize, snapshot, clone)"),
    };

    private JsonArray Subsystems()
    {
        var list = new JsonArray();
        foreach (var s in node.Target.Subsystems)
        {
            var hosts = new JsonArray();
            foreach (string h in SortedHosts(s.Access)) hosts.Add(h);
            list.Add(new JsonObject { ["pool"] = s.PoolId, ["nqn"] = s.Nqn, ["allow_any_host"] = s.Access.IsAllowAny, ["hosts"] = hosts });
        }
        return list;
    }

    /// <summary>allow/deny one host, set the whole list, or allow any host. Controllers of removed hosts are disconnected.</summary>
    private JsonArray HostAction(string subsystem, string action, JsonObject body)
    {
        var targets = ResolveSubsystems(subsystem);
        lock (_aclGate)
        {
            var changes = new List<(Subsystem, HostAccess)>();
            foreach (var s in targets) changes.Add((s, NewAccess(s, action, body)));
            foreach (var (s, access) in changes)
            {
                node.Target.SetHostAccess(s, access);
                logger.LogInformation("hosts of {Subsystem}: {Access}", s.Nqn, access.IsAllowAny ? "any" : string.Join(",", SortedHosts(access)));
            }
        }
        return Subsystems();
    }

    private static HostAccess NewAccess(Subsystem s, string action, JsonObject body)
    {
        switch (action)
        {
            case "any":
                return HostAccess.AllowAny;
            case "set":
                var hosts = new List<string>();
                foreach (var h in body["hosts"] as JsonArray ?? throw ControlException.BadRequest("'hosts' must be a list of host NQNs"))
                    hosts.Add(ValidHost(h?.GetValue<string>()));
                return HostAccess.Only(hosts);
            case "allow" or "deny":
                string host = ValidHost(body["host"]?.GetValue<string>());
                if (s.Access.IsAllowAny)
                    throw ControlException.Conflict($"{s.Nqn} allows any host; set a list first (hosts set) before allowing or denying one");
                var set = new HashSet<string>(s.Access.Hosts, StringComparer.Ordinal);
                if (action == "allow") set.Add(host); else set.Remove(host);
                return HostAccess.Only(set);
            default:
                throw ControlException.NotFound($"no hosts action '{action}' (allow, deny, set, any)");
        }
    }

    private static string ValidHost(string? host) =>
        host is not null && Nqn.IsValid(host) ? host : throw ControlException.BadRequest($"'{host}' is not a valid host NQN");

    /// <summary>"all", "default", "aux-N", a pool number or a subsystem NQN.</summary>
    private List<Subsystem> ResolveSubsystems(string key)
    {
        var all = node.Target.Subsystems;
        if (key == "all") return [.. all];
        if (node.Target.ResolveSubsystem(key) is { } byNqn) return [byNqn]; // either aux NQN form, as Connect takes them
        foreach (var s in all)
            if (key == (s.PoolId == 0 ? "default" : $"aux-{s.PoolId}") || key == s.PoolId.ToString(System.Globalization.CultureInfo.InvariantCulture))
                return [s];
        throw ControlException.NotFound($"no subsystem '{key}' (all, default, aux-1..aux-{all.Count - 1}, a pool number or an NQN)");
    }

    private JsonArray Controllers()
    {
        var list = new JsonArray();
        foreach (var c in node.Target.ListControllers())
            list.Add(new JsonObject
            {
                ["cntlid"] = c.Cntlid,
                ["pool"] = c.PoolId,
                ["subsystem"] = c.SubsystemNqn,
                ["host"] = c.HostNqn,
                ["io_queues"] = c.IoQueues,
                ["shard"] = c.Shard,
                ["peer"] = c.PeerAddress,
                ["discovery"] = c.IsDiscovery,
            });
        return list;
    }

    private JsonObject DisconnectController(string pool, string cntlid)
    {
        if (!int.TryParse(pool, out int p) || !ushort.TryParse(cntlid, out ushort id))
            throw ControlException.BadRequest($"'{pool}/{cntlid}' is not POOL/CNTLID (numbers)");
        if (!node.Target.Disconnect(p, id)) throw ControlException.NotFound($"no I/O controller {id} in pool {p}");
        logger.LogInformation("controller {Cntlid} of pool {Pool} disconnected by the control API", id, p);
        return new JsonObject { ["disconnected"] = id, ["pool"] = p };
    }

    private JsonArray Referrals()
    {
        var list = new JsonArray();
        foreach (var r in node.Target.Referrals) list.Add(new JsonObject { ["address"] = r.TrAddr, ["port"] = r.TrSvcId });
        return list;
    }

    private JsonArray AddReferral(JsonObject body)
    {
        var ep = Endpoint(RequiredString(body, "address"));
        node.Target.AddReferral(new Referral(ep.Address.ToString(), ep.Port.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        logger.LogInformation("referral added {Endpoint}", ep);
        return Referrals();
    }

    private JsonArray RemoveReferral(string address)
    {
        var ep = Endpoint(address);
        if (!node.Target.RemoveReferral(new Referral(ep.Address.ToString(), ep.Port.ToString(System.Globalization.CultureInfo.InvariantCulture))))
            throw ControlException.NotFound($"no referral {ep}");
        logger.LogInformation("referral removed {Endpoint}", ep);
        return Referrals();
    }

    private JsonObject Shutdown()
    {
        node.RequestShutdown();
        return new JsonObject { ["state"] = node.State.ToString(), ["shutdown"] = "requested" };
    }

    private static IPEndPoint Endpoint(string text)
    {
        try
        {
            return CommandLine.ParseEndPoint("address", text);
        }
        catch (UsageException e)
        {
            throw ControlException.BadRequest(e.Message);
        }
    }

    private static JsonObject ToJson(VolumeView v) => new()
    {
        ["id"] = v.Id.ToString(),
        ["name"] = v.Name,
        ["size_bytes"] = v.SizeBytes,
        ["block_size"] = v.BlockSize,
        ["nsid"] = v.Nsid,
        ["allocated_bytes"] = v.AllocatedBytes,
    };

    private static JsonObject Body(HttpRequest r)
    {
        if (string.IsNullOrWhiteSpace(r.Body)) return [];
        return JsonNode.Parse(r.Body) as JsonObject ?? throw ControlException.BadRequest("the request body must be a JSON object");
    }

    private static string RequiredString(JsonObject body, string key) =>
        body[key] is JsonValue v && v.TryGetValue(out string? s) && !string.IsNullOrWhiteSpace(s)
            ? s
            : throw ControlException.BadRequest($"'{key}' is required (a non-empty string)");

    /// <summary>"size": bytes, or a string with a K/M/G/T suffix; a multiple of 4096.</summary>
    private static long Size(JsonObject body)
    {
        string text = body["size"] switch
        {
            JsonValue v when v.TryGetValue(out long n) => n.ToString(System.Globalization.CultureInfo.InvariantCulture),
            JsonValue v when v.TryGetValue(out string? s) => s,
            _ => throw ControlException.BadRequest("'size' is required (bytes, or e.g. \"10G\")"),
        };
        try
        {
            return CommandLine.ParseSize("size", text);
        }
        catch (UsageException e)
        {
            throw ControlException.BadRequest(e.Message);
        }
    }

    private static List<string> SortedHosts(HostAccess access)
    {
        var hosts = new List<string>(access.Hosts);
        hosts.Sort(StringComparer.Ordinal);
        return hosts;
    }

    private static string Unescape(string segment) => Uri.UnescapeDataString(segment);
}
