using Duroslight.Protocol.Reservations;
using System.Collections.Frozen;
using Duroslight.Protocol.Subsystems;
using Duroslight.Server.Control;
using Duroslight.Server.Execution;
using Duroslight.Server.Metrics;
using Duroslight.Storage.Volumes;
using Microsoft.Extensions.Logging;

namespace Duroslight.Server.Hosting;

/// <summary>
/// A volume as the control API shows it: the store's descriptor plus its namespace (0 when not exposed) and its host
/// access list (null: any host the subsystem admits).
/// </summary>
public sealed record VolumeView(Guid Id, string Name, long SizeBytes, int BlockSize, uint Nsid, long AllocatedBytes, IReadOnlyList<string>? Hosts);

/// <summary>
/// The volumes of a node and their namespaces: every change goes store first, then target (which posts the
/// namespace AENs), and is undone when a later step fails, so nothing is half-applied. Changes are serialised
/// by one lock; the I/O path only reads the snapshots published to the volume table and the metrics.
/// NSIDs: at start in catalog order from 1; a created volume takes the lowest free NSID. The per-volume metric
/// slot is NSID - 1.
/// </summary>
public sealed class NodeVolumes(IVolumeStore store, Target target, VolumeTable volumeTable, ILogger logger)
{
    public const int BlockSize = 4096;

    private readonly object _gate = new();
    private readonly Dictionary<Guid, IBlockVolume> _open = [];

    private IoMetrics Metrics => volumeTable.Metrics;

    /// <summary>Exposes every volume of the store (start-up).</summary>
    public void ExposeAll()
    {
        lock (_gate)
        {
            uint nsid = 1;
            foreach (var d in store.List()) Expose(d, nsid++);
            Publish();
        }
    }

    public IReadOnlyList<VolumeView> List()
    {
        lock (_gate)
        {
            var views = new List<VolumeView>();
            foreach (var d in store.List()) views.Add(View(d));
            // Exposed volumes in NSID order, then the others (snapshots) by name.
            views.Sort(static (a, b) => a.Nsid != b.Nsid ? (a.Nsid == 0 ? 1 : b.Nsid == 0 ? -1 : a.Nsid.CompareTo(b.Nsid)) : string.CompareOrdinal(a.Name, b.Name));
            return views;
        }
    }

    /// <summary>A volume by name, ID or "nsid:N"; 404 when none matches.</summary>
    public VolumeView Find(string key)
    {
        lock (_gate) return View(Resolve(key));
    }

    /// <summary>
    /// Creates a volume, or answers the existing one when a volume of that name, size and host list exists already:
    /// orchestrators retry creates whose answer they lost. The same name with another size or list is a conflict.
    /// </summary>
    public VolumeView Create(string name, long sizeBytes, IReadOnlyList<string>? hosts = null)
    {
        lock (_gate)
        {
            if (Existing(name, sizeBytes, hosts) is { } same) return View(same);
            uint nsid = FreeNsid();
            var d = Store(() => store.Create(name, sizeBytes, hosts: hosts));
            ExposeNew(d, nsid);
            logger.LogInformation("volume created {Name} {Id} {Bytes} nsid {Nsid}", d.Name, d.Id, d.SizeBytes, nsid);
            return View(d);
        }
    }

    public void Delete(string key)
    {
        lock (_gate)
        {
            var d = Resolve(key);
            var ns = NamespaceOf(d.Id);
            if (ns is not null) target.RemoveNamespace(ns.Nsid);
            _open.Remove(d.Id);
            Publish();
            try
            {
                store.Delete(d.Id);
            }
            catch (VolumeStoreException e)
            {
                if (ns is not null) Expose(d, ns.Nsid);
                Publish();
                throw ControlException.Conflict(e.Message);
            }
            logger.LogInformation("volume deleted {Name} {Id} nsid {Nsid}", d.Name, d.Id, ns?.Nsid ?? 0);
        }
    }

    public VolumeView Resize(string key, long newSizeBytes)
    {
        lock (_gate)
        {
            var d = Resolve(key);
            var resized = Store(() => store.Resize(d.Id, newSizeBytes));
            if (NamespaceOf(d.Id) is { } ns && resized.SizeBytes / resized.BlockSize != ns.BlockCount)
                target.ResizeNamespace(ns.Nsid, resized.SizeBytes / resized.BlockSize);
            logger.LogInformation("volume resized {Name} {Id} {Bytes}", d.Name, d.Id, resized.SizeBytes);
            return View(resized);
        }
    }

    /// <summary>A read-only snapshot; kept in the store, not exposed as a namespace.</summary>
    public VolumeView Snapshot(string key, string name)
    {
        lock (_gate)
        {
            var source = Resolve(key);
            var d = Store(() => store.Snapshot(source.Id, name));
            logger.LogInformation("snapshot {Name} {Id} of {Source}", d.Name, d.Id, source.Id);
            return View(d);
        }
    }

