using System.Collections.Concurrent;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;

namespace Duroslight.Protocol.Engine;

/// <summary>
/// One NVMe controller and the state that belongs to it rather than to a queue: its properties (CC, CSTS), its
/// features (<see cref="Features"/>), keep-alive, asynchronous events (queued notices, masked log pages and the
/// parked AERs) and the I/O queues attached to it. Created by an admin-queue Connect, joined by I/O-queue Connects,
/// shared by those queues' connections (which a reactor may run on different threads). What the admin connection
/// alone touches is plain; what any queue reads is volatile; cross-thread events go through a concurrent queue
/// and a wake-up. Per-controller state added later (reservation keys, namespace attachment, ANA group states) lives
/// here too; the I/O path reads it in <see cref="IoCommands"/>' one gate.
/// </summary>
public sealed class Controller
{
    /// <summary>AERs a host may keep outstanding (Identify AERL + 1).</summary>
    internal const int AerLimit = 4;

    /// <summary>NVMe 1.3 (VS).</summary>
    internal const uint Version = 0x0001_0300;

    // CC and CSTS fields.
    private const uint CcEnable = 1, CcShnMask = 3u << 14;
    private const uint CstsReady = 1, CstsFatal = 2, CstsShstComplete = 2u << 2, CstsShstMask = 3u << 2;

    /// <summary>Properties end where the vendor-specific range starts (NVMe-oF property map 0h..FFFh).</summary>
    private const uint PropertySpaceEnd = 0x1000;

    private readonly TargetOptions _options;
    private readonly ConcurrentQueue<AsyncEvent> _events = new();
    private readonly ConcurrentDictionary<AsyncEvent, byte> _queuedEvents = new();
    private readonly List<TargetConnection> _ioQueues = [];
    // Log pages whose notice was sent and not yet read (RAE=0), with a notice refused meanwhile, if any.
    private readonly Dictionary<byte, AsyncEvent?> _masked = [];
    // AERs parked on the admin queue, oldest first (admin connection's thread only).
    private readonly List<CommandSlot> _parkedAers = new(AerLimit);
    private long _lastActivityMs;
    private volatile bool _ready;
    private volatile bool _dead;

    internal Controller(ushort cntlid, Subsystem? subsystem, string hostNqn, Guid hostId, int katoMs,
        TargetConnection admin, TargetOptions options)
    {
        Cntlid = cntlid;
        Subsystem = subsystem;
        HostNqn = hostNqn;
        HostId = hostId;
        ReservationHost = ReservationCommands.HostOf(hostId);
        AdminConnection = admin;
        Shard = admin.Context.Shard;
        _options = options;
        Features = new ControllerFeatures(options, subsystem is null, katoMs);
    }

    public ushort Cntlid { get; }
    /// <summary>The NVM subsystem, or null for a discovery controller.</summary>
    public Subsystem? Subsystem { get; }
    public bool IsDiscovery => Subsystem is null;
    public string HostNqn { get; }
    public Guid HostId { get; }

    /// <summary>The 128-bit Host Identifier (Connect data HOSTID) that reservations key registrations by.</summary>
    public UInt128 ReservationHost { get; }

    /// <summary>Reservation notifications waiting for the host (log page 80h).</summary>
    internal ReservationLog ReservationLog { get; } = new();
    public int Shard { get; }
    public TargetConnection AdminConnection { get; }

    /// <summary>Set/Get Features state (admin connection's thread).</summary>
    internal ControllerFeatures Features { get; }

    /// <summary>Keep Alive Timeout in ms; 0 disables the timer.</summary>
    public int KatoMs => Features.KatoMs;

    // Controller Configuration and Status properties (admin connection's thread).
    internal uint Cc;
    internal uint Csts;
    internal readonly SortedSet<uint> ChangedNamespaces = [];

    /// <summary>CC.EN = 1 and CSTS.RDY = 1: I/O queues may run commands.</summary>
    public bool IsReady => _ready && !_dead;

    public bool IsDead => _dead;

    public long LastActivityMs => Volatile.Read(ref _lastActivityMs);

    public int IoQueueCount
    {
        get { lock (_ioQueues) return _ioQueues.Count; }
    }

    /// <summary>Any command on any of its queues keeps the controller alive (traffic-based keep alive).</summary>
    internal void Touch(long nowMs) => Volatile.Write(ref _lastActivityMs, nowMs);

    internal bool KeepAliveExpired(long nowMs) => KatoMs > 0 && nowMs - LastActivityMs > KatoMs;

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

