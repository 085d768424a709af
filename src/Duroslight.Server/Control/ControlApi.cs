using System.Globalization;
using System.Net;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Duroslight.Protocol.Subsystems;
using Duroslight.Server.Cli;
using Duroslight.Server.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;

namespace Duroslight.Server.Control;

/// <summary>
/// The control API's routes (README "Control API") on ASP.NET Core routing. Bodies are the typed records of
/// <see cref="ControlJson"/>; a refusal is an HTTP status with {"status", "error"}. Every operation validates
/// before it changes anything.
/// </summary>
public sealed partial class ControlApi(NodeHost node, ILogger logger)
{
    private readonly object _aclGate = new();

    /// <summary>
    /// Every route, one per operation (no catch-all action segment), so docs/openapi.json can name each and a test
    /// can hold the two to each other.
    /// </summary>
    public void Map(WebApplication app)
    {
        app.Use(RefusalsAsJson);
        var v1 = app.MapGroup("/v1");
        v1.MapGet("/state", Reply(_ => State(), ControlJson.Default.StateResponse));
        v1.MapGet("/nodes", Reply(_ => NodesAsync(), ControlJson.Default.ListNodeResponse));
        foreach (string action in (string[])["drain", "undrain"])
            v1.MapPost($"/nodes/{{index}}/{action}", Reply(c => DrainAsync(Route(c, "index"), action == "drain"), ControlJson.Default.ListNodeResponse));
        v1.MapPost("/volumes/{vol}/move", Reply(async c => await StartMoveAsync(Route(c, "vol"), await BodyAsync(c, ControlJson.Default.MoveRequest, new MoveRequest())),
            ControlJson.Default.MoveResponse));
        v1.MapGet("/volumes/{vol}/move", Reply(async c => ToResponse(await Member.MoveStatusAsync(Route(c, "vol"))), ControlJson.Default.MoveResponse));
        v1.MapDelete("/volumes/{vol}/move", Reply(async c => ToResponse((await Member.CancelMoveAsync(Route(c, "vol"))).Record), ControlJson.Default.MoveResponse));
        if (node.Cluster is not null) MapClusterVolumes(v1);
        else MapLocalVolumes(v1);
        v1.MapGet("/subsystems", Reply(_ => Subsystems(), ControlJson.Default.ListSubsystemResponse));
        foreach (string action in (string[])["allow", "deny", "set", "any"])
            v1.MapPost($"/subsystems/{{sub}}/hosts/{action}", Reply(async c => await HostActionAsync(Route(c, "sub"), action,
                await BodyAsync(c, ControlJson.Default.HostsRequest, new HostsRequest())), ControlJson.Default.ListSubsystemResponse));
        v1.MapGet("/controllers", Reply(_ => Controllers(), ControlJson.Default.ListControllerResponse));
        v1.MapDelete("/controllers/{pool}/{cntlid}", Reply(c => DisconnectController(Route(c, "pool"), Route(c, "cntlid")),
            ControlJson.Default.DisconnectedResponse));
        v1.MapGet("/devices", Reply(_ => Devices(), ControlJson.Default.ListDeviceResponse));
        v1.MapGet("/referrals", Reply(_ => Referrals(), ControlJson.Default.ListReferralResponse));
        v1.MapPost("/referrals", Reply(async c => AddReferral(await BodyAsync(c, ControlJson.Default.ReferralRequest, new ReferralRequest())), ControlJson.Default.ListReferralResponse));
        v1.MapDelete("/referrals/{address}", Reply(c => RemoveReferral(Route(c, "address")), ControlJson.Default.ListReferralResponse));
        v1.MapPost("/shutdown", Reply(_ => Shutdown(), ControlJson.Default.ShutdownResponse));
    }

