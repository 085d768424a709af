using System.Collections.Concurrent;
using Duroslight.Protocol.Subsystems;
using Duroslight.Reactor;
using Duroslight.Server.Cluster;
using Duroslight.Storage.Volumes;
using Microsoft.Extensions.Logging;

namespace Duroslight.Server.Replication;

/// <summary>
/// Replicated writes on this node (docs/ARCHITECTURE.md, "Replicated writes"): every cluster volume's channels are
/// <see cref="ReplicatedChannel"/>s; for the volumes this node is primary of, <see cref="PrepareAsync"/> connects a
/// <see cref="PeerLink"/> to every live in-sync secondary (one per peer node, shared by its volumes) and points the
/// volume's forwarding at them; a peer that is gone is dropped from the in-sync set through
/// <see cref="DropInEtcd"/>. Control path only (the cluster's reconcile loop); the shards read the results.
/// </summary>
public sealed class Replicator(ShardGroup shards, string backendNqn, string hostNqn, ILogger logger) : IAsyncDisposable
{
    /// <summary>A forwarded command that gets no completion for this long fails its peer queue (the peer is hung).</summary>
    public const int PeerTimeoutMs = 5000;
    private static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(5);
    private readonly ConcurrentDictionary<Guid, VolumeReplication> _volumes = new();
    private readonly Dictionary<int, PeerLink> _links = [];
    private readonly ConcurrentDictionary<int, PeerCounters[]> _counters = new();
    private readonly SemaphoreSlim _linksGate = new(1, 1);
    private readonly ConcurrentDictionary<(Guid Volume, int Node), Rebuild> _rebuilds = new();
    private readonly ConcurrentDictionary<(Guid Volume, int Node), RebuildResult> _lastRebuilds = new();

    /// <summary>The backend subsystem's NQN (<see cref="TargetOptions.BackendNqn"/>) for a cluster's default subsystem.</summary>
    public static string BackendNqnFor(string subsystemNqn) => subsystemNqn + ".replication";

    /// <summary>The host NQN a node connects to its peers' backend subsystems with.</summary>
    public static string NodeHostNqn(string cluster, int node) =>
        $"nqn.2026-11.io.duroslight:cluster:{cluster}:node-{node.ToString("D2", System.Globalization.CultureInfo.InvariantCulture)}";

    /// <summary>Removes a node from a volume's in-sync set in etcd; true once it is not in it.</summary>
    public Func<Guid, int, Task<bool>> DropInEtcd { get; set; } = static (_, _) => Task.FromResult(false);

    /// <summary>The volume table's channel wrapper: every cluster volume's channel forwards through its replication.</summary>
    public IVolumeChannel Wrap(IBlockVolume volume, StorageShard shard, IVolumeChannel local)
    {
        var replication = For(volume.Id);
        var channel = new ReplicatedChannel(local, replication, shards[shard.Index], volume.BlockSize);
        replication.Attach(channel, shards.Count, volume.PlacementId);
        return channel;
    }

    /// <summary>Adds a rebuilt node to a volume's in-sync set in etcd; true once it is in it.</summary>
    public Func<Guid, int, Task<bool>> JoinInEtcd { get; set; } = static (_, _) => Task.FromResult(false);

    /// <summary>Writes a volume's sync point for one replica in etcd (only while this node's lease holds); true once written.</summary>
    public Func<Guid, SyncPointRecord, Task<bool>> SaveSyncPointInEtcd { get; set; } = static (_, _) => Task.FromResult(false);

    /// <summary>This node's index (the sync points it writes name it).</summary>
    public int Self { get; set; } = -1;

    /// <summary>Rebuild copy rate, bytes of chunks per second (0: unlimited).</summary>
    public long RebuildBytesPerSecond { get; set; } = 64L << 20;

