using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Duroslight.Protocol.Subsystems;
using Duroslight.Server.Cli;
using Duroslight.Server.Control;
using Duroslight.Server.Hosting;
using Etcdserverpb;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using static Duroslight.Server.Cluster.EtcdSession;

namespace Duroslight.Server.Cluster;

/// <summary>
/// This node's part in the cluster (docs/ARCHITECTURE.md, "Cluster"): it registers under a lease that expires when
/// the process dies, campaigns for the lease-guarded leader key, and re-reads the cluster state after every watch
/// event (and once a second as a safety net). Then the leader places unplaced volumes and re-chooses lost primaries
/// (<see cref="ClusterPlan"/>), and every node creates, opens or drops its local replicas to match the placement.
/// Every write is a transaction with a compare (absent key, mod revision, or the writer's own lease), so two nodes
/// never overwrite each other. The loops run on the thread pool, never on the reactor's shards.
/// </summary>
public sealed partial class ClusterMember : IAsyncDisposable
{
    private static readonly TimeSpan Resync = TimeSpan.FromSeconds(1);
    /// <summary>How long a graceful leave tries to revoke its lease before leaving it to expire.</summary>
    private static readonly TimeSpan RevokeTimeout = TimeSpan.FromSeconds(2);
    private readonly ServeSettings _settings;
    private readonly NodeVolumes _volumes;
    private readonly ILogger _logger;
    private readonly EtcdSession _etcd;
    private readonly CancellationTokenSource _stop = new();
    private readonly SemaphoreSlim _changed = new(0);
    /// <summary>Replica keys this node wrote under its current lease.</summary>
    private readonly HashSet<Guid> _published = [];
    private readonly List<Task> _loops = [];
    private long _lease;
    private volatile NodeState _state = NodeState.Activating;
    private volatile ClusterView _view = ClusterView.Empty;

    private readonly Replication.Replicator? _replicator;
    private readonly LeaseFence _fence;
    /// <summary>Guards the fence's inputs: the current lease's last renewal and whether a view confirmed it.</summary>
    private readonly object _fenceGate = new();
    private long _renewedAt;
    private long _renewedTtl;
    private long _fenceLease;

    internal ClusterMember(ServeSettings settings, NodeVolumes volumes, ILogger logger, LeaseFence fence, Replication.Replicator? replicator = null)
    {
        _replicator = replicator;
        _fence = fence;
        _fence.Close(); // nothing is served as a primary before a view read under this node's lease confirms it
        _settings = settings;
        _volumes = volumes;
        _logger = logger;
        _etcd = new EtcdSession(settings.EtcdEndpoints);
        Keys = new ClusterKeys(settings.ClusterId);
    }

    public ClusterKeys Keys { get; }
    public int Index => _settings.NodeIndex;
    /// <summary>The last state read from etcd.</summary>
    public ClusterView View => _view;
    public bool IsLeader => _view.Leader == Index && _view.LeaderLease == _lease;

    /// <summary>Called after every read of the cluster state, once the local replicas match it (ANA states follow it).</summary>
    public Action<ClusterView>? ViewApplied { get; init; }

    /// <summary>Called when the lease fence went down or came back up (the ANA log page changed: notify the hosts).</summary>
    public Action<bool>? FenceChanged { get; init; }

    /// <summary>
    /// Registers the node (waiting out the lease of a previous incarnation with the same index, which a SIGKILLed
    /// node leaves behind for up to its TTL), applies the cluster state once, then starts the loops.
    /// </summary>
    public async Task JoinAsync(string ioAddress, string discoveryAddress)
    {
        try
        {
            await RegisterAsync(new NodeRecord(Index, ioAddress, discoveryAddress, _settings.ControlSocketPath)).ConfigureAwait(false);
            await ReconcileAsync().ConfigureAwait(false);
        }
        catch (RpcException e)
        {
            throw new InvalidOperationException($"cannot join cluster '{_settings.ClusterId}' through etcd {_etcd.Endpoint}: {e.Status.Detail}", e);
        }
        _loops.Add(Task.Run(KeepAliveLoopAsync));
        _loops.Add(Task.Run(WatchLoopAsync));
        _loops.Add(Task.Run(ReconcileLoopAsync));
        _loops.Add(Task.Run(FenceWatchLoopAsync));
        _logger.LogInformation("joined cluster {Cluster} as node {Index} (etcd {Endpoint}, lease {Lease:x})",
            _settings.ClusterId, Index, _etcd.Endpoint, _lease);
    }

