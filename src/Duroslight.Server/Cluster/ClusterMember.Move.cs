using System.Diagnostics;
using System.Text.Json;
using Duroslight.Server.Control;
using Etcdserverpb;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using static Duroslight.Server.Cluster.EtcdSession;

namespace Duroslight.Server.Cluster;

/// <summary>
/// Live migration (docs/ARCHITECTURE.md, "Move"): `ctl volumes move` places a replica on the new node next to the
/// others, outside the in-sync set, so the primary rebuilds it as any returning replica while it serves hosts; once
/// it joined the set, the primary drops the old replica, or, if the old replica is the primary itself, first hands
/// the volume over as a drain does. Every step is one etcd transaction over the volume and its move record (moves/UUID),
/// so a restart or a leader change resumes the move where it stands and a cancel or failure undoes exactly one step.
/// </summary>
public sealed partial class ClusterMember
{
    /// <summary>How often the primary publishes a copy's progress in the move record (each write wakes every node).</summary>
    private static readonly TimeSpan ProgressEvery = TimeSpan.FromSeconds(2);
    private readonly Dictionary<Guid, long> _progressAt = [];

    /// <summary>
    /// `ctl volumes move VOL --to NODE [--from NODE]` on any node: validates, then places the new replica and records the
    /// move in one transaction (compared on the volume's and the move key's revisions). Without <paramref name="from"/>:
    /// the only replica, else the primary.
    /// </summary>
    public async Task<MoveEntry> StartMoveAsync(string key, int to, int? from)
    {
        for (int attempt = 0; ; attempt++)
        {
            var view = await ReadAsync().ConfigureAwait(false);
            var entry = view.Require(key);
            var v = entry.Record;
            int source = from ?? (v.Placement.Count == 1 ? v.Placement[0] : v.Primary);
            RefuseMove(view, v, to, source, from is not null);
            var move = new MoveRecord(v.Id, source, to, MoveRecord.Copying, DateTime.UtcNow,
                ChunksTotal: (v.SizeBytes + Storage.Chunking.ChunkMap.ChunkSize - 1) / Storage.Chunking.ChunkMap.ChunkSize);
            move = move with { ChunksLeft = move.ChunksTotal };
            var next = v with { Placement = [.. v.Placement, to], Generation = v.Generation + 1 };
            view.Moves.TryGetValue(v.Id, out var last);
            var txn = VolumeTxn(entry, next);
            txn.Compare.Add(last is null ? Absent(Keys.Move(v.Id)) : ModRevisionIs(Keys.Move(v.Id), last.ModRevision));
            txn.Success.Add(Put(Keys.Move(v.Id), Json(move)));
            var response = await TxnOrUnavailableAsync(txn).ConfigureAwait(false);
            if (response.Succeeded)
            {
                _logger.LogInformation("volume {Name}: moving its replica from node {From} to node {To} (placement [{Placement}])",
                    v.Name, source, to, string.Join(',', next.Placement));
                Signal();
                return new MoveEntry(move, response.Header.Revision);
            }
            if (attempt == 10) throw ControlException.Conflict($"cluster volume '{key}' kept changing; try again");
        }
    }

    /// <summary>Bad input for a move, as the operator's error: 404 unknown node, 409 what the cluster's state refuses.</summary>
    private static void RefuseMove(ClusterView view, VolumeRecord v, int to, int from, bool fromGiven)
    {
        if (!view.Nodes.ContainsKey(to)) throw ControlException.NotFound($"no node {to} in the cluster");
        if (fromGiven && !view.Nodes.ContainsKey(from)) throw ControlException.NotFound($"no node {from} in the cluster");
        if (view.RunningMove(v.Id) is { } running)
            throw ControlException.Conflict($"volume '{v.Name}' is moving already (node {running.Record.From} to node {running.Record.To}, {running.Record.Phase}); cancel it first (volumes move-cancel)");
        if (v.Placement.Contains(to)) throw ControlException.Conflict($"node {to} already holds a replica of '{v.Name}' (placement [{string.Join(',', v.Placement)}])");
        if (!v.Placement.Contains(from)) throw ControlException.Conflict($"node {from} holds no replica of '{v.Name}' (placement [{string.Join(',', v.Placement)}])");
        if (!view.Alive.ContainsKey(to)) throw ControlException.Conflict($"node {to} is down");
        if (view.Draining.Contains(to)) throw ControlException.Conflict($"node {to} is drained: nothing new is placed there");
        if (v.Primary < 0) throw ControlException.Conflict($"volume '{v.Name}' has no primary now; try again once it has");
    }