    /// <summary>A writable clone, exposed as a new namespace like a created volume.</summary>
    public VolumeView Clone(string key, string name)
    {
        lock (_gate)
        {
            var source = Resolve(key);
            uint nsid = FreeNsid();
            var d = Store(() => store.Clone(source.Id, name));
            ExposeNew(d, nsid);
            logger.LogInformation("clone {Name} {Id} of {Source} nsid {Nsid}", d.Name, d.Id, source.Id, nsid);
            return View(d);
        }
    }

    /// <summary>Lets one more host see the volume (a volume open to any host refuses: set a list first).</summary>
    public VolumeView Attach(string key, string host) => ChangeHosts(key, host, attach: true);

    /// <summary>Hides the volume from one host.</summary>
    public VolumeView Detach(string key, string host) => ChangeHosts(key, host, attach: false);

    /// <summary>Replaces the volume's host list; null opens it to any host the subsystem admits.</summary>
    public VolumeView SetHosts(string key, IReadOnlyList<string>? hosts)
    {
        lock (_gate)
        {
            var d = Store(() => store.SetHosts(Resolve(key).Id, hosts));
            if (NamespaceOf(d.Id) is { } ns) target.SetNamespaceHosts(ns.Nsid, Access(d.Hosts));
            logger.LogInformation("hosts of volume {Name}: {Hosts}", d.Name, d.Hosts is null ? "any" : string.Join(",", d.Hosts));
            return View(d);
        }
    }

    private VolumeView ChangeHosts(string key, string host, bool attach)
    {
        lock (_gate)
        {
            var d = Resolve(key);
            if (d.Hosts is null)
                throw ControlException.Conflict($"volume '{d.Name}' is open to any host; give it a host list first (volumes hosts, or create --hosts)");
            var hosts = new List<string>(d.Hosts);
            if (attach) hosts.Add(host); else hosts.Remove(host);
            return SetHosts(d.Id.ToString(), hosts);
        }
    }

    /// <summary>The volume a retried create asks for, or null when the name is free; 409 when the name is taken otherwise.</summary>
    private VolumeDescriptor? Existing(string name, long sizeBytes, IReadOnlyList<string>? hosts)
    {
        foreach (var d in store.List())
        {
            if (d.Name != name) continue;
            if (d.SizeBytes == sizeBytes && !d.ReadOnly && SameHosts(d.Hosts, hosts)) return d;
            throw ControlException.Conflict($"volume '{name}' exists with size {d.SizeBytes}{(d.ReadOnly ? " (a snapshot)" : "")}" +
                $" and hosts {(d.Hosts is null ? "any" : "[" + string.Join(",", d.Hosts) + "]")}; a create must ask for the same to succeed again");
        }
        return null;
    }

    private static bool SameHosts(string[]? have, IReadOnlyList<string>? want)
    {
        if (have is null || want is null) return have is null && want is null;
        var set = new HashSet<string>(want, StringComparer.Ordinal);
        return set.SetEquals(have);
    }

    /// <summary>
    /// A cluster replica placed on this node: created in the store under the cluster's volume ID if missing, then
    /// exposed under the cluster's NSID (the same on every node, as is the NGUID, the volume ID) with its ANA state
    /// (optimized on the primary, inaccessible elsewhere; docs/ARCHITECTURE.md). Idempotent; an open replica gets the
    /// state and the cluster's host list for it only (the AENs go out when they changed). <paramref name="primaryNqn"/>:
    /// the host NQN of the volume's primary in etcd, the only peer whose forwarded writes the replica applies
    /// (<see cref="NamespaceInfo.ForwardsOnlyFrom"/>). A replica's namespace serves hosts only under the node's lease fence.
    /// </summary>
    public bool EnsureReplica(Guid id, string name, long sizeBytes, uint nsid, AnaState ana, string primaryNqn, IReadOnlyList<string>? hosts,
        ReservationState? reservation = null)
    {
        lock (_gate)
        {
            string[]? list = hosts is null ? null : [.. hosts];
            if (_open.ContainsKey(id))
            {
                if (target.GetNamespace(nsid) is { } ns) ns.ForwardsOnlyFrom = primaryNqn;
                // The cluster's reservation before the path turns optimized; not while a change is being stored.
                if (reservation is not null && !target.RestoreReservation(nsid, reservation)) return false;
                target.SetAnaState(nsid, ana);
                var access = Access(list);
                if (target.GetNamespace(nsid) is { } open && !SameAccess(open.Hosts, access)) target.SetNamespaceHosts(nsid, access);
                return true;
            }
            if (target.GetNamespace(nsid) is { } taken)
                throw ControlException.Conflict($"NSID {nsid} is taken on this node by volume {taken.VolumeId}");
            VolumeDescriptor? d = null;
            foreach (var existing in store.List()) if (existing.Id == id) d = existing;
            try
            {
                d ??= Store(() => store.Create(name, sizeBytes, id));
            }
            catch (IOException e)
            {
                // The store's files cannot be made (a broken data directory): this replica fails, the node goes on.
                throw ControlException.Conflict($"replica '{name}' could not be created: {e.Message}");
            }
            try
            {
                // The cluster's host list and reservation (etcd), not the local catalog's.
                Expose(d with { Hosts = list }, nsid, ana, primaryNqn, reservation ?? ReservationState.Empty);
            }
            catch (Exception e) when (e is InvalidOperationException or ArgumentException or VolumeStoreException)
            {
                _open.Remove(id);
                throw ControlException.Conflict($"replica '{name}' could not be exposed: {e.Message}");
            }
            Publish();
            logger.LogInformation("replica {Name} {Id} open as nsid {Nsid}", name, id, nsid);
            return true;
        }
    }

