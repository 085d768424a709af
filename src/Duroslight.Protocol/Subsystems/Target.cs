using Duroslight.Protocol.Engine;
using Duroslight.Protocol.Nvme;

namespace Duroslight.Protocol.Subsystems;

/// <summary>A controller as the control plane lists it.</summary>
public sealed record ControllerSnapshot(ushort Cntlid, int PoolId, string SubsystemNqn, string HostNqn, int IoQueues,
    int Shard, string PeerAddress, bool IsDiscovery);

/// <summary>
/// The node's target state shared by all connections: subsystems and their controller-ID pools, namespaces,
/// host access, listeners, referrals and the discovery generation counter. Control-plane operations take a lock;
/// the I/O path only reads immutable snapshots (the namespace table is copied on write).
/// </summary>
public sealed partial class Target
{
    /// <summary>NN: namespace IDs run 1..MaxNamespaces.</summary>
    public const uint MaxNamespaces = 1024;

    private readonly object _lock = new();
    private readonly Dictionary<(int Pool, ushort Cntlid), Controller> _controllers = [];
    private readonly List<Controller> _discoveryControllers = [];
    private readonly ControllerIdPool _discoveryIds;
    private readonly List<Referral> _referrals = [];
    private readonly List<ListenerInfo> _listeners = [];
    private volatile NamespaceInfo[] _namespaces = [];
    private long _genctr;
    private long _anaChangeCount;
    private List<ListenerInfo> _peerListeners = [];

    public Target(TargetOptions options)
    {
        options.Validate();
        Options = options;
        var subsystems = new List<Subsystem>();
        for (int pool = 0; pool <= options.AuxSubsystemCount; pool++)
        {
            string nqn = pool == 0 ? options.SubsystemNqn : AuxNqn(options.SubsystemNqn, pool);
            var ids = new ControllerIdPool(options.NodeIndex, options.MaxControllersPerPool);
            subsystems.Add(new Subsystem(nqn, pool, ids, options.InitialHostAccess));
        }
        Subsystems = subsystems;
        if (options.BackendNqn is { } backend)
            Backend = new Subsystem(backend, subsystems.Count, new ControllerIdPool(options.NodeIndex, options.MaxControllersPerPool), HostAccess.Only([]), isBackend: true);
        _discoveryIds = new ControllerIdPool(options.NodeIndex, options.MaxControllersPerPool);
    }

    public TargetOptions Options { get; }

    /// <summary>Index 0 is the default subsystem (pool 0), index N is aux-N.</summary>
    public IReadOnlyList<Subsystem> Subsystems { get; }

    /// <summary>The node-to-node replication subsystem (pool after the aux ones), or null without <see cref="TargetOptions.BackendNqn"/>.</summary>
    public Subsystem? Backend { get; }

    public ulong DiscoveryGeneration => (ulong)Interlocked.Read(ref _genctr);

    /// <summary>Active namespaces in ascending NSID order (an immutable snapshot).</summary>
    public NamespaceInfo[] Namespaces => _namespaces;

    /// <summary>
    /// The NQN of aux subsystem <paramref name="pool"/>: "&lt;nqn&gt;.aux-N", the form the product's host-side
    /// discovery-client builds from its AuxSuffix setting.
    /// </summary>
    public static string AuxNqn(string subsystemNqn, int pool) =>
        subsystemNqn + ".aux-" + pool.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>
    /// Maps a Connect SUBNQN to a subsystem: the bare NQN is pool 0, "&lt;nqn&gt;.aux-N" is pool N for N in
    /// 1..AuxSubsystemCount, and so is the older "&lt;nqn&gt;:aux-N" spelling; anything else (aux-0 included) is null.
    /// </summary>
    public Subsystem? ResolveSubsystem(string subNqn)
    {
        foreach (var s in Subsystems) if (string.Equals(s.Nqn, subNqn, StringComparison.Ordinal)) return s;
        if (Backend is { } b && string.Equals(b.Nqn, subNqn, StringComparison.Ordinal)) return b;
        string prefix = Options.SubsystemNqn + ":aux-";
        if (!subNqn.StartsWith(prefix, StringComparison.Ordinal)) return null;
        var suffix = subNqn.AsSpan(prefix.Length);
        // One digit only: ":aux-01" or ":aux-+1" must not alias pool 1.
        if (suffix.Length != 1 || suffix[0] is < '1' or > '9') return null;
        int pool = suffix[0] - '0';
        return pool < Subsystems.Count ? Subsystems[pool] : null;
    }

