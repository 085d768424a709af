using Microsoft.Extensions.Logging;

namespace Duroslight.Server.Replication;

/// <summary>
/// Dirty-chunk tracking on the primary (docs/ARCHITECTURE.md, "Dirty-chunk maps and sync points"): one
/// <see cref="DirtyTrack"/> per replica outside the in-sync set. Every change the primary admits marks its chunks in
/// every track (on the chunk's owning shard); a change that makes a chunk dirty does not start until the sync points
/// in etcd list that chunk (a write-intent rule: a primary that dies never leaves a changed chunk out of etcd's map).
/// Steady state (the chunk dirty already) costs one read of a word per track and allocates nothing.
/// </summary>
internal sealed partial class VolumeReplication : IThreadPoolWorkItem
{
    /// <summary>How often changed maps (a rebuild's progress) are saved even when no change waits for it.</summary>
    private static readonly TimeSpan SavePeriod = TimeSpan.FromSeconds(1);
    private volatile DirtyTrack[] _tracks = [];
    /// <summary>Counts chunks that became dirty; <see cref="_savedSeq"/>: the count etcd's sync points include.</summary>
    private long _markSeq, _savedSeq;
    private readonly SemaphoreSlim _saves = new(1, 1);
    private readonly SemaphoreSlim _saveSignal = new(0);
    private readonly CancellationTokenSource _stopSaver = new();
    private readonly Dictionary<int, Guid> _incarnations = [];
    private int _kicked, _saverStarted, _formerPrimary = -1;
    private bool _isPrimary;
    private long _chunks;

    /// <summary>Writes one track's sync point to etcd (only while this node holds its lease); true once written.</summary>
    public Func<Guid, DirtyTrack, Task<bool>> SaveSyncPoint { get; set; } = static (_, _) => Task.FromResult(false);

    /// <summary>The tracks now (a snapshot; the shards read it without a lock).</summary>
    public DirtyTrack[] Tracks => _tracks;

    public long Chunks => Volatile.Read(ref _chunks);

    public DirtyTrack? TrackOf(int node)
    {
        foreach (var t in _tracks) if (t.Node == node) return t;
        return null;
    }

    /// <summary>Control path, every view: the volume's size and the incarnation of every replica that published one.</summary>
    public void Observe(long sizeBytes, IEnumerable<(int Node, Guid Incarnation)> replicas)
    {
        Volatile.Write(ref _chunks, DirtyMap.ChunksOf(sizeBytes));
        lock (_gate)
            foreach (var (node, incarnation) in replicas)
                if (incarnation != Guid.Empty) _incarnations[node] = incarnation;
    }

    /// <summary>
    /// Control path: this node became the primary; <paramref name="formerPrimary"/> (the primary its replica followed)
    /// may hold changes no other replica saw (in flight when it died), so it gets a full copy if it comes back.
    /// </summary>
    public void BecomePrimary(int formerPrimary)
    {
        lock (_gate)
        {
            if (_isPrimary) return;
            _isPrimary = true;
            _formerPrimary = formerPrimary;
        }
    }

    /// <summary>Control path: <paramref name="node"/> is outside the in-sync set; its track from <paramref name="load"/> if it has none.</summary>
    public void EnsureTrack(int node, Func<DirtyTrack> load)
    {
        lock (_gate)
        {
            if (TrackOf(node) is not null) return;
            AddTrack(load());
        }
    }

    /// <summary>Control path: the node is in sync (joined, or never left); nothing is recorded for it any more.</summary>
    public void RemoveTrack(int node)
    {
        lock (_gate)
        {
            if (TrackOf(node) is null) return;
            var next = new List<DirtyTrack>(_tracks.Length);
            foreach (var t in _tracks) if (t.Node != node) next.Add(t);
            _tracks = [.. next];
        }
        Kick(); // changes that waited for a save of it need not any more
    }

    /// <summary>This node is no longer the primary: its tracks go (the next primary loads the sync points).</summary>
    public void RemoveAllTracks()
    {
        lock (_gate)
        {
            if (!_isPrimary && _tracks.Length == 0) return;
            _tracks = [];
            _isPrimary = false;
            _formerPrimary = -1;
        }
        Kick();
    }

