namespace Duroslight.Server.Replication;

/// <summary>
/// The primary's record of what one replica outside the in-sync set misses: its <see cref="DirtyMap"/>, the replica
/// incarnation the map is relative to, and how far etcd's copy (the sync point) is behind.
/// </summary>
internal sealed class DirtyTrack(int node, DirtyMap map, Guid incarnation, bool full, bool resumed)
{
    private long _changes = 1; // starts unsaved: the first save writes the sync point even with no chunk dirty

    public int Node => node;

    public DirtyMap Map => map;

    /// <summary>The replica the map is relative to; <see cref="Guid.Empty"/>: not known, so a rebuild copies every chunk.</summary>
    public Guid Incarnation { get; private set; } = incarnation;

    /// <summary>Every chunk is copied (a new, wiped or unknown replica), as opposed to the chunks it missed.</summary>
    public bool Full { get; private set; } = full;

    /// <summary>Loaded from a sync point in etcd (another primary, or this node before a restart, recorded it).</summary>
    public bool Resumed { get; private set; } = resumed;

    /// <summary>Counts the map's changes; a save writes it when it differs from <see cref="SavedChanges"/>.</summary>
    public long Changes => Volatile.Read(ref _changes);

    /// <summary>The <see cref="Changes"/> the last successful save wrote (the sync-point writer's only).</summary>
    public long SavedChanges { get; set; }

    /// <summary>Any thread: the map changed (a chunk became dirty, or a rebuild copied one).</summary>
    public void Changed() => Interlocked.Increment(ref _changes);

    /// <summary>Control path, no rebuild running: a full copy to the replica of <paramref name="replica"/> starts over.</summary>
    public void RestartFull(Guid replica)
    {
        map.SetAll();
        Incarnation = replica;
        Full = true;
        Resumed = false;
        Changed();
    }
}