    /// <summary>
    /// A primary this node hands over (drain): its namespace turns inaccessible and the task completes once no write
    /// admitted before is still executing (<see cref="Target.QuiesceAsync"/>). Completed at once if it is not open.
    /// </summary>
    public Task QuiesceReplicaAsync(Guid id)
    {
        lock (_gate) return NamespaceOf(id) is { } ns ? target.QuiesceAsync(ns.Nsid, AnaState.Inaccessible) : Task.CompletedTask;
    }

    /// <summary>The incarnation of the stored volume (made when it was created, kept with its data); empty if none or not stored.</summary>
    public Guid IncarnationOf(Guid id)
    {
        lock (_gate)
        {
            foreach (var d in store.List())
                if (d.Id == id) return d.Incarnation ?? Guid.Empty;
            return Guid.Empty;
        }
    }

    /// <summary>A replica the cluster no longer places here: its namespace goes (AEN), then its data.</summary>
    public void DropReplica(Guid id)
    {
        lock (_gate)
        {
            if (NamespaceOf(id) is { } ns) target.RemoveNamespace(ns.Nsid);
            _open.Remove(id);
            Publish();
            try
            {
                store.Delete(id);
            }
            catch (VolumeStoreException e)
            {
                logger.LogError("replica {Id}: could not delete it from the store: {Error}", id, e.Message);
                return;
            }
            logger.LogInformation("replica {Id} dropped (placed elsewhere)", id);
        }
    }

    /// <summary>The IDs of every volume in the store (open or not).</summary>
    public List<Guid> StoredIds()
    {
        lock (_gate)
        {
            var ids = new List<Guid>();
            foreach (var d in store.List()) ids.Add(d.Id);
            return ids;
        }
    }

    /// <summary>Flushes every open volume (graceful shutdown).</summary>
    public async Task FlushAllAsync()
    {
        IBlockVolume[] volumes;
        lock (_gate) volumes = [.. _open.Values];
        foreach (var v in volumes) await v.FlushAsync().ConfigureAwait(false);
    }

    /// <summary>Exposes a volume the store just made; if that fails the volume is deleted again (nothing half-applied).</summary>
    private void ExposeNew(VolumeDescriptor d, uint nsid)
    {
        try
        {
            Expose(d, nsid);
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or VolumeStoreException)
        {
            _open.Remove(d.Id);
            store.Delete(d.Id);
            throw ControlException.Conflict($"volume '{d.Name}' could not be exposed: {e.Message}");
        }
        Publish();
    }

    /// <summary>Exposes a volume as a namespace; in a cluster with its ANA state from the start (a secondary is never optimized, even briefly).</summary>
    private void Expose(VolumeDescriptor d, uint nsid, AnaState ana = AnaState.Optimized, string? primaryNqn = null, ReservationState? shared = null)
    {
        var volume = store.Open(d.Id);
        if (volume is SparseFileVolume { DirectIo: false })
            logger.LogWarning("volume {Name}: the filesystem refused O_DIRECT; I/O goes through the page cache", d.Name);
        target.AddNamespace(new NamespaceInfo(nsid, d.Id, d.SizeBytes / d.BlockSize, d.BlockSize)
        {
            AllocatedBlocks = () => volume.AllocatedBytes / volume.BlockSize,
            Hosts = Access(d.Hosts),
            AnaState = ana,
            Reservation = shared ?? RestoredReservation(d),
            ReservationShared = primaryNqn is not null, // a cluster replica: every change goes to etcd first
            Fence = primaryNqn is null ? null : target.Fence, // a cluster replica serves only under the node's lease
            ForwardsOnlyFrom = primaryNqn,
        });
        _open[d.Id] = volume;
        Metrics.ResetVolumeSlot((int)nsid - 1);
        logger.LogInformation("namespace {Nsid} = volume {Name} {Id}", nsid, d.Name, d.Id);
    }

