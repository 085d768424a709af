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
internal sealed class VolumeReplication(Guid volumeId, Func<Guid, int, Task<bool>> dropInEtcd, ILogger logger)
{
    private readonly object _gate = new();
    /// <summary>Drops under way, by node; a successful one stays (the node never comes back without a rebuild).</summary>
    private readonly Dictionary<int, Drop> _drops = [];
    private volatile PeerLink[] _targets = [];

    public Guid VolumeId => volumeId;

    /// <summary>The cluster's NSID of the volume (the same on every node).</summary>
    public uint Nsid { get; set; }

    public PeerLink[] Targets => _targets;

    /// <summary>Control path: the secondaries to forward to; a node dropped (or being dropped) stays out.</summary>
    public void SetTargets(IReadOnlyList<PeerLink> links)
    {
        lock (_gate)
        {
            var next = new List<PeerLink>(links.Count);
            foreach (var l in links)
                if (!_drops.TryGetValue(l.Node, out var d) || !d.Succeeded) next.Add(l);
            // A node being dropped keeps getting writes (which wait for the drop) until the drop is in etcd.
            foreach (var l in _targets)
                if (_drops.TryGetValue(l.Node, out var d) && !d.Done && !next.Exists(n => n.Node == l.Node)) next.Add(l);
            _targets = [.. next];
        }
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
    /// the etcd drop unless one is under way; <paramref name="op"/> hears when it is over.
    /// </summary>
    public void AwaitDrop(int node, ReplicationOp? op)
    {
        lock (_gate)
        {
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
        try
        {
            ok = await dropInEtcd(volumeId, node).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            logger.LogError("volume {Id}: could not drop node {Node} from the in-sync set: {Error}", volumeId, node, e.Message);
            ok = false;
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
                var next = new List<PeerLink>();
                foreach (var l in _targets) if (l.Node != node) next.Add(l);
                _targets = [.. next];
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