    /// <summary>A lone node's volume routes, one per action (docs/openapi.json lists each).</summary>
    private void MapLocalVolumes(RouteGroupBuilder v1)
    {
        v1.MapGet("/volumes", Reply(_ => Volumes(), ControlJson.Default.ListVolumeResponse));
        v1.MapGet("/volumes/{vol}", Reply(c => ToResponse(node.VolumeOps.Find(Route(c, "vol"))), ControlJson.Default.VolumeResponse));
        v1.MapPost("/volumes", VolumeReply((_, b) => CreateVolume(b)));
        v1.MapDelete("/volumes/{vol}", Reply(c => DeleteVolume(Route(c, "vol")), ControlJson.Default.DeletedResponse));
        v1.MapPost("/volumes/{vol}/resize", VolumeReply((vol, b) => node.VolumeOps.Resize(vol, Size(b))));
        v1.MapPost("/volumes/{vol}/snapshot", VolumeReply((vol, b) => node.VolumeOps.Snapshot(vol, Required(b.Name, "name"))));
        v1.MapPost("/volumes/{vol}/clone", VolumeReply((vol, b) => node.VolumeOps.Clone(vol, Required(b.Name, "name"))));
        v1.MapPost("/volumes/{vol}/attach", VolumeReply((vol, b) => node.VolumeOps.Attach(vol, ValidHost(b.Host))));
        v1.MapPost("/volumes/{vol}/detach", VolumeReply((vol, b) => node.VolumeOps.Detach(vol, ValidHost(b.Host))));
        v1.MapPost("/volumes/{vol}/hosts", VolumeReply((vol, b) => node.VolumeOps.SetHosts(vol, ValidHosts(b.Hosts))));
    }

    /// <summary>A volume operation on the route's {vol} (empty for create) and the request body; answers the volume.</summary>
    private RequestDelegate VolumeReply(Func<string, VolumeRequest, VolumeView> operation) =>
        Reply(async c => ToResponse(operation(Route(c, "vol"), await BodyAsync(c, ControlJson.Default.VolumeRequest, new VolumeRequest()))),
            ControlJson.Default.VolumeResponse);

