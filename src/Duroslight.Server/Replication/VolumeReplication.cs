using Duroslight.Reactor;
using Duroslight.Storage.Volumes;
using Microsoft.Extensions.Logging;

namespace Duroslight.Server.Replication;

/// <summary>
/// Where one cluster volume's writes go besides the local replica: <see cref="Targets"/>, the links to its in-sync
/// secondaries while this node is its primary (empty otherwise), read by the shards without a lock and replaced
/// whole by the control path. A secondary that misses a write is dropped from the in-sync set in etcd
/// (<see cref="AwaitDrop"/>) before any write it missed completes, and only then leaves <see cref="Targets"/>: until
/// the drop is in etcd, writes keep waiting for it (and fail if it cannot be made), so no acknowledged write exists
/// only outside the in-sync set.
/// </summary>
internal sealed partial class VolumeReplication(Guid volumeId, Func<Guid, int, Task<bool>> dropInEtcd, ILogger logger)
{
    private readonly object _gate = new();
    /// <summary>Drops under way, by node; a successful one stays (the node never comes back without a rebuild).</summary>
    private readonly Dictionary<int, Drop> _drops = [];
    /// <summary>Nodes being rebuilt (forwarding targets outside the in-sync set), until a view lists them in sync.</summary>
    private readonly Dictionary<int, PeerLink> _rebuilding = [];
    /// <summary>One etcd change of the in-sync set at a time: a rebuild's join and a drop never pass each other.</summary>
    private readonly SemaphoreSlim _inSyncChanges = new(1, 1);
    private volatile PeerLink[] _targets = [];
    private volatile bool _keepOrder;
    private volatile ReplicatedChannel?[] _channels = [];
    private readonly Dictionary<Shard, OverlapGate<IGatedOp>> _gates = [];

    public Guid VolumeId => volumeId;

    /// <summary>The cluster's NSID of the volume (the same on every node).</summary>
    public uint Nsid { get; set; }

    public PeerLink[] Targets => _targets;

    /// <summary>
    /// Set while this node is the primary of a volume with other replicas: its changes go through the overlap gate even
    /// with no target, so a rebuild's chunk copy always finds every write to its chunk that is still in flight.
    /// </summary>
    public bool KeepOrder
    {
        set => _keepOrder = value;
    }

    /// <summary>Whether the channels order changes (<see cref="KeepOrder"/>, or writes are forwarded).</summary>
    public bool Ordered => _keepOrder || _targets.Length != 0;

    /// <summary>The volume's channel on each shard (index = shard), for a rebuild to copy each chunk on its owner.</summary>
    public ReplicatedChannel?[] Channels => _channels;

    /// <summary>What places the volume's chunks on shards (<see cref="IBlockVolume.PlacementId"/>).</summary>
    public Guid PlacementId { get; private set; }

    /// <summary>
    /// The volume's overlap gate on <paramref name="shard"/>: one per shard for the volume's life, so a change through a
    /// channel opened later (the volume table republished) still waits for one in flight through an earlier channel.
    /// </summary>
    public OverlapGate<IGatedOp> GateOf(Shard shard)
    {
        lock (_gate)
        {
            if (!_gates.TryGetValue(shard, out var gate)) _gates[shard] = gate = new OverlapGate<IGatedOp>();
            return gate;
        }
    }

    /// <summary>Control path: the volume table opened <paramref name="channel"/> for its shard.</summary>
    public void Attach(ReplicatedChannel channel, int shardCount, Guid placementId)
    {
        lock (_gate)
        {
            var channels = _channels.Length == shardCount ? (ReplicatedChannel?[])_channels.Clone() : new ReplicatedChannel?[shardCount];
            channels[channel.Shard.Index] = channel;
            PlacementId = placementId;
            _channels = channels;
        }
    }

    /// <summary>
    /// Control path: <paramref name="link"/>'s node gets every write from now on, outside the in-sync set (a rebuild).
    /// False while a drop of that node is under way. Its earlier drop is forgotten, so a failure drops it again.
    /// </summary>
    public bool StartRebuilding(PeerLink link)
    {
        lock (_gate)
        {
            if (_drops.TryGetValue(link.Node, out var d) && !d.Done) return false;
            _drops.Remove(link.Node);
            _rebuilding[link.Node] = link;
            _targets = [.. TargetsWithout(link.Node), link];
            return true;
        }
    }

    public bool IsRebuilding(int node)
    {
        lock (_gate) return _rebuilding.ContainsKey(node);
    }

    /// <summary>A rebuild gave up (or this node is no longer the primary): the node gets no more writes.</summary>
    public void StopRebuilding(int node)
    {
        lock (_gate)
        {
            if (!_rebuilding.Remove(node)) return;
            _targets = TargetsWithout(node);
        }
    }

