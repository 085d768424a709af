using System.Globalization;
using Duroslight.Server.Cluster;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;

namespace Duroslight.Server.Control;

/// <summary>
/// The routes that speak for the whole cluster: in a cluster every node serves them from etcd (any node accepts a
/// create; the leader places it; a volume's host list is in its etcd record and every node applies it). Resize,
/// delete, snapshot and clone of cluster volumes are not there yet (409).
/// </summary>
public sealed partial class ControlApi
{
    private void MapClusterVolumes(RouteGroupBuilder v1)
    {
        v1.MapGet("/volumes", Reply(_ => ClusterVolumesAsync(), ControlJson.Default.ListClusterVolumeResponse));
        v1.MapGet("/volumes/{vol}", Reply(c => ClusterVolumeAsync(Route(c, "vol")), ControlJson.Default.ClusterVolumeResponse));
        v1.MapPost("/volumes", Reply(async c => await CreateClusterVolumeAsync(await BodyAsync(c, ControlJson.Default.VolumeRequest, new VolumeRequest())),
            ControlJson.Default.ClusterVolumeResponse));
        v1.MapDelete("/volumes/{vol}", Reply(DeletedResponse (HttpContext _) => throw NotYet("delete"), ControlJson.Default.DeletedResponse));
        foreach (string action in (string[])["attach", "detach", "hosts"])
            v1.MapPost("/volumes/{vol}/" + action, Reply(async c => await ClusterVolumeHostsAsync(Route(c, "vol"), action,
                await BodyAsync(c, ControlJson.Default.VolumeRequest, new VolumeRequest())), ControlJson.Default.ClusterVolumeResponse));
        v1.MapPost("/volumes/{vol}/{action}", Reply(ClusterVolumeResponse (HttpContext c) => throw NotYet(Route(c, "action")), ControlJson.Default.ClusterVolumeResponse));
    }

    /// <summary>A host list as a volume keeps it: sorted, without duplicates; null (any host) stays null.</summary>
    private static string[]? SortedHosts(IReadOnlyList<string>? hosts) => hosts is null ? null : [.. new SortedSet<string>(hosts, StringComparer.Ordinal)];

    private static ControlException NotYet(string action) =>
        ControlException.Conflict($"'{action}' of a cluster volume is not supported yet (create, show, attach, detach and hosts are)");

    private ClusterMember Member => node.Cluster ?? throw ControlException.Conflict("this node runs alone (no --etcd)");

    /// <summary>Host list changes: a lone node's apply here; a cluster's go to etcd (hosts/POOL) and every node applies them.</summary>
    private async Task<List<SubsystemResponse>> HostActionAsync(string subsystem, string action, HostsRequest body)
    {
        if (node.Cluster is not { } cluster) return HostAction(subsystem, action, body);
        var targets = ResolveSubsystems(subsystem);
        var view = await cluster.ReadAsync();
        var lists = new List<HostsRecord>();
        var changes = new List<(Protocol.Subsystems.Subsystem, Protocol.Subsystems.HostAccess)>();
        foreach (var s in targets)
        {
            var current = view.HostLists.TryGetValue(s.PoolId, out var set) ? set.Record.ToAccess() : s.Access;
            var next = NewAccess(s.Nqn, current, action, body);
            lists.Add(new HostsRecord(s.PoolId, next.IsAllowAny, SortedHosts(next)));
            changes.Add((s, next));
        }
        await cluster.SetHostListsAsync(view, lists);
        lock (_aclGate)
            foreach (var (s, access) in changes)
            {
                node.Target.SetHostAccess(s, access);
                logger.LogInformation("hosts of {Subsystem} (cluster): {Access}", s.Nqn, access.IsAllowAny ? "any" : string.Join(",", SortedHosts(access)));
            }
        return Subsystems();
    }

    private async Task<ClusterVolumeResponse> CreateClusterVolumeAsync(VolumeRequest body)
    {
        var entry = await Member.CreateVolumeAsync(Required(body.Name, "name"), Size(body), body.Replicas ?? 1, SortedHosts(ValidHosts(body.Hosts)));
        return ToResponse(await Member.ReadAsync(), entry.Record);
    }

    /// <summary>attach/detach one host or replace the list (null: any host) of a cluster volume, in etcd; as a lone node's.</summary>
    private async Task<ClusterVolumeResponse> ClusterVolumeHostsAsync(string key, string action, VolumeRequest body)
    {
        IReadOnlyList<string>? replaced = action == "hosts" ? SortedHosts(ValidHosts(body.Hosts)) : null;
        string? host = action == "hosts" ? null : ValidHost(body.Host);
        var record = await Member.SetVolumeHostsAsync(key, r =>
        {
            if (action == "hosts") return replaced;
            if (r.Hosts is null)
                throw ControlException.Conflict($"volume '{r.Name}' is open to any host; give it a list first (volumes hosts)");
            var set = new SortedSet<string>(r.Hosts, StringComparer.Ordinal);
            if (action == "attach") set.Add(host!); else set.Remove(host!);
            return [.. set];
        });
        return ToResponse(await Member.ReadAsync(), record);
    }

    private async Task<List<ClusterVolumeResponse>> ClusterVolumesAsync()
    {
        var view = await Member.ReadAsync();
        var list = new List<ClusterVolumeResponse>();
        foreach (var v in view.Volumes) list.Add(ToResponse(view, v.Record));
        return list;
    }