    /// <summary>
    /// Refusals in one shape: a <see cref="ControlException"/> or a malformed body becomes {"status", "error"},
    /// and so does a status routing left without a body (404 for no route, 405 for a method a path does not take).
    /// </summary>
    private async Task RefusalsAsJson(HttpContext context, RequestDelegate next)
    {
        var request = context.Request;
        try
        {
            await next(context).ConfigureAwait(false);
            if (context.Response.StatusCode >= 400 && !context.Response.HasStarted)
                await WriteErrorAsync(context, context.Response.StatusCode, context.Response.StatusCode switch
                {
                    404 => $"no route {request.Path} (try GET /v1/state)",
                    405 => $"{request.Method} {request.Path} is not supported",
                    int status => $"{request.Method} {request.Path} refused ({status})",
                }).ConfigureAwait(false);
        }
        catch (ControlException e)
        {
            if (e.Status >= 400) logger.LogInformation("control {Method} {Path} refused {Status}: {Error}", request.Method, request.Path, e.Status, e.Message);
            await WriteErrorAsync(context, e.Status, e.Message).ConfigureAwait(false);
        }
        catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException or BadHttpRequestException)
        {
            await WriteErrorAsync(context, e is BadHttpRequestException bad ? bad.StatusCode : 400, e.Message).ConfigureAwait(false);
        }
    }

    private static Task WriteErrorAsync(HttpContext context, int status, string message)
    {
        context.Response.StatusCode = status;
        return context.Response.WriteAsJsonAsync(new ErrorResponse(status, message), ControlJson.Default.ErrorResponse);
    }

    private static RequestDelegate Reply<T>(Func<HttpContext, T> handler, JsonTypeInfo<T> type) =>
        context => context.Response.WriteAsJsonAsync(handler(context), type);

    private static RequestDelegate Reply<T>(Func<HttpContext, Task<T>> handler, JsonTypeInfo<T> type) =>
        async context => await context.Response.WriteAsJsonAsync(await handler(context).ConfigureAwait(false), type).ConfigureAwait(false);

    /// <summary>A route value; routing has already decoded it (but for an escaped '/', which it leaves as %2F).</summary>
    private static string Route(HttpContext context, string name) =>
        (context.Request.RouteValues[name] as string ?? "").Replace("%2F", "/", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// The typed body (Kestrel refuses one over 1 MiB with 413); an empty body is the record's defaults, so a missing
    /// field is reported by name.
    /// </summary>
    private static async Task<T> BodyAsync<T>(HttpContext context, JsonTypeInfo<T> type, T empty)
    {
        using var buffer = new MemoryStream();
        await context.Request.Body.CopyToAsync(buffer).ConfigureAwait(false);
        var bytes = buffer.GetBuffer().AsSpan(0, (int)buffer.Length);
        if (bytes.Trim(" \t\r\n"u8).IsEmpty) return empty;
        return JsonSerializer.Deserialize(bytes, type) ?? throw ControlException.BadRequest("the request body must be a JSON object");
    }

    public StateResponse State()
    {
        var s = node.Settings;
        return new StateResponse(node.State.Name(), s.NodeIndex, s.ClusterId, s.SubsystemNqn, s.AuxSubsystemCount, Environment.ProcessId,
            (long)(DateTimeOffset.UtcNow - node.StartedAt).TotalSeconds, node.VolumeList().Count, node.Target.Namespaces.Length,
            node.Target.ListControllers().Count, node.ConnectionCount, node.Target.DiscoveryGeneration, s.Listen.ToString(),
            s.Discovery.ToString(), s.Metrics?.ToString() ?? "off", FailedDevices());
    }

    private int FailedDevices()
    {
        int failed = 0;
        foreach (DeviceHealth d in node.Devices) failed += d.Failed ? 1 : 0;
        return failed;
    }

    private List<DeviceResponse> Devices()
    {
        var list = new List<DeviceResponse>();
        foreach (DeviceHealth d in node.Devices)
            list.Add(new DeviceResponse(d.Name, d.Kind, d.Failed ? "failed" : "in_service", d.Errors, d.InFlight, d.Reason, d.FailedAt));
        return list;
    }

    private List<VolumeResponse> Volumes()
    {
        var list = new List<VolumeResponse>();
        foreach (var v in node.VolumeList()) list.Add(ToResponse(v));
        return list;
    }

    private VolumeView CreateVolume(VolumeRequest body) => body.Replicas is null or 1
        ? node.VolumeOps.Create(Required(body.Name, "name"), Size(body), ValidHosts(body.Hosts))
        : throw ControlException.BadRequest("replicas above 1 need a cluster (serve --etcd URL)");

    private DeletedResponse DeleteVolume(string key)
    {
        node.VolumeOps.Delete(key);
        return new DeletedResponse(key);
    }

    private List<SubsystemResponse> Subsystems()
    {
        var list = new List<SubsystemResponse>();
        foreach (var s in node.Target.Subsystems) list.Add(new SubsystemResponse(s.PoolId, s.Nqn, s.Access.IsAllowAny, SortedHosts(s.Access)));
        return list;
    }

    /// <summary>allow/deny one host, set the whole list, or allow any host. Controllers of removed hosts are disconnected.</summary>
    private List<SubsystemResponse> HostAction(string subsystem, string action, HostsRequest body)
    {
        var targets = ResolveSubsystems(subsystem);
        lock (_aclGate)
        {
            var changes = new List<(Subsystem, HostAccess)>();
            foreach (var s in targets) changes.Add((s, NewAccess(s.Nqn, s.Access, action, body)));
            foreach (var (s, access) in changes)
            {
                node.Target.SetHostAccess(s, access);
                logger.LogInformation("hosts of {Subsystem}: {Access}", s.Nqn, access.IsAllowAny ? "any" : string.Join(",", SortedHosts(access)));
            }
        }
        return Subsystems();
    }

    private static HostAccess NewAccess(string nqn, HostAccess current, string action, HostsRequest body)
    {
        switch (action)
        {
            case "any":
                return HostAccess.AllowAny;
            case "set":
                return HostAccess.Only(ValidHosts(body.Hosts) ?? throw ControlException.BadRequest("'hosts' must be a list of host NQNs"));
            case "allow" or "deny":
                string host = ValidHost(body.Host);
                if (current.IsAllowAny)
                    throw ControlException.Conflict($"{nqn} allows any host; set a list first (hosts set) before allowing or denying one");
                var set = new HashSet<string>(current.Hosts, StringComparer.Ordinal);
                if (action == "allow") set.Add(host); else set.Remove(host);
                return HostAccess.Only(set);
            default:
                throw new ArgumentOutOfRangeException(nameof(action), action, "not a hosts action");
        }
    }

    /// <summary>A host list from a body: null (absent) stays null, meaning any host.</summary>
    private static List<string>? ValidHosts(IReadOnlyList<string?>? hosts)
    {
        if (hosts is null) return null;
        var valid = new List<string>();
        foreach (string? h in hosts) valid.Add(ValidHost(h));
        return valid;
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

    private List<ControllerResponse> Controllers()
    {
        var list = new List<ControllerResponse>();
        foreach (var c in node.Target.ListControllers())
            list.Add(new ControllerResponse(c.Cntlid, c.PoolId, c.SubsystemNqn, c.HostNqn, c.IoQueues, c.Shard, c.PeerAddress, c.IsDiscovery));
        return list;
    }

    private DisconnectedResponse DisconnectController(string pool, string cntlid)
    {
        if (!int.TryParse(pool, out int p) || !ushort.TryParse(cntlid, out ushort id))
            throw ControlException.BadRequest($"'{pool}/{cntlid}' is not POOL/CNTLID (numbers)");
        if (!node.Target.Disconnect(p, id)) throw ControlException.NotFound($"no I/O controller {id} in pool {p}");
        logger.LogInformation("controller {Cntlid} of pool {Pool} disconnected by the control API", id, p);
        return new DisconnectedResponse(id, p);
    }

    private List<ReferralResponse> Referrals()
    {
        var list = new List<ReferralResponse>();
        foreach (var r in node.Target.Referrals) list.Add(new ReferralResponse(r.TrAddr, r.TrSvcId));
        return list;
    }

    private List<ReferralResponse> AddReferral(ReferralRequest body)
    {
        var ep = Endpoint(Required(body.Address, "address"));
        node.Target.AddReferral(ToReferral(ep));
        logger.LogInformation("referral added {Endpoint}", ep);
        return Referrals();
    }

    private List<ReferralResponse> RemoveReferral(string address)
    {
        var ep = Endpoint(address);
        if (!node.Target.RemoveReferral(ToReferral(ep))) throw ControlException.NotFound($"no referral {ep}");
        logger.LogInformation("referral removed {Endpoint}", ep);
        return Referrals();
    }

    private ShutdownResponse Shutdown()
    {
        node.RequestShutdown();
        return new ShutdownResponse(node.State.Name(), "requested");
    }

    private static Referral ToReferral(IPEndPoint ep) => new(ep.Address.ToString(), ep.Port.ToString(CultureInfo.InvariantCulture));

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

    private static VolumeResponse ToResponse(VolumeView v) =>
        new(v.Id.ToString(), v.Name, v.SizeBytes, v.BlockSize, v.Nsid, v.AllocatedBytes, v.Hosts is null, v.Hosts ?? []);

    private static string Required(string? value, string key) =>
        !string.IsNullOrWhiteSpace(value) ? value : throw ControlException.BadRequest($"'{key}' is required (a non-empty string)");

    /// <summary>"size": bytes, or a string with a K/M/G/T suffix; a multiple of 4096.</summary>
    private static long Size(VolumeRequest body)
    {
        string text = body.Size ?? throw ControlException.BadRequest("'size' is required (bytes, or e.g. \"10G\")");
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
}