    /// <summary>The namespace if <paramref name="hostNqn"/> may see it; a masked NSID is inactive to that host.</summary>
    public NamespaceInfo? GetNamespace(uint nsid, string hostNqn) =>
        GetNamespace(nsid) is { } ns && ns.IsVisibleTo(hostNqn) ? ns : null;

    public NamespaceInfo? GetNamespace(uint nsid)
    {
        var table = _namespaces;
        int lo = 0, hi = table.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            uint m = table[mid].Nsid;
            if (m == nsid) return table[mid];
            if (m < nsid) lo = mid + 1; else hi = mid - 1;
        }
        return null;
    }

    /// <summary>Adds a namespace to every subsystem and notifies I/O controllers (namespace attribute changed).</summary>
    public void AddNamespace(NamespaceInfo ns)
    {
        if (ns.Nsid is 0 or > MaxNamespaces) throw new ArgumentOutOfRangeException(nameof(ns), ns.Nsid, $"NSID must be 1..{MaxNamespaces}");
        lock (_lock)
        {
            if (GetNamespace(ns.Nsid) is not null) throw new InvalidOperationException($"NSID {ns.Nsid} is already in use");
            foreach (var other in _namespaces)
                if (other.VolumeId == ns.VolumeId) throw new InvalidOperationException($"volume {ns.VolumeId} is already exposed as NSID {other.Nsid}");
            var seeing = HostsSeeingSomethingLocked();
            var table = new List<NamespaceInfo>(_namespaces) { ns };
            table.Sort(static (a, b) => a.Nsid.CompareTo(b.Nsid));
            _namespaces = [.. table];
            NotifyNamespaceChangedLocked(ns.Nsid, c => ns.IsVisibleTo(c.HostNqn));
            NotifyDiscoveryChangesLocked(seeing);
        }
    }

    public bool RemoveNamespace(uint nsid)
    {
        lock (_lock)
        {
            var removed = GetNamespace(nsid);
            if (removed is null) return false;
            var seeing = HostsSeeingSomethingLocked();
            _namespaces = Array.FindAll(_namespaces, n => n.Nsid != nsid);
            NotifyNamespaceChangedLocked(nsid, c => removed.IsVisibleTo(c.HostNqn));
            NotifyDiscoveryChangesLocked(seeing);
            return true;
        }
    }

    /// <summary>Grows a namespace; hosts get the namespace-attribute-changed AEN and re-read its size.</summary>
    public void ResizeNamespace(uint nsid, long blockCount)
    {
        lock (_lock)
        {
            var ns = GetNamespace(nsid) ?? throw new InvalidOperationException($"no namespace {nsid}");
            if (blockCount < ns.BlockCount) throw new InvalidOperationException("namespaces only grow");
            ns.BlockCount = blockCount;
            NotifyNamespaceChangedLocked(nsid, c => ns.IsVisibleTo(c.HostNqn));
        }
    }

    /// <summary>
    /// Replaces a namespace's host list (namespace masking). Exactly the I/O controllers whose view changed (hosts
    /// added or removed) get it in their Changed Namespace List and the namespace-attribute-changed AEN; discovery
    /// controllers of hosts that now see something in the subsystem where they saw nothing, or the reverse, get the
    /// discovery-log-change AEN. Nothing is disconnected: a host left without namespaces keeps its connections.
    /// </summary>
    public void SetNamespaceHosts(uint nsid, HostAccess access)
    {
        lock (_lock)
        {
            var ns = GetNamespace(nsid) ?? throw new InvalidOperationException($"no namespace {nsid}");
            var before = ns.Hosts;
            var seeing = HostsSeeingSomethingLocked();
            ns.SetHosts(access);
            NotifyNamespaceChangedLocked(nsid, c => before.Allows(c.HostNqn) != access.Allows(c.HostNqn));
            NotifyDiscoveryChangesLocked(seeing);
        }
    }

    /// <summary>
    /// Replaces a subsystem's host list. Controllers of hosts no longer allowed are torn down, and discovery
    /// controllers are told their log changed.
    /// </summary>
    public void SetHostAccess(Subsystem subsystem, HostAccess access)
    {
        lock (_lock)
        {
            subsystem.Access = access;
            foreach (var c in _controllers.Values)
                if (c.Subsystem == subsystem && !access.Allows(c.HostNqn)) c.Kill();
            BumpDiscoveryLocked();
        }
    }

    /// <summary>
    /// This node's lease fence (<see cref="LeaseFence"/>): the cluster code moves it; the namespaces of cluster replicas
    /// reference it. Open on a lone node.
    /// </summary>
    public LeaseFence Fence { get; } = new();

    /// <summary>
    /// The fence changed what the ANA log page reports (it went down, or came back): CHGCNT moves and every I/O
    /// controller gets the ANA change notice, as for <see cref="SetAnaState"/>.
    /// </summary>
    public void NotifyAnaChange()
    {
        lock (_lock)
        {
            Interlocked.Increment(ref _anaChangeCount);
            foreach (var c in _controllers.Values) c.PostEvent(AsyncEvent.AnaChange);
        }
    }

    /// <summary>CHGCNT of the ANA log page: bumped by every ANA state change.</summary>
    public ulong AnaChangeCount => (ulong)Interlocked.Read(ref _anaChangeCount);

    /// <summary>
    /// Sets this node's ANA state of a namespace's group. On a change, every I/O controller gets the ANA change notice
    /// (AEN, log page 0Ch) and commands to the namespace see the new state at once. False when nothing changed.
    /// </summary>
    public bool SetAnaState(uint nsid, AnaState state)
    {
        lock (_lock)
        {
            var ns = GetNamespace(nsid) ?? throw new InvalidOperationException($"no namespace {nsid}");
            if (ns.AnaState == state) return false;
            ns.ChangeAnaState(state);
            NotifyAnaChange();
            return true;
        }
    }

    /// <summary>
    /// A cluster primary handing its volume over (drain): the namespace turns <paramref name="state"/> (not optimized:
    /// new commands are refused with the ANA path status, AEN to the hosts), then every I/O queue refuses the commands
    /// it holds there that storage has not seen, with the same status (the host retries them on the new primary); the
    /// task completes once the commands storage already executes are done, their forwards to the secondaries
    /// included. After that nothing the node acknowledged is still moving, and nothing it has not is written.
    /// </summary>
    public Task QuiesceAsync(uint nsid, AnaState state)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lock)
        {
            var ns = GetNamespace(nsid) ?? throw new InvalidOperationException($"no namespace {nsid}");
            SetAnaState(nsid, state);
            var fence = new Engine.AbortFence(done.SetResult);
            foreach (var c in _controllers.Values)
            {
                if (c.IsDiscovery) continue;
                foreach (var queue in c.IoQueues())
                {
                    fence.Hold();
                    if (!queue.PostAbort(ns, fence, NvmeStatus.AsymmetricAccessInaccessible)) fence.Signal();
                }
            }
            fence.Signal();
        }
        return done.Task;
    }

    /// <summary>
    /// The I/O listeners of the other nodes of the cluster (the discovery log lists them with this node's own, so a
    /// host that knows one node finds them all). A change bumps the discovery generation and notifies discovery
    /// controllers. False when the list is the same.
    /// </summary>
    public bool SetPeerListeners(IReadOnlyList<ListenerInfo> peers)
    {
        lock (_lock)
        {
            if (peers.Count == _peerListeners.Count && peers.SequenceEqual(_peerListeners)) return false;
            _peerListeners = [.. peers];
            BumpDiscoveryLocked();
            return true;
        }
    }

    public void AddListener(ListenerInfo listener)
    {
        lock (_lock)
        {
            _listeners.Add(listener);
            BumpDiscoveryLocked();
        }
    }

    public void AddReferral(Referral referral)
    {
        lock (_lock)
        {
            if (_referrals.Contains(referral)) return;
            _referrals.Add(referral);
            BumpDiscoveryLocked();
        }
    }

    /// <summary>The current referrals (a copy).</summary>
    public IReadOnlyList<Referral> Referrals
    {
        get
        {
            lock (_lock) return [.. _referrals];
        }
    }

    public bool RemoveReferral(Referral referral)
    {
        lock (_lock)
        {
            if (!_referrals.Remove(referral)) return false;
            BumpDiscoveryLocked();
            return true;
        }
    }

    public IReadOnlyList<ControllerSnapshot> ListControllers()
    {
        lock (_lock)
        {
            var list = new List<ControllerSnapshot>(_controllers.Count + _discoveryControllers.Count);
            foreach (var c in _controllers.Values) list.Add(Snapshot(c));
            foreach (var c in _discoveryControllers) list.Add(Snapshot(c));
            list.Sort(static (a, b) => (a.PoolId, a.Cntlid).CompareTo((b.PoolId, b.Cntlid)));
            return list;
        }
    }

    /// <summary>Live I/O controllers of one pool on one shard (lightbox_fe_ctrl_id_used).</summary>
    public int ControllersInUse(int poolId, int shard)
    {
        lock (_lock)
        {
            int n = 0;
            foreach (var c in _controllers.Values) if (c.Subsystem!.PoolId == poolId && c.Shard == shard) n++;
            return n;
        }
    }

    /// <summary>Kills every controller (graceful shutdown, after in-flight commands finished).</summary>
    public void DisconnectAll()
    {
        lock (_lock)
        {
            foreach (var c in _controllers.Values) c.Kill();
            foreach (var c in _discoveryControllers) c.Kill();
        }
    }

    /// <summary>Kills one controller by pool and ID; false when it does not exist.</summary>
    public bool Disconnect(int poolId, ushort cntlid)
    {
        lock (_lock)
        {
            if (!_controllers.TryGetValue((poolId, cntlid), out var c)) return false;
            c.Kill();
            return true;
        }
    }

    internal NvmeStatus CreateController(Subsystem? subsystem, string hostNqn, Guid hostId, int katoMs,
        TargetConnection admin, out Controller? controller)
    {
        controller = null;
        lock (_lock)
        {
            var ids = subsystem?.ControllerIds ?? _discoveryIds;
            if (!ids.TryAllocate(out ushort cntlid)) return NvmeStatus.ConnectControllerBusy;
            controller = new Controller(cntlid, subsystem, hostNqn, hostId, katoMs, admin, Options);
            if (subsystem is null) _discoveryControllers.Add(controller);
            else _controllers.Add((subsystem.PoolId, cntlid), controller);
            return NvmeStatus.Success;
        }
    }

    internal void DestroyController(Controller controller)
    {
        controller.Kill();
        lock (_lock)
        {
            bool removed = controller.Subsystem is null
                ? _discoveryControllers.Remove(controller)
                : _controllers.Remove((controller.Subsystem.PoolId, controller.Cntlid));
            if (removed) (controller.Subsystem?.ControllerIds ?? _discoveryIds).Release(controller.Cntlid);
        }
    }

    /// <summary>
    /// A host read the discovery log (70h) with RAE=0 on one of its discovery controllers: the discovery-log-change
    /// notice is re-armed on all of them, and one held back meanwhile is sent when the log changed since
    /// <paramref name="genctrRead"/>.
    /// </summary>
    internal void OnDiscoveryLogRead(string hostNqn, ulong genctrRead)
    {
        lock (_lock)
        {
            bool stale = genctrRead < DiscoveryGeneration;
            foreach (var c in _discoveryControllers)
                if (string.Equals(c.HostNqn, hostNqn, StringComparison.Ordinal)) c.UnmaskLogPage(LogPageId.Discovery, stale);
        }
    }

    internal Controller? FindController(Subsystem subsystem, ushort cntlid)
    {
        lock (_lock) return _controllers.GetValueOrDefault((subsystem.PoolId, cntlid));
    }

    /// <summary>
    /// The discovery log entries a host may see: the default subsystem (when it allows the host) on every I/O
    /// listener, this node's and (in a cluster) the live peers', and referrals. Aux subsystems are reachable but not advertised: a host uses one of them, chosen on
    /// the host, and hosts that connect every entry (Lightbits' discovery-client does) would otherwise connect to all.
    /// </summary>
    internal List<DiscoveryEntry> DiscoveryEntriesFor(string hostNqn, out ulong genctr)
    {
        lock (_lock)
        {
            genctr = DiscoveryGeneration;
            var entries = new List<DiscoveryEntry>();
            foreach (var l in _listeners.Concat(_peerListeners))
            {
                if (l.IsDiscovery) continue;
                var s = Subsystems[0];
                if (s.Access.Allows(hostNqn) && SeesSomething(hostNqn)) entries.Add(Entry(DiscoverySubtype.Nvm, l.PortId, l.TrSvcId, l.TrAddr, s.Nqn, l.IsIpv6));
            }
            foreach (var r in _referrals)
                entries.Add(Entry(DiscoverySubtype.Referral, r.PortId, r.TrSvcId, r.TrAddr, TargetOptions.DiscoveryNqn, r.TrAddr.Contains(':')));
            return entries;
        }
    }

    private static DiscoveryEntry Entry(DiscoverySubtype subtype, ushort portId, string svc, string addr, string nqn, bool ipv6) =>
        new(subtype, portId, svc, addr, nqn, ipv6 ? NvmfAddressFamily.Ipv6 : NvmfAddressFamily.Ipv4, Treq: 0, AdminMaxSqSize: 32);

    private ControllerSnapshot Snapshot(Controller c) => new(c.Cntlid, c.Subsystem?.PoolId ?? -1,
        c.Subsystem?.Nqn ?? TargetOptions.DiscoveryNqn, c.HostNqn, c.IoQueueCount, c.Shard,
        c.AdminConnection.Context.PeerAddress, c.IsDiscovery);

    /// <summary>The I/O controllers <paramref name="affected"/> selects get the NSID in their Changed Namespace List and the AEN.</summary>
    private void NotifyNamespaceChangedLocked(uint nsid, Func<Controller, bool> affected)
    {
        foreach (var c in _controllers.Values)
        {
            if (!affected(c)) continue;
            lock (c.ChangedNamespaces) c.ChangedNamespaces.Add(nsid);
            c.PostEvent(AsyncEvent.NamespaceAttributeChanged);
        }
    }

    /// <summary>Whether a host may see at least one namespace: the discovery log lists a subsystem only then.</summary>
    private bool SeesSomething(string hostNqn)
    {
        foreach (var ns in _namespaces)
            if (ns.IsVisibleTo(hostNqn)) return true;
        return false;
    }

    /// <summary>The hosts of the discovery controllers that see a namespace now (before a change).</summary>
    private HashSet<string> HostsSeeingSomethingLocked()
    {
        var hosts = new HashSet<string>(StringComparer.Ordinal);
        foreach (var c in _discoveryControllers)
            if (SeesSomething(c.HostNqn)) hosts.Add(c.HostNqn);
        return hosts;
    }

    /// <summary>
    /// After a namespace change: the discovery log of a host whose "sees something" flipped changed, so the
    /// generation moves and that host's discovery controllers (only theirs) are told.
    /// </summary>
    private void NotifyDiscoveryChangesLocked(HashSet<string> seeingBefore)
    {
        bool bumped = false;
        foreach (var c in _discoveryControllers)
        {
            if (seeingBefore.Contains(c.HostNqn) == SeesSomething(c.HostNqn)) continue;
            if (!bumped) Interlocked.Increment(ref _genctr);
            bumped = true;
            c.PostEvent(AsyncEvent.DiscoveryLogChanged);
        }
    }

    private void BumpDiscoveryLocked()
    {
        Interlocked.Increment(ref _genctr);
        foreach (var c in _discoveryControllers) c.PostEvent(AsyncEvent.DiscoveryLogChanged);
    }
}
