using System.Globalization;
using System.Text.Json;
using Etcdserverpb;

namespace Duroslight.Server.Cluster;

/// <summary>A volume record with the mod revision it was read at (the compare of the next change).</summary>
public sealed record VolumeEntry(VolumeRecord Record, long ModRevision);

/// <summary>A move record with the mod revision it was read at.</summary>
public sealed record MoveEntry(MoveRecord Record, long ModRevision);

/// <summary>
/// One consistent read of everything under /duroslight/CLUSTER/ (one range request, so one revision). Small: a few
/// keys per node and volume, so the node re-reads it whole after every watch event rather than patching a cache.
/// </summary>
public sealed class ClusterView
{
    public static readonly ClusterView Empty = new();

    public long Revision { get; private init; }
    public SortedDictionary<int, NodeRecord> Nodes { get; } = [];
    public SortedDictionary<int, AliveRecord> Alive { get; } = [];
    /// <summary>The leader's node index, -1 when there is none.</summary>
    public int Leader { get; private set; } = -1;
    public long LeaderLease { get; private set; }
    public List<VolumeEntry> Volumes { get; } = [];
    public HashSet<uint> UsedNsids { get; } = [];
    /// <summary>Host access lists set through the cluster, by subsystem pool, with their mod revisions.</summary>
    public SortedDictionary<int, (HostsRecord Record, long ModRevision)> HostLists { get; } = [];
    /// <summary>Opened replicas: volume ID -> node -> replica record.</summary>
    public Dictionary<Guid, SortedDictionary<int, ReplicaRecord>> Replicas { get; } = [];

    /// <summary>Sync points of replicas outside the in-sync set: (volume ID, node) -> record.</summary>
    public Dictionary<(Guid Volume, int Node), SyncPointRecord> SyncPoints { get; } = [];

    /// <summary>Nodes an operator drains (drain/NN): they hand their primaries over and get no new replica.</summary>
    public HashSet<int> Draining { get; } = [];

    /// <summary>Each volume's last move (moves/UUID), running or ended.</summary>
    public Dictionary<Guid, MoveEntry> Moves { get; } = [];

    public IReadOnlyCollection<int> LiveNodes => Alive.Keys;

    /// <summary>The volume's move under way, null when none runs.</summary>
    public MoveEntry? RunningMove(Guid volume) => Moves.TryGetValue(volume, out var m) && m.Record.Running ? m : null;

    /// <summary>Whether a running move takes the volume's replica off <paramref name="node"/> (it is never rebuilt then).</summary>
    public bool MovingOut(Guid volume, int node) => RunningMove(volume)?.Record.From == node;

    /// <summary>A draining node's state as `ctl nodes list` shows it: Draining while it is still a primary, then Drained.</summary>
    public string DrainState(int node)
    {
        foreach (var v in Volumes) if (v.Record.Primary == node) return "Draining";
        return "Drained";
    }

    public VolumeEntry? Find(string key)
    {
        foreach (var v in Volumes)
            if (v.Record.Name == key || v.Record.Id.ToString("D") == key.ToLowerInvariant()
                || key == $"nsid:{v.Record.Nsid.ToString(CultureInfo.InvariantCulture)}")
                return v;
        return null;
    }

    /// <summary>The volume <paramref name="key"/> names, or the operator's 404 saying how to name one.</summary>
    public VolumeEntry Require(string key) =>
        Find(key) ?? throw Control.ControlException.NotFound($"no cluster volume '{key}' (give a name, a volume ID or nsid:N)");