    /// <summary>
    /// `ctl volumes move-cancel VOL`: while the copy runs, one transaction takes the new replica out of the placement
    /// (and the in-sync set, if it joined already) and ends the move as cancelled; the volume is as before the move and
    /// served throughout. Past the cut-over (the old primary released the volume) there is nothing left to undo: 409.
    /// </summary>
    public async Task<MoveEntry> CancelMoveAsync(string key)
    {
        for (int attempt = 0; ; attempt++)
        {
            var view = await ReadAsync().ConfigureAwait(false);
            var entry = view.Require(key);
            var move = view.RunningMove(entry.Record.Id) ?? throw ControlException.Conflict($"volume '{entry.Record.Name}' is not moving");
            if (move.Record.Phase != MoveRecord.Copying)
                throw ControlException.Conflict($"the move of '{entry.Record.Name}' is past its cut-over (the old primary released it); it completes");
            var ended = move.Record.Ended(MoveRecord.Cancelled);
            if (await EndMoveAsync(entry, move, WithoutNode(entry.Record, move.Record.To), ended, throwIfUnavailable: true).ConfigureAwait(false))
                return new MoveEntry(ended, 0);
            if (attempt == 10) throw ControlException.Conflict($"cluster volume '{key}' kept changing; try again");
        }
    }

    /// <summary>`ctl volumes move-status VOL`: the last move's record; asked of the primary while it copies, its live progress.</summary>
    public async Task<MoveRecord> MoveStatusAsync(string key)
    {
        var view = await ReadAsync().ConfigureAwait(false);
        var v = view.Require(key).Record;
        var m = view.Moves.TryGetValue(v.Id, out var entry) ? entry.Record : throw ControlException.NotFound($"volume '{v.Name}' was never moved");
        return m.Phase == MoveRecord.Copying && v.Primary == Index ? WithProgress(m) : m;
    }

    /// <summary>The record with this node's numbers of the rebuild of the move's new replica (under way, or completed here).</summary>
    private MoveRecord WithProgress(MoveRecord m) => _replicator?.RebuildOf(m.Volume, m.To) is { } r
        ? m with { ChunksTotal = r.ChunksTotal, ChunksLeft = r.ChunksLeft, BytesCopied = r.BytesCopied,
            MibPerSecond = Math.Round(r.MiBPerSecond, 1), EtaSeconds = Math.Round(r.EtaSeconds, 1) }
        : m;

    /// <summary>
    /// The primary's part in a running move of <paramref name="entry"/>, once per reconcile pass. True when this pass
    /// released the primary (the caller leaves the replica inaccessible, as after a drain's handover).
    /// </summary>
    private async Task<bool> DriveMoveAsync(VolumeEntry entry, MoveEntry move, ClusterView view)
    {
        var v = entry.Record;
        var m = move.Record;
        if (m.Phase == MoveRecord.CutOver)
        {
            // This node was promoted after the old primary released the volume: drop the old replica.
            if (m.From != Index) await EndMoveAsync(entry, move, WithoutNode(v, m.From), Finished(m)).ConfigureAwait(false);
            return false;
        }
        string state = view.ReplicaState(v.Id, m.To);
        if (state is "down" or "failed")
        {
            // The new replica cannot be completed: the volume goes back to its placement before the move.
            string error = $"node {m.To} {(state == "down" ? "went down" : "could not open its replica")} during the copy";
            if (await EndMoveAsync(entry, move, WithoutNode(v, m.To), m.Ended(MoveRecord.Failed, error)).ConfigureAwait(false))
                _logger.LogWarning("volume {Name}: move to node {To} failed: {Error}", v.Name, m.To, error);
            return false;
        }
        if (!v.InSync.Contains(m.To))
        {
            await PublishProgressAsync(entry, move).ConfigureAwait(false);
            return false;
        }
        if (m.From != Index)
        {
            await EndMoveAsync(entry, move, WithoutNode(v, m.From), Finished(WithProgress(m))).ConfigureAwait(false);
            return false;
        }
        // The old replica is this primary: hand the volume over as a drain does, leaving the in-sync set in the same
        // transaction, so the leader promotes another in-sync replica at once and never this one again.
        await HandOverAsync(entry, r => r with { Primary = -1, InSync = [.. r.InSync.Where(n => n != Index)] },
            txn => AddMove(txn, move, WithProgress(m) with { Phase = MoveRecord.CutOver, ChunksLeft = 0, EtaSeconds = 0 }), $"for its move to node {m.To}").ConfigureAwait(false);
        return true;
    }

