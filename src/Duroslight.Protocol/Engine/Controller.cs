using System.Collections.Concurrent;
using Duroslight.Protocol.Subsystems;

namespace Duroslight.Protocol.Engine;

/// <summary>
/// One NVMe controller: created by an admin-queue Connect, joined by I/O-queue Connects, shared by those queues'
/// connections (which a reactor may run on different threads). Fields the admin connection alone touches are
/// plain; fields any queue reads are volatile; cross-thread events go through a concurrent queue and a wake-up.
/// </summary>
public sealed class Controller
{
    private readonly ConcurrentQueue<AsyncEvent> _events = new();
    private readonly ConcurrentDictionary<AsyncEvent, byte> _queuedEvents = new();
    private readonly List<TargetConnection> _ioQueues = [];
    // Log pages whose notice was sent and not yet read (RAE=0), with a notice refused meanwhile, if any.
    private readonly Dictionary<byte, AsyncEvent?> _masked = [];
    private long _lastActivityMs;
    private volatile bool _ready;
    private volatile bool _dead;

    internal Controller(ushort cntlid, Subsystem? subsystem, string hostNqn, Guid hostId, int katoMs,
        TargetConnection admin, int shard)
    {
        Cntlid = cntlid;
        Subsystem = subsystem;
        HostNqn = hostNqn;
        HostId = hostId;
        KatoMs = katoMs;
        AdminConnection = admin;
        Shard = shard;
    }

    public ushort Cntlid { get; }
    /// <summary>The NVM subsystem, or null for a discovery controller.</summary>
    public Subsystem? Subsystem { get; }
    public bool IsDiscovery => Subsystem is null;
    public string HostNqn { get; }
    public Guid HostId { get; }
    public int Shard { get; }
    public TargetConnection AdminConnection { get; }

    /// <summary>Keep Alive Timeout in ms; 0 disables the timer.</summary>
    public int KatoMs { get; internal set; }

    // Admin-connection state (CC, CSTS, features).
    internal uint Cc;
    internal uint Csts;
    internal uint AsyncEventConfig;
    internal int IoQueuesGranted;
    internal bool WriteCacheEnabled = true;
    internal uint TemperatureThreshold = 0x0157; // 343 K, the spec's customary default.
    internal readonly SortedSet<uint> ChangedNamespaces = [];

    /// <summary>CC.EN = 1 and CSTS.RDY = 1: I/O queues may run commands.</summary>
    public bool IsReady => _ready && !_dead;

    public bool IsDead => _dead;

    public long LastActivityMs => Volatile.Read(ref _lastActivityMs);

    public int IoQueueCount
    {
        get { lock (_ioQueues) return _ioQueues.Count; }
    }

    internal void SetReady(bool ready) => _ready = ready;

    /// <summary>Any command on any of its queues keeps the controller alive (traffic-based keep alive).</summary>
    internal void Touch(long nowMs) => Volatile.Write(ref _lastActivityMs, nowMs);

    internal bool TryAttach(TargetConnection ioQueue, ushort qid)
    {
        lock (_ioQueues)
        {
            if (_dead) return false;
            foreach (var q in _ioQueues) if (q.QueueId == qid) return false;
            _ioQueues.Add(ioQueue);
            return true;
        }
    }

    internal void Detach(TargetConnection ioQueue)
    {
        lock (_ioQueues) _ioQueues.Remove(ioQueue);
    }

    /// <summary>
    /// Queues an event for the admin connection (any thread) and wakes it. An event already queued and not yet
    /// delivered is not queued twice (the host reads the latest log page anyway), so a host that never sends an
    /// AER cannot make the queue grow.
    /// </summary>
    public void PostEvent(AsyncEvent e)
    {
        if (_dead || !_queuedEvents.TryAdd(e, 0)) return;
        _events.Enqueue(e);
        AdminConnection.Signal.Wake();
    }

    /// <summary>
    /// Claims the event's log page for a notice about to be sent: false while an earlier notice for that page is
    /// unread (the host has not read the page with RAE=0 since). The refused event is remembered for
    /// <see cref="UnmaskLogPage"/>. Any thread: discovery controllers of one host unmask each other.
    /// </summary>
    internal bool TryMaskLogPage(AsyncEvent e)
    {
        lock (_masked)
        {
            if (_masked.TryAdd(e.LogPage, null)) return true;
            _masked[e.LogPage] = e;
            return false;
        }
    }

    /// <summary>
    /// The host read <paramref name="logPage"/> with RAE=0: notices for it may be sent again. A notice refused
    /// meanwhile is posted now when <paramref name="hostIsStale"/> (the page changed after what the host read).
    /// </summary>
    internal void UnmaskLogPage(byte logPage, bool hostIsStale)
    {
        AsyncEvent? missed;
        lock (_masked)
        {
            if (!_masked.Remove(logPage, out missed)) return;
        }
        if (missed is { } e && hostIsStale) PostEvent(e);
    }

    /// <summary>Events waiting for an AER (at most one per kind).</summary>
    public int PendingEvents => _events.Count;

    internal bool TryTakeEvent(out AsyncEvent e)
    {
        if (!_events.TryDequeue(out e)) return false;
        _queuedEvents.TryRemove(e, out _);
        return true;
    }

    /// <summary>Marks the controller gone and wakes every queue so each closes on its own thread.</summary>
    internal void Kill()
    {
        TargetConnection[] queues;
        lock (_ioQueues)
        {
            if (_dead) return;
            _dead = true;
            queues = [.. _ioQueues];
        }
        foreach (var q in queues) q.Signal.Wake();
        AdminConnection.Signal.Wake();
    }
}