    /// <summary>In-sync secondaries this node forwards the volume's writes to (metrics, tests).</summary>
    public IReadOnlyList<int> ForwardingTo(Guid volume)
    {
        if (!_volumes.TryGetValue(volume, out var r)) return [];
        var nodes = new List<int>();
        foreach (var l in r.Targets) nodes.Add(l.Node);
        return nodes;
    }

    /// <summary>Peer links by node (metrics): connected or lost, and the forwarding counters of every shard.</summary>
    public IReadOnlyList<(int Node, bool Connected, PeerCounters[] Counters)> Links()
    {
        lock (_links)
        {
            var list = new List<(int, bool, PeerCounters[])>();
            foreach (var (node, link) in _links) list.Add((node, !link.IsLost, CountersOf(node)));
            return list;
        }
    }

    /// <summary>
    /// This node is <paramref name="v"/>'s primary: forward to every live in-sync secondary whose replica is open and
    /// follows this primary (its replica record names it). True when it may serve hosts: every in-sync secondary is
    /// connected or out of the in-sync set in etcd. One that cannot take writes (its node is not live, or its replica
    /// failed to open) is dropped from the set; until that drop is in etcd the primary does not serve, unless the node
    /// is a forwarding target already (then the writes wait for the drop), so no write is acknowledged while the set
    /// lists a replica that does not have it.
    /// </summary>
    public async Task<bool> PrepareAsync(VolumeRecord v, ClusterView view, int self)
    {
        var replication = For(v.Id);
        replication.Nsid = v.Nsid;
        TrackOutOfSync(v, view, self, replication);
        replication.KeepOrder = v.Placement.Count > 1;
        var links = new List<PeerLink>();
        bool ready = true;
        foreach (int node in v.InSync)
        {
            if (node == self) continue;
            if (replication.WasDropped(node))
            {
                // Out of the set, or on its way out: a drop under way holds the primary back unless writes go to the
                // node (they wait for the drop).
                ready &= !replication.DropUnderWay(node) || replication.IsTarget(node);
                continue;
            }
            string state = view.ReplicaState(v.Id, node);
            if (state is "down" or "failed")
            {
                replication.AwaitDrop(node, null);
                ready &= replication.IsTarget(node);
                continue;
            }
            // Only once the secondary follows this primary: before, it would refuse the forwards (a lagging view).
            var link = view.ForwardTarget(v.Id, node, self) is { } record ? await EnsureLinkAsync(node, record.Io).ConfigureAwait(false) : null;
            if (link is null) ready = false;
            else links.Add(link);
        }
        if (ready)
        {
            replication.SetTargets(links);
            await StartRebuildsAsync(v, view, self, replication).ConfigureAwait(false);
        }
        return ready;
    }

    /// <summary>
    /// Every view, on every node: the volume's size and its replicas' incarnations, so a node that becomes the primary
    /// knows what a replica that dies later was (its dirty map is relative to that).
    /// </summary>
    public void Observe(VolumeRecord v, ClusterView view)
    {
        var replicas = new List<(int, Guid)>();
        foreach (int node in v.Placement) replicas.Add((node, view.Incarnation(v.Id, node)));
        For(v.Id).Observe(v.SizeBytes, replicas);
    }

    /// <summary>
    /// Before this primary admits a change: every placed replica outside the in-sync set has a dirty-chunk track,
    /// loaded from its sync point in etcd (written by this node before a restart or by the previous primary), or a
    /// full one if there is none; a replica the view lists in sync (and not being dropped) has none.
    /// </summary>
    private static void TrackOutOfSync(VolumeRecord v, ClusterView view, int self, VolumeReplication replication)
    {
        replication.BecomePrimary(view.ReplicaFollows(v.Id, self) is var followed && followed != self ? followed : -1);
        // A replica no longer placed, or that a move takes off its node, is never rebuilt: nothing to record for it.
        foreach (var t in replication.Tracks)
            if (!v.Placement.Contains(t.Node) || view.MovingOut(v.Id, t.Node)) replication.RemoveTrack(t.Node);
        foreach (int node in v.Placement)
        {
            if (node == self || view.MovingOut(v.Id, node)) continue;
            if (!v.InSync.Contains(node)) replication.EnsureTrack(node, () => LoadTrack(v, view, node));
            else if (!replication.WasDropped(node) && !replication.IsRebuilding(node)) replication.RemoveTrack(node);
        }
    }