    /// <summary>A move ended done: the overall pace is the volume's size over the move's whole time.</summary>
    private static MoveRecord Finished(MoveRecord m)
    {
        var done = m.Ended(MoveRecord.Done);
        double seconds = (done.Finished!.Value - m.Started).TotalSeconds;
        return done with { ChunksLeft = 0, MibPerSecond = seconds > 0 ? Math.Round(m.ChunksTotal * (Storage.Chunking.ChunkMap.ChunkSize / 1048576.0) / seconds, 1) : 0 };
    }

    /// <summary>The copy's progress into the move record, every <see cref="ProgressEvery"/> at most, for move-status on other nodes.</summary>
    private async Task PublishProgressAsync(VolumeEntry entry, MoveEntry move)
    {
        long now = Stopwatch.GetTimestamp();
        lock (_progressAt)
        {
            if (_progressAt.TryGetValue(move.Record.Volume, out long at) && Stopwatch.GetElapsedTime(at, now) < ProgressEvery) return;
            _progressAt[move.Record.Volume] = now;
        }
        var next = WithProgress(move.Record);
        if (next == move.Record) return;
        var txn = new TxnRequest();
        AddMove(txn, move, next);
        await _etcd.TxnAsync(txn).ConfigureAwait(false);
    }

    /// <summary>
    /// One step that ends the move: the volume's new record and the ended move record in one transaction, compared on
    /// both revisions (a concurrent cancel, finish or in-sync change makes it fail; the caller reads again). True when written.
    /// </summary>
    private async Task<bool> EndMoveAsync(VolumeEntry entry, MoveEntry move, VolumeRecord next, MoveRecord ended, bool throwIfUnavailable = false)
    {
        var txn = VolumeTxn(entry, next);
        AddMove(txn, move, ended);
        bool ok = throwIfUnavailable ? (await TxnOrUnavailableAsync(txn).ConfigureAwait(false)).Succeeded : (await _etcd.TxnAsync(txn).ConfigureAwait(false)).Succeeded;
        if (!ok) return false;
        _logger.LogInformation("volume {Name}: move from node {From} to node {To} {Phase}; placement [{Placement}], in sync [{InSync}] (generation {Generation})",
            next.Name, ended.From, ended.To, ended.Phase, string.Join(',', next.Placement), string.Join(',', next.InSync), next.Generation + 1);
        Signal();
        return true;
    }

    /// <summary>The volume without <paramref name="node"/>'s replica: out of the placement and the in-sync set.</summary>
    private static VolumeRecord WithoutNode(VolumeRecord v, int node) =>
        v with { Placement = [.. v.Placement.Where(n => n != node)], InSync = [.. v.InSync.Where(n => n != node)] };

    /// <summary>A transaction that writes <paramref name="next"/> (generation + 1) only over the volume record as read.</summary>
    private TxnRequest VolumeTxn(VolumeEntry entry, VolumeRecord next)
    {
        var txn = new TxnRequest();
        txn.Compare.Add(ModRevisionIs(Keys.Volume(next.Id), entry.ModRevision));
        txn.Success.Add(Put(Keys.Volume(next.Id), Json(next with { Generation = entry.Record.Generation + 1 })));
        return txn;
    }

    private void AddMove(TxnRequest txn, MoveEntry move, MoveRecord next)
    {
        txn.Compare.Add(ModRevisionIs(Keys.Move(next.Volume), move.ModRevision));
        txn.Success.Add(Put(Keys.Move(next.Volume), Json(next)));
    }

    private async Task<TxnResponse> TxnOrUnavailableAsync(TxnRequest txn)
    {
        try
        {
            return await _etcd.TxnAsync(txn).ConfigureAwait(false);
        }
        catch (RpcException e)
        {
            throw new ControlException(503, $"etcd {_etcd.Endpoint} unavailable: {e.Status.Detail}");
        }
    }

    private static string Json(MoveRecord m) => JsonSerializer.Serialize(m, ClusterJson.Default.MoveRecord);
}