    private async Task<ClusterVolumeResponse> ClusterVolumeAsync(string key)
    {
        var view = await Member.ReadAsync();
        var entry = view.Require(key);
        return ToResponse(view, entry.Record);
    }

    /// <summary>`ctl volumes move VOL --to N [--from N]`: the move as recorded when it starts.</summary>
    private async Task<MoveResponse> StartMoveAsync(string key, MoveRequest body)
    {
        int to = body.To is >= 0 and <= 99 ? body.To.Value : throw ControlException.BadRequest("to: the index of the node to move to (0..99)");
        if (body.From is < 0 or > 99) throw ControlException.BadRequest($"from: {body.From} is not a node index");
        return ToResponse((await Member.StartMoveAsync(key, to, body.From)).Record);
    }

    private static MoveResponse ToResponse(MoveRecord m) => new(m.Volume.ToString("D"), m.From, m.To, m.Phase, m.Error, m.Started, m.Finished,
        Math.Round(((m.Finished ?? DateTime.UtcNow) - m.Started).TotalSeconds, 1), m.ChunksTotal, m.ChunksLeft, m.BytesCopied, m.MibPerSecond, m.EtaSeconds);

    /// <summary>`ctl nodes drain N` / `undrain N`: the node hands its primaries over (or may take them again); the node list.</summary>
    private async Task<List<NodeResponse>> DrainAsync(string index, bool drain)
    {
        if (!int.TryParse(index, NumberStyles.None, CultureInfo.InvariantCulture, out int n) || n > 99)
            throw ControlException.BadRequest($"'{index}' is not a node index");
        await Member.SetDrainAsync(n, drain);
        return await NodesAsync();
    }

    /// <summary>Every node the cluster knows (a lone node: itself), the live ones with their published state, the others Down.</summary>
    private async Task<List<NodeResponse>> NodesAsync()
    {
        if (node.Cluster is null)
        {
            var s = node.Settings;
            var names = new List<string>();
            foreach (var v in node.VolumeList()) if (v.Nsid != 0) names.Add(v.Name);
            return [new NodeResponse(s.NodeIndex, $"{s.AdvertisedAddress}:{s.Listen.Port}", $"{s.DiscoveryAdvertisedAddress}:{s.Discovery.Port}",
                node.State.ToString(), true, names)];
        }
        var view = await Member.ReadAsync();
        var list = new List<NodeResponse>();
        foreach (var (index, record) in view.Nodes)
        {
            var volumes = new List<string>();
            foreach (var v in view.Volumes)
                if (v.Record.Placement.Contains(index)) volumes.Add(v.Record.Primary == index ? v.Record.Name + "(primary)" : v.Record.Name);
            string state = !view.Alive.TryGetValue(index, out var alive) ? "Down"
                : view.Draining.Contains(index) && alive.State == nameof(Hosting.NodeState.Active) ? view.DrainState(index) : alive.State;
            list.Add(new NodeResponse(index, record.Io, record.Discovery, state, view.Leader == index, volumes));
        }
        return list;
    }

    private ClusterVolumeResponse ToResponse(ClusterView view, VolumeRecord v)
    {
        var states = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (int n in v.Placement) states[n.ToString(CultureInfo.InvariantCulture)] = view.ReplicaState(v.Id, n);
        bool local = false;
        foreach (var id in node.VolumeOps.StoredIds()) local |= id == v.Id;
        return new ClusterVolumeResponse(v.Id.ToString("D"), v.Name, v.SizeBytes, v.Nsid, v.Replicas, v.Placement, v.Primary, v.InSync,
            states, v.Generation, local, v.Hosts, Rebuilds(v, states), LastRebuilds(v));
    }

    private static string Kind(bool dirty) => dirty ? "dirty" : "full";

    /// <summary>Asked of the primary: how the last rebuild of each replica that this node ran ended (null elsewhere, or none).</summary>
    private SortedDictionary<string, RebuildResultResponse>? LastRebuilds(VolumeRecord v)
    {
        if (node.Replicator is not { } replicator || v.Primary != node.Settings.NodeIndex) return null;
        SortedDictionary<string, RebuildResultResponse>? results = null;
        foreach (var r in replicator.LastRebuilds())
            if (r.Volume == v.Id)
                (results ??= new(StringComparer.Ordinal))[r.Node.ToString(CultureInfo.InvariantCulture)] =
                    new RebuildResultResponse(Kind(r.Dirty), r.Resumed, r.ChunksTotal, r.ChunksCopied, r.BytesCopied, r.Joined);
        return results;
    }

    /// <summary>Asked of the primary: the replicas it rebuilds now, shown as "rebuilding" with their progress (null elsewhere).</summary>
    private SortedDictionary<string, RebuildResponse>? Rebuilds(VolumeRecord v, SortedDictionary<string, string> states)
    {
        if (node.Replicator is not { } replicator || v.Primary != node.Settings.NodeIndex) return null;
        SortedDictionary<string, RebuildResponse>? rebuilds = null;
        foreach (var r in replicator.Rebuilds())
        {
            if (r.Volume != v.Id || v.InSync.Contains(r.Node)) continue;
            string key = r.Node.ToString(CultureInfo.InvariantCulture);
            states[key] = "rebuilding";
            (rebuilds ??= new(StringComparer.Ordinal))[key] = new RebuildResponse(r.ChunksTotal, r.ChunksLeft, r.BytesCopied,
                Math.Round(r.MiBPerSecond, 1), Math.Round(r.EtaSeconds, 1), Kind(r.Dirty), r.Resumed);
        }
        return rebuilds;
    }
}