    /// <summary>Under the lock: a track for a node that just missed a write, relative to its replica as last seen.</summary>
    private void TrackDropped(int node)
    {
        long chunks = Chunks;
        if (chunks == 0 || TrackOf(node) is not null) return;
        var map = new DirtyMap(chunks);
        Guid incarnation = Guid.Empty;
        bool full = node == _formerPrimary || !_incarnations.TryGetValue(node, out incarnation);
        if (full)
        {
            map.SetAll();
            incarnation = Guid.Empty;
        }
        AddTrack(new DirtyTrack(node, map, incarnation, full, resumed: false));
    }

    private void AddTrack(DirtyTrack track)
    {
        _tracks = [.. _tracks, track];
        if (Interlocked.Exchange(ref _saverStarted, 1) == 0) _ = Task.Run(SaveLoopAsync);
        Kick();
    }

    /// <summary>
    /// On the chunk's shard: marks bytes [<paramref name="start"/>, <paramref name="end"/>) dirty for every replica
    /// outside the in-sync set (<paramref name="node"/> -1) or for one. Returns the mark count a change must see saved
    /// before it goes on (<see cref="IsSaved"/>), 0 if no chunk became dirty.
    /// </summary>
    public long MarkDirty(long start, long end, int node = -1)
    {
        var tracks = _tracks;
        if (tracks.Length == 0 || start >= end) return 0;
        long seq = 0;
        foreach (var t in tracks)
        {
            if ((node >= 0 && t.Node != node) || !t.Map.SetBytes(start, end)) continue;
            t.Changed();
            seq = Interlocked.Increment(ref _markSeq);
        }
        if (seq != 0) Kick();
        return seq;
    }

    public bool IsSaved(long seq) => Volatile.Read(ref _savedSeq) >= seq;

    /// <summary>Any thread: a save is due soon. Allocation-free (the saver loop waits on a semaphore).</summary>
    private void Kick()
    {
        if (Interlocked.Exchange(ref _kicked, 1) == 0) ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
    }

    /// <summary>On the thread pool (<see cref="Kick"/>): wake the saver.</summary>
    void IThreadPoolWorkItem.Execute() => _saveSignal.Release();

    private async Task SaveLoopAsync()
    {
        var stop = _stopSaver.Token;
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await _saveSignal.WaitAsync(SavePeriod, stop).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            Volatile.Write(ref _kicked, 0);
            await SaveAsync().ConfigureAwait(false);
        }
    }

    /// <summary>The node stops (the replicator is disposed): no more periodic saves, which would find etcd's session gone.</summary>
    public void StopSaver() => _stopSaver.Cancel();

    /// <summary>
    /// Writes every track that changed since its last save, then lets the changes that waited for their marks go on.
    /// One save at a time, and never beside a join (which deletes the joining node's sync point).
    /// </summary>
    public async Task<bool> SaveAsync()
    {
        await _saves.WaitAsync().ConfigureAwait(false);
        bool ok = true;
        try
        {
            // Read before the maps are encoded: every mark counted so far is in what is written.
            long seq = Interlocked.Read(ref _markSeq);
            foreach (var t in _tracks)
            {
                long changes = t.Changes;
                if (changes == t.SavedChanges) continue;
                if (await SaveSyncPoint(volumeId, t).ConfigureAwait(false)) t.SavedChanges = changes;
                else ok = false;
            }
            if (ok && seq > Volatile.Read(ref _savedSeq)) Interlocked.Exchange(ref _savedSeq, seq);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            logger.LogWarning("volume {Id}: sync point not saved: {Error}", volumeId, e.Message);
            ok = false;
        }
        finally
        {
            _saves.Release();
        }
        WakeParked();
        return ok;
    }

    /// <summary>Each shard whose channel holds changes waiting for a save re-checks them (the one post it needs).</summary>
    private void WakeParked()
    {
        Interlocked.MemoryBarrier(); // pairs with the channel's park: one of the two sees the other
        foreach (var channel in _channels) channel?.WakeIfParked();
    }
}