    /// <summary>The I/O queues attached now (a copy; Preempt and Abort visits them).</summary>
    internal TargetConnection[] IoQueues()
    {
        lock (_ioQueues) return [.. _ioQueues];
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

    // ---- Properties (Fabrics Property Get / Property Set) ----

    /// <summary>CAP: MQES, CQR, TO = 7.5 s, CSS = NVM command set, MPSMIN = 4 KiB.</summary>
    private ulong Capabilities => (ulong)(_options.MaxQueueEntries - 1) | 1UL << 16 | 15UL << 24 | 1UL << 37;

    /// <summary>
    /// CAP (8 bytes), VS, CC, CSTS. Every other offset of the property space is reserved for a message-based
    /// controller (CMBSZ, PMRCAP, BPINFO, NSSR without subsystem reset...) and reads as 0h, as reserved register
    /// space does: SPDK's identify reads CMBSZ and PMRCAP and printed "Property Get failed" when they were refused.
    /// A defined property read in another width (properties are read in their native width), a misaligned or
    /// out-of-range offset, or a size other than 4 or 8 bytes is Invalid Field. Shutdown changes nothing here:
    /// CC and CSTS stay readable during and after it.
    /// </summary>
    internal NvmeStatus GetProperty(uint size, uint offset, out ulong value)
    {
        value = 0;
        if (size > 1) return NvmeStatus.InvalidField;
        bool eightBytes = size == 1;
        ulong? known = (offset, eightBytes) switch
        {
            (PropertyOffset.Cap, true) => Capabilities,
            (PropertyOffset.Vs, false) => Version,
            (PropertyOffset.Cc, false) => Cc,
            (PropertyOffset.Csts, false) => Csts,
            _ => null,
        };
        if (known is { } v)
        {
            value = v;
            return NvmeStatus.Success;
        }
        bool definedProperty = offset is PropertyOffset.Cap or PropertyOffset.Cap + 4 or PropertyOffset.Vs or PropertyOffset.Cc or PropertyOffset.Csts;
        bool aligned = offset % (eightBytes ? 8u : 4u) == 0;
        return !definedProperty && aligned && offset < PropertySpaceEnd ? NvmeStatus.Success : NvmeStatus.InvalidField;
    }

    /// <summary>Only CC is writable: enabling checks the queue entry sizes, disabling resets, shutdown completes at once.</summary>
    internal NvmeStatus SetProperty(uint size, uint offset, uint value)
    {
        if (offset != PropertyOffset.Cc || size != 0) return NvmeStatus.InvalidField;
        uint old = Cc, cc = value;
        Cc = cc;
        if ((cc & CcEnable) != 0 && (old & CcEnable) == 0) Enable(cc);
        else if ((cc & CcEnable) == 0 && (old & CcEnable) != 0) Reset();
        if ((cc & CcShnMask) != 0 && (old & CcShnMask) == 0)
        {
            // Shutdown: nothing is cached above the store's own durability, so it completes at once.
            Csts = (Csts & ~CstsShstMask) | CstsShstComplete;
        }
        else if ((cc & CcShnMask) == 0)
        {
            Csts &= ~CstsShstMask;
        }
        return NvmeStatus.Success;
    }

    private void Enable(uint cc)
    {
        uint css = (cc >> 4) & 0x7, mps = (cc >> 7) & 0xF, ams = (cc >> 11) & 0x7;
        uint iosqes = (cc >> 16) & 0xF, iocqes = (cc >> 20) & 0xF;
        bool valid = css == 0 && mps == 0 && ams == 0 && (IsDiscovery || (iosqes == 6 && iocqes == 4));
        Csts = valid ? CstsReady : CstsFatal;
        _ready = valid;
    }

    private void Reset()
    {
        Csts = 0;
        _ready = false;
    }

    // ---- Asynchronous events ----

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

    /// <summary>Events waiting for an AER (at most one per kind).</summary>
    public int PendingEvents => _events.Count;

    internal int ParkedAerCount => _parkedAers.Count;

    /// <summary>Parks an Asynchronous Event Request until an event comes; null when parked (it completes later).</summary>
    internal NvmeStatus? ParkAer(CommandSlot slot)
    {
        if (_parkedAers.Count >= AerLimit) return NvmeStatus.AsyncEventRequestLimitExceeded;
        slot.State = CommandState.AwaitingEvent;
        _parkedAers.Add(slot);
        DeliverEvents();
        return null;
    }

    /// <summary>An AER the host gave up on (its CID reused): it leaves the list without a completion.</summary>
    internal void RetireAer(CommandSlot slot) => _parkedAers.Remove(slot);

    internal void DropParkedAers() => _parkedAers.Clear();

    /// <summary>Completes parked AERs with pending events. An event whose log page the host has not read yet is
    /// held back until it does (see <see cref="UnmaskLogPage"/>); a disabled notice is dropped.</summary>
    internal void DeliverEvents()
    {
        while (_parkedAers.Count > 0 && TryTakeEvent(out var e))
        {
            if ((e.ConfigBit != 0 && (Features.AsyncEventConfig & e.ConfigBit) == 0) || !TryMaskLogPage(e)) continue;
            var slot = _parkedAers[0];
            _parkedAers.RemoveAt(0);
            AdminConnection.Complete(slot, NvmeStatus.Success, e.Dw0);
        }
    }

    private bool TryTakeEvent(out AsyncEvent e)
    {
        if (!_events.TryDequeue(out e)) return false;
        _queuedEvents.TryRemove(e, out _);
        return true;
    }

    /// <summary>
    /// Claims the event's log page for a notice about to be sent: false while an earlier notice for that page is
    /// unread (the host has not read the page with RAE=0 since). The refused event is remembered for
    /// <see cref="UnmaskLogPage"/>. Any thread: discovery controllers of one host unmask each other.
    /// </summary>
    private bool TryMaskLogPage(AsyncEvent e)
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
}