    /// <summary>The track a sync point in etcd describes; a full one when there is none or it does not decode (another size).</summary>
    private static DirtyTrack LoadTrack(VolumeRecord v, ClusterView view, int node)
    {
        var map = new DirtyMap(DirtyMap.ChunksOf(v.SizeBytes));
        if (view.SyncPoints.TryGetValue((v.Id, node), out var saved) && saved.Chunks == map.Chunks && TryDecode(saved.Map, map))
            return new DirtyTrack(node, map, saved.Incarnation, saved.Full, resumed: true);
        map.SetAll();
        return new DirtyTrack(node, map, Guid.Empty, full: true, resumed: false);
    }

    private static bool TryDecode(string base64, DirtyMap into)
    {
        var bytes = new byte[(base64.Length * 3 + 3) / 4];
        return Convert.TryFromBase64String(base64, bytes, out int length) && DirtyMapCodec.TryDecodeInto(bytes.AsSpan(0, length), into);
    }

    /// <summary>The sync point of <paramref name="track"/> as etcd keeps it.</summary>
    private Task<bool> SaveAsync(Guid volume, DirtyTrack track) =>
        SaveSyncPointInEtcd(volume, new SyncPointRecord(track.Node, track.Incarnation, track.Full, track.Map.Chunks,
            Convert.ToBase64String(DirtyMapCodec.Encode(track.Map)), Self));

    /// <summary>Saves the volume's changed sync points now (before this node hands the volume over); true once saved.</summary>
    public Task<bool> SaveSyncPointsAsync(Guid volume) => _volumes.TryGetValue(volume, out var r) ? r.SaveAsync() : Task.FromResult(true);

    /// <summary>This node is not (or no longer) the volume's primary: nothing to forward, no rebuild.</summary>
    public void Demote(Guid volume)
    {
        if (!_volumes.TryGetValue(volume, out var r)) return;
        StopRebuilds(r, static _ => true);
        r.RemoveAllTracks();
        r.KeepOrder = false;
        r.SetTargets([]);
    }