    public static ClusterView Parse(ClusterKeys keys, RangeResponse range)
    {
        var view = new ClusterView { Revision = range.Header.Revision };
        foreach (var kv in range.Kvs)
        {
            string key = kv.Key.ToStringUtf8();
            var value = kv.Value.Span;
            if (key.StartsWith(keys.NodesPrefix, StringComparison.Ordinal))
                Add(view.Nodes, JsonSerializer.Deserialize(value, ClusterJson.Default.NodeRecord), r => r.Index);
            else if (key.StartsWith(keys.AlivePrefix, StringComparison.Ordinal))
                Add(view.Alive, JsonSerializer.Deserialize(value, ClusterJson.Default.AliveRecord), r => r.Index);
            else if (key.StartsWith(keys.VolumesPrefix, StringComparison.Ordinal)
                && JsonSerializer.Deserialize(value, ClusterJson.Default.VolumeRecord) is { } v)
            {
                view.Volumes.Add(new VolumeEntry(v, kv.ModRevision));
                view.UsedNsids.Add(v.Nsid);
            }
            else if (key.StartsWith(keys.DrainPrefix, StringComparison.Ordinal)
                && int.TryParse(key.AsSpan(keys.DrainPrefix.Length), CultureInfo.InvariantCulture, out int drained))
                view.Draining.Add(drained);
            else if (key.StartsWith(keys.MovesPrefix, StringComparison.Ordinal)
                && JsonSerializer.Deserialize(value, ClusterJson.Default.MoveRecord) is { } move)
                view.Moves[move.Volume] = new MoveEntry(move, kv.ModRevision);
            else if (key.StartsWith(keys.NsidsPrefix, StringComparison.Ordinal)
                && uint.TryParse(key.AsSpan(keys.NsidsPrefix.Length), CultureInfo.InvariantCulture, out uint nsid))
                view.UsedNsids.Add(nsid);
            else if (key.StartsWith(keys.ReplicasPrefix, StringComparison.Ordinal)
                && Guid.TryParse(key.AsSpan(keys.ReplicasPrefix.Length, 36), out var id)
                && JsonSerializer.Deserialize(value, ClusterJson.Default.ReplicaRecord) is { } replica)
            {
                if (!view.Replicas.TryGetValue(id, out var byNode)) view.Replicas[id] = byNode = [];
                byNode[replica.Node] = replica;
            }
            else if (key.StartsWith(keys.SyncPointsPrefix, StringComparison.Ordinal)
                && Guid.TryParse(key.AsSpan(keys.SyncPointsPrefix.Length, 36), out var syncVolume)
                && JsonSerializer.Deserialize(value, ClusterJson.Default.SyncPointRecord) is { } syncPoint)
                view.SyncPoints[(syncVolume, syncPoint.Node)] = syncPoint;
            else if (key.StartsWith(keys.HostsPrefix, StringComparison.Ordinal)
                && JsonSerializer.Deserialize(value, ClusterJson.Default.HostsRecord) is { } hosts)
                view.HostLists[hosts.Pool] = (hosts, kv.ModRevision);
            else if (key == keys.Leader && int.TryParse(kv.Value.ToStringUtf8(), CultureInfo.InvariantCulture, out int leader))
            {
                view.Leader = leader;
                view.LeaderLease = kv.Lease;
            }
        }
        view.Volumes.Sort(static (a, b) => a.Record.Nsid.CompareTo(b.Record.Nsid));
        return view;
    }

    /// <summary>Replica state on a node: open (exposed), down (node not live), or placed (live, not opened yet).</summary>
    public string ReplicaState(Guid volume, int node) =>
        !Alive.ContainsKey(node) ? "down"
        : Replicas.TryGetValue(volume, out var byNode) && byNode.TryGetValue(node, out var r) ? r.State
        : "placed";

    /// <summary>
    /// The node's record when its replica of the volume is open and follows <paramref name="primary"/>, so it applies
    /// that primary's forwards (before, a lagging view of the node would refuse them); null otherwise.
    /// </summary>
    public NodeRecord? ForwardTarget(Guid volume, int node, int primary) =>
        ReplicaState(volume, node) == "open" && ReplicaFollows(volume, node) == primary && Nodes.TryGetValue(node, out var r) ? r : null;

    /// <summary>The incarnation of the node's replica as it published it (empty: none, or not known).</summary>
    public Guid Incarnation(Guid volume, int node) =>
        Replicas.TryGetValue(volume, out var byNode) && byNode.TryGetValue(node, out var r) ? r.Incarnation : Guid.Empty;

    /// <summary>The primary whose forwarded writes the node's replica applies (-1: none, or no record).</summary>
    public int ReplicaFollows(Guid volume, int node) =>
        Replicas.TryGetValue(volume, out var byNode) && byNode.TryGetValue(node, out var r) ? r.Primary : -1;

    private static void Add<T>(SortedDictionary<int, T> into, T? record, Func<T, int> index) where T : class
    {
        if (record is not null) into[index(record)] = record;
    }
}