    /// <summary>
    /// A rebuild copied every chunk: <paramref name="joinInEtcd"/> adds the node to the in-sync set, unless a write to
    /// it failed meanwhile (a drop is recorded or under way). Serialized with drops, so a drop that starts now waits
    /// for the join and then takes the node out again with a transaction; the node stays a target either way until
    /// a view lists it in sync (<see cref="SetTargets"/>) or it is dropped.
    /// </summary>
    public async Task<bool> TryJoinAsync(int node, Func<Task<bool>> joinInEtcd)
    {
        await _inSyncChanges.WaitAsync().ConfigureAwait(false);
        // No sync-point save beside the join: it deletes the node's sync point, which a save must not write back.
        await _saves.WaitAsync().ConfigureAwait(false);
        try
        {
            lock (_gate)
                if (!_rebuilding.ContainsKey(node) || _drops.ContainsKey(node)) return false;
            if (!await joinInEtcd().ConfigureAwait(false)) return false;
        }
        finally
        {
            _saves.Release();
            _inSyncChanges.Release();
        }
        RemoveTrack(node);
        return true;
    }

    /// <summary>Control path: the secondaries to forward to; a node dropped (or being dropped) stays out.</summary>
    public void SetTargets(IReadOnlyList<PeerLink> links)
    {
        lock (_gate)
        {
            var next = new List<PeerLink>(links.Count);
            foreach (var l in links)
                if (!_drops.TryGetValue(l.Node, out var d) || !d.Succeeded) next.Add(l);
            // A rebuilt node stays a target until a view lists it in sync (it is in links then), whatever older view came first.
            foreach (var (node, l) in _rebuilding)
                if (!next.Exists(n => n.Node == node)) next.Add(l);
            foreach (var l in links) _rebuilding.Remove(l.Node);
            // A node being dropped keeps getting writes (which wait for the drop) until the drop is in etcd.
            foreach (var l in _targets)
                if (_drops.TryGetValue(l.Node, out var d) && !d.Done && !next.Exists(n => n.Node == l.Node)) next.Add(l);
            _targets = [.. next];
        }
    }

    /// <summary>Under the lock: the forwarding targets less <paramref name="node"/>.</summary>
    private PeerLink[] TargetsWithout(int node)
    {
        var next = new List<PeerLink>(_targets.Length);
        foreach (var l in _targets) if (l.Node != node) next.Add(l);
        return [.. next];
    }

    /// <summary>Whether writes go to <paramref name="node"/> now (they then wait for its drop, if one is under way).</summary>
    public bool IsTarget(int node)
    {
        foreach (var l in _targets)
            if (l.Node == node) return true;
        return false;
    }

    /// <summary>Whether this node's drop of <paramref name="node"/> from the in-sync set is still waiting for etcd.</summary>
    public bool DropUnderWay(int node)
    {
        lock (_gate) return _drops.TryGetValue(node, out var d) && !d.Done;
    }

    /// <summary>
    /// Whether <paramref name="node"/> was dropped from the in-sync set by this node, or its drop is under way (an older
    /// view may still list it; until the drop is in etcd it stays a target, and writes wait for the drop).
    /// </summary>
    public bool WasDropped(int node)
    {
        lock (_gate) return _drops.TryGetValue(node, out var d) && (!d.Done || d.Succeeded);
    }

    /// <summary>
    /// Any thread: <paramref name="node"/> missed a write (or its link failed, <paramref name="op"/> null). Starts
    /// the etcd drop unless one is under way; <paramref name="op"/> hears when it is over. From here on the node has a
    /// dirty-chunk track (<see cref="MarkDirty"/>).
    /// </summary>
    public void AwaitDrop(int node, ReplicationOp? op)
    {
        lock (_gate)
        {
            TrackDropped(node); // before the op that missed the write marks its chunks in it
            if (!_drops.TryGetValue(node, out var drop) || (drop.Done && !drop.Succeeded))
            {
                _drops[node] = drop = new Drop();
                _ = Task.Run(() => RunAsync(node, drop));
            }
            if (!drop.Done)
            {
                if (op is not null) drop.Waiters.Add(op);
                return;
            }
        }
        op?.DropDone(succeeded: true);
    }

    private async Task RunAsync(int node, Drop drop)
    {
        bool ok;
        await _inSyncChanges.WaitAsync().ConfigureAwait(false);
        try
        {
            ok = await dropInEtcd(volumeId, node).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            logger.LogError("volume {Id}: could not drop node {Node} from the in-sync set: {Error}", volumeId, node, e.Message);
            ok = false;
        }
        finally
        {
            _inSyncChanges.Release();
        }
        List<ReplicationOp> waiters;
        lock (_gate)
        {
            drop.Done = true;
            drop.Succeeded = ok;
            waiters = [.. drop.Waiters];
            drop.Waiters.Clear();
            if (ok)
            {
                _rebuilding.Remove(node);
                _targets = TargetsWithout(node);
            }
        }
        if (!ok) logger.LogError("volume {Id}: node {Node} missed writes and is still in the in-sync set; those writes fail", volumeId, node);
        foreach (var op in waiters) op.DropDone(ok);
    }

    private sealed class Drop
    {
        public readonly List<ReplicationOp> Waiters = [];
        public bool Done;
        public bool Succeeded;
    }
}