    /// <summary>
    /// Persist Through Power Loss: the target's hook (<see cref="Target.ReservationPersistence"/>); the catalog write is
    /// durable when the task completes. Only reservation commands on a namespace with PTPL (or clearing it) come here,
    /// never plain I/O. The write runs on a pool thread: the shard that ran the command goes on serving its other
    /// connections (a shard thread's block I/O would complete only when that shard polls again), and the command
    /// completes once the task does.
    /// </summary>
    public Task PersistReservation(NamespaceInfo ns, byte[] record) => ns.ReservationShared
        ? SharedReservations?.Invoke(ns.VolumeId, record) ?? Task.FromException(new IOException("cluster reservations are not available yet"))
        : Task.Run(() =>
    {
        try
        {
            store.SetReservation(ns.VolumeId, record);
        }
        catch (Exception e) when (e is VolumeStoreException or IOException or InvalidOperationException)
        {
            logger.LogError("volume {Id}: reservation record not stored: {Error}", ns.VolumeId, e.ToString());
            throw new IOException(e.Message, e);
        }
    });

    /// <summary>Stores a cluster volume's reservation record in etcd (<see cref="Cluster.ClusterMember.StoreReservationAsync"/>); set on joining.</summary>
    public Func<Guid, byte[], Task>? SharedReservations { get; set; }

    /// <summary>
    /// The reservation state a start gives a volume (8.19 "Persist Through Power Loss"): the stored record if PTPL was
    /// set, otherwise none. A record that does not parse is dropped with a warning rather than stopping the node.
    /// </summary>
    private ReservationState RestoredReservation(VolumeDescriptor d)
    {
        if (d.Reservation is null) return ReservationState.Empty;
        try
        {
            return Protocol.Reservations.ReservationCodec.Deserialize(d.Reservation).AfterPowerLoss();
        }
        catch (FormatException e)
        {
            logger.LogWarning("volume {Name}: stored reservation ignored: {Message}", d.Name, e.Message);
            return ReservationState.Empty;
        }
    }

    private static bool SameAccess(HostAccess a, HostAccess b) => a.IsAllowAny == b.IsAllowAny && a.Hosts.SetEquals(b.Hosts);

    /// <summary>A volume's host list as the target enforces it (null: any host the subsystem admits).</summary>
    private static HostAccess Access(string[]? hosts) => hosts is null ? HostAccess.AllowAny : HostAccess.Only(hosts);

    /// <summary>Hands the current volume set to the volume table and the metric slots to IoMetrics.</summary>
    private void Publish()
    {
        volumeTable.SetVolumes(_open.Values);
        var slots = new Dictionary<Guid, int>();
        foreach (var ns in target.Namespaces) slots[ns.VolumeId] = (int)ns.Nsid - 1;
        Metrics.SetVolumeSlots(slots.ToFrozenDictionary());
    }

    private uint FreeNsid()
    {
        uint expected = 1;
        foreach (var ns in target.Namespaces)
        {
            if (ns.Nsid != expected) break;
            expected++;
        }
        return expected <= Target.MaxNamespaces
            ? expected
            : throw ControlException.Conflict($"all {Target.MaxNamespaces} namespace IDs are in use");
    }

    private VolumeDescriptor Resolve(string key)
    {
        var all = store.List();
        foreach (var d in all) if (d.Name == key) return d;
        if (Guid.TryParse(key, out var id))
            foreach (var d in all) if (d.Id == id) return d;
        if (key.StartsWith("nsid:", StringComparison.Ordinal) && uint.TryParse(key.AsSpan(5), out uint nsid)
            && target.GetNamespace(nsid) is { } ns)
            foreach (var d in all) if (d.Id == ns.VolumeId) return d;
        throw ControlException.NotFound($"no volume '{key}' (give a name, a volume ID or nsid:N)");
    }

    private NamespaceInfo? NamespaceOf(Guid id)
    {
        foreach (var ns in target.Namespaces) if (ns.VolumeId == id) return ns;
        return null;
    }

    private VolumeView View(VolumeDescriptor d) => new(d.Id, d.Name, d.SizeBytes, d.BlockSize,
        NamespaceOf(d.Id)?.Nsid ?? 0, _open.TryGetValue(d.Id, out var v) ? v.AllocatedBytes : 0, d.Hosts);

    /// <summary>Runs a store call; its refusals become 409 with the store's own message.</summary>
    private static VolumeDescriptor Store(Func<VolumeDescriptor> call)
    {
        try
        {
            return call();
        }
        catch (VolumeStoreException e)
        {
            throw ControlException.Conflict(e.Message);
        }
        catch (ArgumentException e)
        {
            throw ControlException.BadRequest(e.Message);
        }
    }
}