    /// <summary>Cancels the volume's rebuilds of the nodes <paramref name="which"/> picks: they get no more writes.</summary>
    private void StopRebuilds(VolumeReplication r, Func<int, bool> which)
    {
        foreach (var rebuild in _rebuilds.Values)
            if (rebuild.VolumeId == r.VolumeId && which(rebuild.Node))
            {
                rebuild.Cancel();
                r.StopRebuilding(rebuild.Node);
            }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var r in _volumes.Values) r.StopSaver();
        PeerLink[] links;
        lock (_links) links = [.. _links.Values];
        foreach (var link in links) await link.CloseAsync().ConfigureAwait(false);
    }

    /// <summary>Rebuilds under way on this node (metrics, `ctl volumes show`).</summary>
    public IReadOnlyList<RebuildProgress> Rebuilds()
    {
        var list = new List<RebuildProgress>();
        foreach (var r in _rebuilds.Values) list.Add(Progress(r));
        return list;
    }

    /// <summary>The last rebuild of each replica that ended on this node (metrics, `ctl volumes show`), joined or not.</summary>
    public IReadOnlyList<RebuildResult> LastRebuilds() => [.. _lastRebuilds.Values];

    /// <summary>The replica's rebuild under way here, else the last one that joined it here (a move reports its bytes after the join); null if none.</summary>
    public RebuildProgress? RebuildOf(Guid volume, int node)
    {
        if (_rebuilds.TryGetValue((volume, node), out var r)) return Progress(r);
        return _lastRebuilds.TryGetValue((volume, node), out var last) && last.Joined
            ? new RebuildProgress(volume, node, last.ChunksTotal, 0, last.BytesCopied, 0, 0, last.Dirty, last.Resumed)
            : null;
    }

    private static RebuildProgress Progress(Rebuild r)
    {
        var (rate, eta) = r.Pace();
        return new RebuildProgress(r.VolumeId, r.Node, r.ChunksTotal, r.ChunksLeft, r.BytesCopied, rate, eta, r.Dirty, r.Resumed);
    }

    /// <summary>
    /// Rebuilds every replica placed on a live node whose replica is open but that is outside the in-sync set (it
    /// missed writes, or is new or wiped: a move's new replica), unless one runs already; a failed one is tried again
    /// by a later pass.
    /// </summary>
    private async Task StartRebuildsAsync(VolumeRecord v, ClusterView view, int self, VolumeReplication replication)
    {
        // A node no longer placed (a cancelled or failed move took its new replica away) gets nothing more.
        StopRebuilds(replication, node => !v.Placement.Contains(node));
        foreach (int node in v.Placement)
        {
            // Still a target after a join until a view lists it in sync: an older view must not start it again. A
            // replica that a move takes off its node left the in-sync set for good: it is dropped, not rebuilt.
            if (node == self || v.InSync.Contains(node) || _rebuilds.ContainsKey((v.Id, node)) || replication.IsRebuilding(node)
                || view.MovingOut(v.Id, node)) continue;
            // Only once its replica follows this primary: before, it would refuse the forwards (a lagging view).
            if (view.ForwardTarget(v.Id, node, self) is not { } record) continue;
            var link = await EnsureLinkAsync(node, record.Io).ConfigureAwait(false);
            if (link is null || replication.TrackOf(node) is not { } track) continue;
            // The map says what the replica it was recorded against misses; any other (new, wiped, not known) gets every chunk.
            var incarnation = view.Incarnation(v.Id, node);
            if (track.Incarnation == Guid.Empty || track.Incarnation != incarnation) track.RestartFull(incarnation);
            var rebuild = new Rebuild(replication, link, track, v.SizeBytes, v.BlockSize, RebuildBytesPerSecond);
            if (!_rebuilds.TryAdd((v.Id, node), rebuild)) continue;
            _ = Task.Run(() => RunRebuildAsync(v.Name, rebuild));
        }
    }

    private async Task RunRebuildAsync(string name, Rebuild rebuild)
    {
        logger.LogInformation("volume {Name}: rebuilding node {Node} ({Chunks} chunks, {Kind}{Resumed}, {Rate} bytes/s)", name, rebuild.Node,
            rebuild.ChunksTotal, rebuild.Dirty ? "the chunks it missed" : "full copy", rebuild.Resumed ? ", from the sync point in etcd" : "", rebuild.BytesPerSecond);
        bool ok = false;
        try
        {
            ok = await rebuild.RunAsync(() => JoinAndRecordAsync(rebuild)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            logger.LogError("volume {Name}: rebuild of node {Node}: {Error}", name, rebuild.Node, e.Message);
            rebuild.Abandon();
        }
        if (ok) logger.LogInformation("volume {Name}: node {Node} rebuilt ({Bytes} bytes copied) and back in sync", name, rebuild.Node, rebuild.BytesCopied);
        else
        {
            logger.LogWarning("volume {Name}: rebuild of node {Node} stopped with {Left} chunks left; a later pass tries again", name, rebuild.Node, rebuild.ChunksLeft);
            await Task.Delay(1000).ConfigureAwait(false); // not a tight retry loop against a failing node
        }
        if (!ok) RecordLast(rebuild, joined: false);
        _rebuilds.TryRemove(new KeyValuePair<(Guid, int), Rebuild>((rebuild.VolumeId, rebuild.Node), rebuild));
    }

    /// <summary>
    /// Joins the node and records the result before the join's etcd write: a reader that sees the node in sync (the
    /// watch can deliver the join before this continuation runs) then always finds its last rebuild too.
    /// </summary>
    private async Task<bool> JoinAndRecordAsync(Rebuild rebuild)
    {
        RecordLast(rebuild, joined: true);
        if (await JoinInEtcd(rebuild.VolumeId, rebuild.Node).ConfigureAwait(false)) return true;
        RecordLast(rebuild, joined: false);
        return false;
    }

    private void RecordLast(Rebuild rebuild, bool joined) =>
        _lastRebuilds[(rebuild.VolumeId, rebuild.Node)] = new RebuildResult(rebuild.VolumeId, rebuild.Node, rebuild.ChunksTotal, rebuild.ChunksDone,
            rebuild.BytesCopied, rebuild.Dirty, rebuild.Resumed, joined);

    private PeerCounters[] CountersOf(int node) => _counters.GetOrAdd(node, _ =>
    {
        var counters = new PeerCounters[shards.Count];
        for (int i = 0; i < counters.Length; i++) counters[i] = new PeerCounters();
        return counters;
    });

    private VolumeReplication For(Guid id) => _volumes.GetOrAdd(id, i => new VolumeReplication(i, (v, n) => DropInEtcd(v, n), logger) { SaveSyncPoint = SaveAsync });

    /// <summary>The link to <paramref name="node"/>, connecting a new one if there is none or it was lost; null if it cannot connect now.</summary>
    private async Task<PeerLink?> EnsureLinkAsync(int node, string io)
    {
        await _linksGate.WaitAsync().ConfigureAwait(false);
        try
        {
            lock (_links)
                if (_links.TryGetValue(node, out var existing) && !existing.IsLost) return existing;
            int colon = io.LastIndexOf(':');
            string host = io[..colon].Trim('[', ']');
            int port = int.Parse(io.AsSpan(colon + 1), System.Globalization.CultureInfo.InvariantCulture);
            using var timeout = new CancellationTokenSource(ConnectTimeout);
            PeerLink link;
            try
            {
                link = await PeerLink.ConnectAsync(node, host, port, backendNqn, hostNqn, shards, CountersOf(node), PeerTimeoutMs, timeout.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                logger.LogWarning("replication link to node {Node} ({Address}): {Error}", node, io, e.Message);
                return null;
            }
            link.Lost = OnLinkLost;
            lock (_links) _links[node] = link;
            logger.LogInformation("replication link to node {Node} ({Address}): {Queues} queues", node, io, link.Queues.Length);
            return link;
        }
        finally
        {
            _linksGate.Release();
        }
    }

    /// <summary>A peer died, hung or failed a command: every volume forwarding to it drops it from its in-sync set.</summary>
    private void OnLinkLost(PeerLink link, string reason)
    {
        logger.LogWarning("replication link to node {Node} lost: {Reason}", link.Node, reason);
        foreach (var r in _volumes.Values)
            if (Array.IndexOf(r.Targets, link) >= 0) r.AwaitDrop(link.Node, null);
        _ = link.CloseAsync();
    }
}

/// <summary>
/// One rebuild under way: chunks to copy, chunks not copied yet, bytes sent, pace and seconds left (-1: not known yet);
/// Dirty: only the chunks the replica missed (else a full copy); Resumed: started from a sync point in etcd.
/// </summary>
public sealed record RebuildProgress(Guid Volume, int Node, long ChunksTotal, long ChunksLeft, long BytesCopied, double MiBPerSecond, double EtaSeconds,
    bool Dirty, bool Resumed);

/// <summary>A rebuild that ended: chunks it was to copy, chunks it copied, bytes sent, its kind, and whether the replica joined the in-sync set.</summary>
public sealed record RebuildResult(Guid Volume, int Node, long ChunksTotal, long ChunksCopied, long BytesCopied, bool Dirty, bool Resumed, bool Joined);