    /// <summary>The node's lifecycle state, published in its alive record.</summary>
    public void SetState(NodeState state)
    {
        _state = state;
        Signal();
    }

    /// <summary>
    /// `ctl volumes create` on any node: the record goes in with an NSID that no other volume has and a name no other
    /// volume has (both as keys compared absent in the same transaction); the leader places it; this call waits for
    /// the placement and for every in-sync replica to be open (the primary's only once it forwards to every in-sync
    /// secondary; up to 20 s) and returns the record as it stands.
    /// </summary>
    public async Task<VolumeEntry> CreateVolumeAsync(string name, long sizeBytes, int replicas, IReadOnlyList<string>? hosts)
    {
        if (replicas is < 1 or > 3) throw ControlException.BadRequest($"replicas: {replicas} is not 1..3");
        if (name.Length > 128 || name.Contains('/')) throw ControlException.BadRequest($"'{name}' is not a volume name (at most 128 characters, no '/')");
        VolumeRecord? record = null;
        for (int attempt = 0; record is null; attempt++)
        {
            var view = await ReadAsync().ConfigureAwait(false);
            if (view.Find(name) is not null) throw ControlException.Conflict($"a volume named '{name}' exists in cluster {_settings.ClusterId}");
            if (replicas > view.LiveNodes.Count)
                throw ControlException.Conflict($"{replicas} replicas need {replicas} live nodes; {view.LiveNodes.Count} are live");
            uint nsid = 1;
            while (view.UsedNsids.Contains(nsid)) nsid++;
            if (nsid > Protocol.Subsystems.Target.MaxNamespaces) throw ControlException.Conflict("every namespace ID of the cluster is in use");
            var candidate = new VolumeRecord(Guid.NewGuid(), name, sizeBytes, NodeVolumes.BlockSize, nsid, replicas, [], -1, [], 1, hosts);
            var txn = new TxnRequest();
            txn.Compare.Add(Absent(Keys.VolumeName(name)));
            txn.Compare.Add(Absent(Keys.Nsid(nsid)));
            txn.Success.Add(Put(Keys.Volume(candidate.Id), Json(candidate)));
            txn.Success.Add(Put(Keys.VolumeName(name), candidate.Id.ToString("D")));
            txn.Success.Add(Put(Keys.Nsid(nsid), candidate.Id.ToString("D")));
            if ((await _etcd.TxnAsync(txn).ConfigureAwait(false)).Succeeded) record = candidate;
            else if (attempt == 10) throw ControlException.Conflict("the cluster state kept changing; try again");
        }
        _logger.LogInformation("cluster volume {Name} {Id} nsid {Nsid} created ({Replicas} replicas)", name, record.Id, record.Nsid, replicas);
        Signal();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (true)
        {
            var view = await ReadAsync().ConfigureAwait(false);
            var entry = view.Find(record.Id.ToString("D"))!;
            // Every in-sync replica open: a replica that failed to open is dropped from the set, not waited for.
            bool open = entry.Record.Placement.Count > 0;
            foreach (int n in entry.Record.InSync) open &= view.ReplicaState(record.Id, n) == "open";
            if ((entry.Record.Primary >= 0 && open) || DateTime.UtcNow > deadline) return entry;
            await Task.Delay(100).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The primary's half of replicated writes: <paramref name="node"/> missed a write (or its link is gone), so it
    /// leaves the volume's in-sync set before that write is acknowledged. A transaction compared on the record's mod
    /// revision, retried on conflict for up to 10 s; only while this node is the primary. True once the node is not
    /// in the set.
    /// </summary>
    public Task<bool> DropFromInSyncAsync(Guid id, int node) => ChangeInSyncAsync(id, node, join: false);

    /// <summary>
    /// The primary's end of a rebuild: <paramref name="node"/> holds every chunk and gets every write, so it joins the
    /// volume's in-sync set (generation bump), by the same transaction as a drop; only while the node is still placed
    /// there. True once it is in.
    /// </summary>
    public Task<bool> JoinInSyncAsync(Guid id, int node) => ChangeInSyncAsync(id, node, join: true);

    /// <summary>
    /// Adds <paramref name="node"/> to the volume's in-sync set or removes it, with a generation bump: a transaction
    /// compared on the record's mod revision, retried on conflict for up to 10 s, only while this node is the primary
    /// (and, to join, the node is placed). True once the set is as asked.
    /// </summary>
    private async Task<bool> ChangeInSyncAsync(Guid id, int node, bool join)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            try
            {
                var entry = ClusterView.Parse(Keys, await _etcd.RangeAsync(Keys.Volume(id)).ConfigureAwait(false)).Find(id.ToString("D"));
                if (entry is null || entry.Record.Primary != Index || (join && !entry.Record.Placement.Contains(node))) return false;
                var r = entry.Record;
                if (r.InSync.Contains(node) == join) return true;
                var next = r with { InSync = join ? [.. r.InSync, node] : [.. r.InSync.Where(n => n != node)], Generation = r.Generation + 1 };
                var txn = new TxnRequest();
                txn.Compare.Add(ModRevisionIs(Keys.Volume(id), entry.ModRevision));
                txn.Success.Add(Put(Keys.Volume(id), Json(next)));
                if (join) txn.Success.Add(EtcdSession.Delete(Keys.SyncPoint(id, node))); // in sync: nothing left to copy
                if ((await _etcd.TxnAsync(txn).ConfigureAwait(false)).Succeeded)
                {
                    if (join)
                        _logger.LogInformation("volume {Name}: node {Node} rebuilt, back in the in-sync set [{InSync}] (generation {Generation})",
                            r.Name, node, string.Join(',', next.InSync), next.Generation);
                    else
                        _logger.LogWarning("volume {Name}: node {Node} dropped from the in-sync set [{InSync}] (generation {Generation})",
                            r.Name, node, string.Join(',', next.InSync), next.Generation);
                    Signal();
                    return true;
                }
            }
            catch (RpcException e)
            {
                _logger.LogWarning("volume {Id}: {Change} node {Node} the in-sync set: etcd {Error}", id, join ? "adding to" : "dropping from", node, e.Status.Detail);
            }
            if (DateTime.UtcNow > deadline) return false;
            await Task.Delay(100).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The primary saves what a replica outside the in-sync set misses (docs/ARCHITECTURE.md, "Dirty-chunk maps and
    /// sync points"): one put, compared on this node's alive key holding its current lease, so a primary whose lease
    /// expired (a successor may be promoted) never overwrites its successor's sync point. True once written.
    /// </summary>
    public async Task<bool> SaveSyncPointAsync(Guid id, SyncPointRecord record)
    {
        var txn = new TxnRequest();
        txn.Compare.Add(LeaseIs(Keys.Alive(Index), _lease));
        txn.Success.Add(Put(Keys.SyncPoint(id, record.Node), JsonSerializer.Serialize(record, ClusterJson.Default.SyncPointRecord)));
        try
        {
            return (await _etcd.TxnAsync(txn).ConfigureAwait(false)).Succeeded;
        }
        catch (RpcException e)
        {
            _logger.LogWarning("volume {Id}: sync point of node {Node}: etcd {Error}", id, record.Node, e.Status.Detail);
            return false;
        }
    }

    /// <summary>
    /// A cluster volume's host list (attach, detach, hosts from any node): written over the record of the read it was
    /// computed from (409 if anything changed the volume meanwhile); every node applies it to its replica.
    /// </summary>
    public async Task<VolumeRecord> SetVolumeHostsAsync(string key, Func<VolumeRecord, IReadOnlyList<string>?> hostsOf)
    {
        var view = await ReadAsync().ConfigureAwait(false);
        var entry = view.Require(key);
        var next = entry.Record with { Hosts = hostsOf(entry.Record), Generation = entry.Record.Generation + 1 };
        var txn = new TxnRequest();
        txn.Compare.Add(ModRevisionIs(Keys.Volume(next.Id), entry.ModRevision));
        txn.Success.Add(Put(Keys.Volume(next.Id), Json(next)));
        bool written;
        try
        {
            written = (await _etcd.TxnAsync(txn).ConfigureAwait(false)).Succeeded;
        }
        catch (RpcException e)
        {
            throw new ControlException(503, $"etcd {_etcd.Endpoint} unavailable: {e.Status.Detail}");
        }
        if (!written) throw ControlException.Conflict($"cluster volume '{key}' changed meanwhile; try again");
        _logger.LogInformation("hosts of cluster volume {Name}: {Hosts}", next.Name, next.Hosts is null ? "any" : string.Join(",", next.Hosts));
        Signal();
        return next;
    }

    /// <summary>The etcd revision of this node's last host-list change: a view older than it must not undo it locally.</summary>
    public long HostListsWrittenAt { get; private set; }

    /// <summary>
    /// Replaces host lists for the whole cluster in one transaction; each key is compared with the revision of
    /// <paramref name="basis"/>, the read the new lists were computed from, so a concurrent change on another node is
    /// refused (409) rather than overwritten.
    /// </summary>
    public async Task SetHostListsAsync(ClusterView basis, IReadOnlyList<HostsRecord> lists)
    {
        var txn = new TxnRequest();
        foreach (var r in lists)
        {
            txn.Compare.Add(basis.HostLists.TryGetValue(r.Pool, out var current) ? ModRevisionIs(Keys.Hosts(r.Pool), current.ModRevision) : Absent(Keys.Hosts(r.Pool)));
            txn.Success.Add(Put(Keys.Hosts(r.Pool), JsonSerializer.Serialize(r, ClusterJson.Default.HostsRecord)));
        }
        TxnResponse response;
        try
        {
            response = await _etcd.TxnAsync(txn).ConfigureAwait(false);
        }
        catch (RpcException e)
        {
            throw new ControlException(503, $"etcd {_etcd.Endpoint} unavailable: {e.Status.Detail}");
        }
        if (!response.Succeeded) throw ControlException.Conflict("the cluster's host lists changed meanwhile; try again");
        HostListsWrittenAt = response.Header.Revision;
        Signal();
    }

    /// <summary>A fresh read (the control API's listings must not be a watch event behind).</summary>
    public async Task<ClusterView> ReadAsync()
    {
        try
        {
            return ClusterView.Parse(Keys, await _etcd.RangeAsync(Keys.Root).ConfigureAwait(false));
        }
        catch (RpcException e)
        {
            throw new ControlException(503, $"etcd {_etcd.Endpoint} unavailable: {e.Status.Detail}");
        }
    }

    /// <summary>
    /// Graceful leave: stop the loops and revoke the lease, so the node shows down and leadership moves at once. With
    /// etcd unreachable it neither throws nor waits long: the lease then expires by itself.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        foreach (var loop in _loops)
        {
            try
            {
                await loop.ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException || e is RpcException { StatusCode: StatusCode.Cancelled })
            {
                // Stopping.
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // A loop cancelled while its call to an unreachable etcd was failing: nothing left to do for it.
                _logger.LogDebug("cluster loop ended with {Error}", e.Message);
            }
        }
        try
        {
            using var revoke = new CancellationTokenSource(RevokeTimeout);
            if (_lease != 0) await _etcd.RevokeLeaseAsync(_lease, revoke.Token).ConfigureAwait(false);
        }
        catch (RpcException e)
        {
            _logger.LogWarning("could not revoke the cluster lease (it expires in {Ttl} s): {Error}", _settings.LeaseTtlSeconds, e.Status.Detail);
        }
        _etcd.Dispose();
        _stop.Dispose();
    }

    private void Signal()
    {
        if (_changed.CurrentCount == 0) _changed.Release();
    }

    private async Task RegisterAsync(NodeRecord node)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(2 * _settings.LeaseTtlSeconds + 5);
        while (true)
        {
            // A fresh lease per attempt: nothing renews it while a previous run's key is waited out, so a lease from
            // before the wait would expire with that key and the put would fail (a node restarted within its TTL).
            await GrantAsync(CancellationToken.None).ConfigureAwait(false);
            var txn = new TxnRequest();
            txn.Compare.Add(Absent(Keys.Alive(Index)));
            txn.Success.Add(Put(Keys.Alive(Index), AliveJson(), _lease));
            txn.Success.Add(Put(Keys.Node(Index), JsonSerializer.Serialize(node, ClusterJson.Default.NodeRecord)));
            if ((await _etcd.TxnAsync(txn).ConfigureAwait(false)).Succeeded) return;
            if (DateTime.UtcNow > deadline)
                throw new InvalidOperationException($"node index {Index} is live in cluster '{_settings.ClusterId}' (another node has this index; give each node its own --node-index)");
            _logger.LogInformation("node index {Index} is still live in etcd (a previous run's lease?); waiting for it to expire", Index);
            await Task.Delay(1000).ConfigureAwait(false);
        }
    }

    private string AliveJson() => JsonSerializer.Serialize(new AliveRecord(Index, _state.ToString(), _lease, Environment.ProcessId), ClusterJson.Default.AliveRecord);

    private static string Json(VolumeRecord v) => JsonSerializer.Serialize(v, ClusterJson.Default.VolumeRecord);

    private async Task KeepAliveLoopAsync()
    {
        var ct = _stop.Token;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await _etcd.KeepAliveAsync(_lease, _settings.LeaseTtlSeconds, Renewed, ct).ConfigureAwait(false);
                // The lease expired under us (a long stall): take a new one and publish everything again.
                _fence.Close();
                _logger.LogWarning("cluster lease {Lease:x} expired; fenced, registering again", _lease);
                await GrantAsync(ct).ConfigureAwait(false);
                lock (_published) _published.Clear();
                Signal();
            }
            catch (RpcException e) when (!ct.IsCancellationRequested)
            {
                _logger.LogWarning("etcd keep-alive: {Error}", e.Status.Detail);
                await Task.Delay(500, ct).ConfigureAwait(false);
            }
        }
    }

    /// <summary>A new lease: the fence stays down until a view read under it confirms this node's roles.</summary>
    private async Task GrantAsync(CancellationToken ct)
    {
        long sent = Stopwatch.GetTimestamp();
        long lease = await _etcd.GrantLeaseAsync(_settings.LeaseTtlSeconds, ct).ConfigureAwait(false);
        lock (_fenceGate)
        {
            _lease = lease;
            _renewedAt = sent;
            _renewedTtl = _settings.LeaseTtlSeconds;
        }
    }

    /// <summary>
    /// The fence's deadline: the renewal's send time + 5/6 of its TTL. etcd expires the lease no earlier than TTL after
    /// it received the renewal; the sixth left covers clock-rate differences and the time an admitted write takes.
    /// </summary>
    private static long FenceDeadline(long sent, long ttlSeconds) => sent + ttlSeconds * Stopwatch.Frequency * 5 / 6;

    /// <summary>Keep-alive: the lease is good for another TTL from <paramref name="sent"/>; the fence moves if this lease was confirmed.</summary>
    private void Renewed(long sent, long ttl)
    {
        lock (_fenceGate)
        {
            _renewedAt = sent;
            _renewedTtl = Math.Min(ttl, _settings.LeaseTtlSeconds);
            if (_fenceLease == _lease) _fence.HoldUntil(FenceDeadline(_renewedAt, _renewedTtl));
        }
    }

    /// <summary>
    /// After a view was applied: if it shows this node's alive key under its current lease, it was read after that
    /// key was written, so it contains every promotion the leader made while the key was absent (the leader's
    /// transaction compares it absent). The node's roles in it are current: the fence may rise for this lease.
    /// </summary>
    private void ConfirmFence(ClusterView view)
    {
        if (!view.Alive.TryGetValue(Index, out var alive)) return;
        lock (_fenceGate)
        {
            if (alive.Lease != _lease || _fenceLease == _lease) return;
            _fenceLease = _lease;
            _fence.HoldUntil(FenceDeadline(_renewedAt, _renewedTtl));
        }
    }

    /// <summary>Reports the fence going down or up (polled: the fence is a deadline, nothing fires when it passes).</summary>
    private async Task FenceWatchLoopAsync()
    {
        var ct = _stop.Token;
        bool held = false;
        while (!ct.IsCancellationRequested)
        {
            await Task.Delay(100, ct).ConfigureAwait(false);
            bool holds = _fence.Holds;
            if (holds == held) continue;
            held = holds;
            if (holds) _logger.LogInformation("lease fence up: this node's primaries may serve");
            else _logger.LogWarning("lease fence down: no lease renewal for 5/6 of the TTL; primaries answer ANA inaccessible");
            FenceChanged?.Invoke(holds);
        }
    }

    private async Task WatchLoopAsync()
    {
        var ct = _stop.Token;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await _etcd.WatchAsync(Keys.Root, _view.Revision, Signal, ct).ConfigureAwait(false);
            }
            catch (RpcException e) when (!ct.IsCancellationRequested)
            {
                _logger.LogDebug("etcd watch: {Error}", e.Status.Detail);
            }
            Signal();
            await Task.Delay(500, ct).ConfigureAwait(false);
        }
    }

    private async Task ReconcileLoopAsync()
    {
        var ct = _stop.Token;
        while (!ct.IsCancellationRequested)
        {
            await _changed.WaitAsync(Resync, ct).ConfigureAwait(false);
            try
            {
                await ReconcileAsync().ConfigureAwait(false);
            }
            catch (RpcException e) when (!ct.IsCancellationRequested)
            {
                _logger.LogWarning("cluster state: etcd {Endpoint}: {Error}", _etcd.Endpoint, e.Status.Detail);
            }
            catch (Exception e) when (!ct.IsCancellationRequested && e is not OutOfMemoryException)
            {
                // Nothing a pass meets (a record this version cannot read, a local failure) may stop the loop: a node
                // whose loop died would stay Active in etcd and never apply the cluster's state again. The next pass retries.
                _logger.LogError("cluster state: {Error}", e.Message);
            }
        }
    }

    /// <summary>One pass: read, publish this node's state, lead if it can, apply the placement locally.</summary>
    private async Task ReconcileAsync()
    {
        var view = ClusterView.Parse(Keys, await _etcd.RangeAsync(Keys.Root).ConfigureAwait(false));
        _view = view;
        bool again = await PublishAliveAsync(view).ConfigureAwait(false);
        again |= await CampaignAsync(view).ConfigureAwait(false);
        if (IsLeader) again |= await LeadAsync(view).ConfigureAwait(false);
        await ApplyLocalAsync(view).ConfigureAwait(false);
        ConfirmFence(view);
        ViewApplied?.Invoke(view);
        if (again) Signal();
    }

    private async Task<bool> PublishAliveAsync(ClusterView view)
    {
        view.Alive.TryGetValue(Index, out var alive);
        if (alive is not null && (alive.Lease != _lease || alive.State == _state.ToString())) return false;
        // Only over an absent key or our own (same lease): never over another process that holds the index.
        var txn = new TxnRequest();
        txn.Compare.Add(alive is null ? Absent(Keys.Alive(Index)) : LeaseIs(Keys.Alive(Index), _lease));
        txn.Success.Add(Put(Keys.Alive(Index), AliveJson(), _lease));
        return (await _etcd.TxnAsync(txn).ConfigureAwait(false)).Succeeded;
    }

    /// <summary>The leader key is bound to its holder's lease: it goes when the leader dies or leaves; then the first node to create it leads.</summary>
    private async Task<bool> CampaignAsync(ClusterView view)
    {
        if (view.Leader >= 0) return false;
        var txn = new TxnRequest();
        txn.Compare.Add(Absent(Keys.Leader));
        txn.Success.Add(Put(Keys.Leader, Index.ToString(CultureInfo.InvariantCulture), _lease));
        bool won = (await _etcd.TxnAsync(txn).ConfigureAwait(false)).Succeeded;
        if (won) _logger.LogInformation("node {Index} is the cluster leader", Index);
        return won;
    }

    /// <summary>The leader's pass: each changed record is written only if nobody changed it since this read, and only while this node still holds the leader key.</summary>
    private async Task<bool> LeadAsync(ClusterView view)
    {
        var records = new List<VolumeRecord>(view.Volumes.Count);
        foreach (var v in view.Volumes) records.Add(v.Record);
        bool wrote = false;
        foreach (var next in ClusterPlan.Decide(records, view.LiveNodes, view.Draining))
        {
            var current = view.Find(next.Id.ToString("D"))!;
            var txn = new TxnRequest();
            txn.Compare.Add(ModRevisionIs(Keys.Volume(next.Id), current.ModRevision));
            txn.Compare.Add(LeaseIs(Keys.Leader, _lease));
            // A new primary only once the old one's lease expired: by then its fence is down (it serves nothing). A
            // primary handed over by a drain has released it (-1) itself, after it stopped serving: no compare needed.
            int old = current.Record.Primary;
            if (old >= 0 && next.Primary != old) txn.Compare.Add(Absent(Keys.Alive(old)));
            txn.Success.Add(Put(Keys.Volume(next.Id), Json(next)));
            bool ok = (await _etcd.TxnAsync(txn).ConfigureAwait(false)).Succeeded;
            wrote |= ok;
            if (ok) _logger.LogInformation("volume {Name}: placement [{Placement}] primary {Primary} generation {Generation}",
                next.Name, string.Join(',', next.Placement), next.Primary, next.Generation);
        }
        return wrote;
    }

    /// <summary>
    /// This node is drained and primary of <paramref name="v"/>, and a live in-sync replica on a node not drained can
    /// take over (else it stays primary: a drain never makes a volume unavailable).
    /// </summary>
    private bool HandsOver(VolumeRecord v, ClusterView view) =>
        v.Primary == Index && view.Draining.Contains(Index) && ClusterPlan.HasSuccessor(v, view.LiveNodes, view.Draining);

    /// <summary>
    /// The planned handover of a primary (a drain, or a move of the primary's replica), which cannot wait for a lease
    /// to expire. The namespace turns inaccessible (AEN; new commands get the path status) and every write admitted
    /// before is finished, forwards included; only then the record says the node released the primary
    /// (<paramref name="release"/>: Primary -1, generation + 1, compared on the mod revision read before the quiesce,
    /// with whatever <paramref name="alsoIn"/> adds to the transaction), and the leader may choose another. A conflict
    /// (an in-sync drop meanwhile) leaves the path inaccessible and the next pass tries again.
    /// </summary>
    private async Task HandOverAsync(VolumeEntry entry, Func<VolumeRecord, VolumeRecord> release, Action<TxnRequest>? alsoIn, string why)
    {
        var v = entry.Record;
        await _volumes.QuiesceReplicaAsync(v.Id).ConfigureAwait(false);
        // The next primary resumes from the sync points: they get the last rebuild progress first.
        if (_replicator is not null) await _replicator.SaveSyncPointsAsync(v.Id).ConfigureAwait(false);
        var txn = VolumeTxn(entry, release(v));
        alsoIn?.Invoke(txn);
        if (!(await _etcd.TxnAsync(txn).ConfigureAwait(false)).Succeeded) return;
        _replicator?.Demote(v.Id);
        _logger.LogInformation("volume {Name}: primary released {Why} (generation {Generation})", v.Name, why, v.Generation + 1);
        Signal();
    }

    /// <summary>
    /// `ctl nodes drain N` / `undrain N` on any node: sets or deletes drain/NN. The drained node hands its primaries
    /// over (<see cref="HandOverAsync"/>) and the leader places nothing new on it; its replicas stay secondaries.
    /// </summary>
    public async Task SetDrainAsync(int node, bool drain)
    {
        var view = await ReadAsync().ConfigureAwait(false);
        if (!view.Nodes.ContainsKey(node)) throw ControlException.NotFound($"no node {node} in cluster {_settings.ClusterId}");
        try
        {
            if (drain) await _etcd.TxnAsync(new TxnRequest { Success = { Put(Keys.Drain(node), "1") } }).ConfigureAwait(false);
            else await _etcd.DeleteAsync(Keys.Drain(node)).ConfigureAwait(false);
        }
        catch (RpcException e)
        {
            throw new ControlException(503, $"etcd {_etcd.Endpoint} unavailable: {e.Status.Detail}");
        }
        _logger.LogInformation("node {Node} {Action}", node, drain ? "drained" : "no longer drained");
        Signal();
    }

    /// <summary>Creates/opens the replicas placed here, drops the ones the cluster placed elsewhere, and says which are open.</summary>
    private async Task ApplyLocalAsync(ClusterView view)
    {
        var known = new HashSet<Guid>();
        foreach (var entry in view.Volumes)
        {
            var v = entry.Record;
            known.Add(v.Id);
            if (!v.Placement.Contains(Index)) continue;
            if (HandsOver(v, view))
            {
                await HandOverAsync(entry, r => r with { Primary = -1 }, null, "for the drain").ConfigureAwait(false);
                continue;
            }
            _replicator?.Observe(v, view);
            if (v.Primary == Index && view.RunningMove(v.Id) is { } move && await DriveMoveAsync(entry, move, view).ConfigureAwait(false)) continue;
            // The primary serves hosts only once it forwards to every live in-sync secondary; until then it is "connecting".
            bool serving = false;
            Protocol.Reservations.ReservationState? reservation = null;
            if (v.Primary == Index)
            {
                serving = _replicator is null || await _replicator.PrepareAsync(v, view, Index).ConfigureAwait(false);
                if (serving) reservation = await ReservationToInstallAsync(v).ConfigureAwait(false);
            }
            else
            {
                _replicator?.Demote(v.Id);
                ReservationTermEnded(v.Id);
            }
            string state = v.Primary == Index && !serving ? "connecting" : "open";
            try
            {
                if (!_volumes.EnsureReplica(v.Id, v.Name, v.SizeBytes, v.Nsid, serving ? AnaState.Optimized : AnaState.Inaccessible,
                    Replication.Replicator.NodeHostNqn(_settings.ClusterId, v.Primary), v.Hosts, reservation))
                {
                    Signal(); // a reservation change of the last term is still being stored: install once it is
                    continue;
                }
                if (reservation is not null) ReservationInstalled(v);
            }
            catch (ControlException e)
            {
                state = "failed";
                _logger.LogError("replica of {Name} {Id}: {Error}", v.Name, v.Id, e.Message);
            }
            var incarnation = _volumes.IncarnationOf(v.Id);
            bool publish;
            lock (_published)
                publish = !_published.Contains(v.Id) || view.ReplicaState(v.Id, Index) != state || view.ReplicaFollows(v.Id, Index) != v.Primary
                    || view.Incarnation(v.Id, Index) != incarnation;
            if (!publish) continue;
            var record = new ReplicaRecord(Index, state, v.Nsid, v.Primary, incarnation);
            await _etcd.TxnAsync(new TxnRequest { Success = { Put(Keys.Replica(v.Id, Index), JsonSerializer.Serialize(record, ClusterJson.Default.ReplicaRecord), _lease) } }).ConfigureAwait(false);
            lock (_published) _published.Add(v.Id);
        }
        foreach (var id in _volumes.StoredIds())
        {
            if (!known.Contains(id)) continue; // not a cluster volume: never destroyed because of what etcd lacks
            bool placedHere = false;
            foreach (var v in view.Volumes) placedHere |= v.Record.Id == id && v.Record.Placement.Contains(Index);
            if (placedHere) continue;
            _volumes.DropReplica(id);
            await _etcd.DeleteAsync(Keys.Replica(id, Index)).ConfigureAwait(false);
            lock (_published) _published.Remove(id);
        }
    }
}
