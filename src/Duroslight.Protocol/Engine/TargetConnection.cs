using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;
using Duroslight.Protocol.Wire;

namespace Duroslight.Protocol.Engine;

/// <summary>
/// The sans-IO NVMe/TCP target side of one TCP connection (one NVMe queue). The driver feeds received bytes to
/// <see cref="Receive"/>, sends <see cref="PendingOutput"/>, executes the <see cref="StorageRequest"/>s it takes with
/// <see cref="TryTakeStorageRequest"/> and hands them back with <see cref="CompleteStorage"/>, and calls
/// <see cref="Poll"/> on wake-ups and timer ticks. All calls for one connection come from one thread; time is
/// passed in. The engine owns no socket, thread or timer.
/// </summary>
public sealed partial class TargetConnection : IPduSink, IDisposable
{
    private enum Phase { AwaitingICReq, AwaitingConnect, Connected, Closing }

    private const int InitialSlots = 32;
    private const byte DigestHeader = 1;
    private const byte DigestData = 2;

    private readonly Target _target;
    private readonly TargetOptions _options;
    private readonly PduFramer _framer;
    private readonly OutputBuffer _out = new();
    private readonly Queue<StorageRequest> _storageQueue = new();
    private readonly Dictionary<ushort, int> _slotByCid = new(InitialSlots);
    private readonly Stack<int> _freeSlots = new(InitialSlots);
    private readonly List<CommandSlot> _parkedAers = new(4);
    private readonly Queue<CommandSlot> _budgetWaiters = new();
    private CommandSlot[] _slots = [];
    private Phase _phase = Phase.AwaitingICReq;
    private CommandSlot? _receiving;
    private int _receivingLength;
    private long _now;
    private uint _sqHeadCount;
    private int _sqEntries = InitialSlots;
    private bool _sqFlowControlDisabled;
    private int _hostDataAlignment;
    private int _maxR2TPerCommand = 1;
    private int _inFlightStorage;
    private int _awaitingH2CData;
    private long _lastReceiveMs = -1;

    public TargetConnection(Target target, ConnectionContext context, IConnectionSignal signal)
    {
        _target = target;
        _options = target.Options;
        Context = context;
        Signal = signal;
        _framer = new PduFramer(this, static t => t is PduType.ICReq or PduType.H2CTermReq or PduType.CapsuleCmd or PduType.H2CData)
        {
            MaxPduLength = MaxPduLength,
        };
        GrowSlots(InitialSlots);
    }

    public ConnectionContext Context { get; }
    public IConnectionSignal Signal { get; }

    /// <summary>The NVMe queue this connection carries (0 = admin), valid once connected.</summary>
    public ushort QueueId { get; private set; }

    public Controller? Controller { get; private set; }

    /// <summary>Bytes to send, in order. Call <see cref="ConsumeOutput"/> with what the socket took.</summary>
    public ReadOnlyMemory<byte> PendingOutput => _out.Pending;

    /// <summary>The C2HTermReq this connection sent, if any: the driver logs it (the engine has no logger).</summary>
    public Termination? SentTermination { get; private set; }

    /// <summary>The driver should stop reading, send what is pending, and close the socket.</summary>
    public bool WantsClose => _phase == Phase.Closing;

    /// <summary>Storage requests handed out and not yet completed; the driver disposes only when this is 0.</summary>
    public int InFlightStorage => _inFlightStorage;

    /// <summary>Why the connection closed itself when the host owed data too long (<see cref="TargetOptions.HostDataTimeoutMs"/>).</summary>
    public bool TimedOutWaitingForHost { get; private set; }

    /// <summary>Commands received and not yet answered (AERs excluded): the driver's back-pressure gauge.</summary>
    public int OutstandingCommands => _slotByCid.Count - _parkedAers.Count;

    public void ConsumeOutput(int count) => _out.Consume(count);

    /// <summary>
    /// For drivers whose send completes later (io_uring): lends the pending bytes, which stay where they are while
    /// the engine appends more, until <see cref="EndSend"/> says how many the socket took.
    /// </summary>
    public ReadOnlyMemory<byte> BeginSend() => _out.BeginSend();

    public void EndSend(int sent) => _out.EndSend(sent);

    public bool TryTakeStorageRequest(out StorageRequest request) => _storageQueue.TryDequeue(out request!);

    /// <summary>Feeds received bytes. Protocol violations end in a C2HTermReq and <see cref="WantsClose"/>.</summary>
    public void Receive(ReadOnlySpan<byte> data, long nowMs)
    {
        _now = nowMs;
        if (_phase == Phase.Closing) return;
        if (!data.IsEmpty) _lastReceiveMs = nowMs;
        var verdict = _framer.Feed(data, out var error);
        if (verdict == HeaderVerdict.Fatal) Terminate(error);
        else if (verdict == HeaderVerdict.Close) Close();
    }

    /// <summary>Runs timers and cross-thread work: keep-alive expiry, controller teardown, AEN delivery.</summary>
    public void Poll(long nowMs)
    {
        _now = nowMs;
        if (_phase == Phase.Closing) return;
        if (HostDataOverdue(nowMs))
        {
            TimedOutWaitingForHost = true;
            Close();
            return;
        }
        StartBudgetWaiters();
        var ctrl = Controller;
        if (ctrl is null) return;
        if (ctrl.IsDead)
        {
            Close();
            return;
        }
        if (QueueId != 0) return;
        if (ctrl.KatoMs > 0 && nowMs - ctrl.LastActivityMs > ctrl.KatoMs)
        {
            Close();
            return;
        }
        DeliverEvents(ctrl);
    }

    /// <summary>The host owes bytes (ICReq/Connect, the rest of a PDU, R2T'd data) and sent none for the timeout.</summary>
    private bool HostDataOverdue(long nowMs)
    {
        int timeout = _options.HostDataTimeoutMs;
        if (timeout == 0) return false;
        if (_lastReceiveMs < 0) _lastReceiveMs = nowMs; // the first poll after accept starts the clock
        bool owed = _phase != Phase.Connected || _framer.InsidePdu || _awaitingH2CData > 0;
        return owed && nowMs - _lastReceiveMs > timeout;
    }

    /// <summary>Returns a storage request with its NVMe status; for reads the buffer holds the data.</summary>
    public void CompleteStorage(StorageRequest request, NvmeStatus status)
    {
        if (request.Owner != this) throw new ArgumentException("request belongs to another connection", nameof(request));
        var slot = _slots[request.Slot];
        if (slot.State != CommandState.Executing) throw new InvalidOperationException("request is not executing");
        _inFlightStorage--;
        if (_phase == Phase.Closing)
        {
            slot.Reset();
            return;
        }
        Complete(slot, status);
    }

    /// <summary>The socket is gone (peer closed, error, or our close): tears down queue and controller state.</summary>
    public void OnTransportClosed() => Close();

    public void Dispose()
    {
        Close();
        if (_inFlightStorage != 0) throw new InvalidOperationException("storage requests still in flight");
        _out.Dispose();
    }

    HeaderVerdict IPduSink.OnHeader(ReadOnlySpan<byte> header, int dataLength, out Memory<byte> destination, out FramingError error)
    {
        destination = default;
        error = default;
        _receiving = null;
        var type = (PduType)header[PduLayout.OffType];
        switch (type)
        {
            case PduType.ICReq:
                return OnICReq(header, out error);
            case PduType.H2CTermReq:
                return HeaderVerdict.Close;
            case PduType.CapsuleCmd when _phase is Phase.AwaitingConnect or Phase.Connected:
                return OnCapsuleHeader(header, dataLength, out destination, out error);
            case PduType.H2CData when _phase == Phase.Connected:
                return OnH2CDataHeader(header, dataLength, out destination, out error);
            default:
                return Fatal(TermReqFes.PduSequenceError, 0, out error);
        }
    }

    HeaderVerdict IPduSink.OnPduComplete(bool dataDigestOk, out FramingError error)
    {
        error = default;
        var slot = _receiving;
        _receiving = null;
        if (slot is null) return HeaderVerdict.Accept;
        if (slot.State == CommandState.ReceivingCapsuleData) OnCapsuleComplete(slot, dataDigestOk);
        else OnH2CDataComplete(slot, dataDigestOk);
        return HeaderVerdict.Accept;
    }

    private HeaderVerdict OnICReq(ReadOnlySpan<byte> h, out FramingError error)
    {
        error = default;
        if (_phase != Phase.AwaitingICReq) return Fatal(TermReqFes.PduSequenceError, 0, out error);
        ushort pfv = System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(h[PduLayout.OffPfv..]);
        byte hpda = h[PduLayout.OffHpdaOrCpda];
        byte digest = h[PduLayout.OffDigest];
        uint maxR2T = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(h[PduLayout.OffMaxR2TOrMaxH2CData..]);
        if (pfv != 0) return Fatal(TermReqFes.UnsupportedParameter, PduLayout.OffPfv, out error);
        if (hpda > 31) return Fatal(TermReqFes.InvalidPduHeaderField, PduLayout.OffHpdaOrCpda, out error);
        if ((digest & ~(DigestHeader | DigestData)) != 0) return Fatal(TermReqFes.InvalidPduHeaderField, PduLayout.OffDigest, out error);
        bool hdgst = (digest & DigestHeader) != 0, ddgst = (digest & DigestData) != 0;
        _hostDataAlignment = hpda == 0 ? 0 : (hpda + 1) * 4;
        // MAXR2T is 0's based; bound it so one command cannot make us queue unbounded R2Ts. Widen first: FFFFFFFFh + 1
        // must not wrap to 0, which would allow no R2T at all and stall every write.
        _maxR2TPerCommand = (int)Math.Min((ulong)maxR2T + 1, 16UL);
        _out.Advance(PduWriter.ICResp(_out.GetSpan(PduLayout.ICRespSize), 0, hdgst, ddgst, (uint)_options.MaxH2CData));
        _framer.HeaderDigest = hdgst;
        _framer.DataDigest = ddgst;
        _phase = Phase.AwaitingConnect;
        return HeaderVerdict.Accept;
    }

    private int MaxPduLength(PduType type)
    {
        const int slack = PduLayout.DigestSize * 2 + 128; // digests and HPDA-style padding
        return type switch
        {
            PduType.CapsuleCmd => PduLayout.CapsuleCmdHeaderSize + _options.MaxInCapsuleData + slack,
            PduType.H2CData => PduLayout.DataHeaderSize + _options.MaxH2CData + slack,
            PduType.H2CTermReq => PduLayout.TermReqHeaderSize + PduLayout.TermReqMaxData,
            _ => PduLayout.ICReqSize,
        };
    }

    private void Terminate(FramingError error)
    {
        if (_phase == Phase.Closing) return;
        var header = _framer.CurrentHeader;
        SentTermination = new Termination(error.Fes, error.Fei, header.IsEmpty ? null : (PduType)header[PduLayout.OffType]);
        int n = PduWriter.TermReq(_out.GetSpan(PduLayout.TermReqHeaderSize + PduLayout.TermReqMaxData),
            PduType.C2HTermReq, error.Fes, error.Fei, header);
        _out.Advance(n);
        Close();
    }

    /// <summary>Enters Closing once: frees idle slots, detaches from (or destroys) the controller.</summary>
    private void Close()
    {
        if (_phase == Phase.Closing) return;
        _phase = Phase.Closing;
        foreach (var slot in _slots)
            if (slot.State is not (CommandState.Free or CommandState.Executing)) slot.Reset();
        _parkedAers.Clear();
        _budgetWaiters.Clear();
        _slotByCid.Clear();
        _awaitingH2CData = 0;
        var ctrl = Controller;
        if (ctrl is null) return;
        if (QueueId == 0) _target.DestroyController(ctrl);
        else ctrl.Detach(this);
    }

    private static HeaderVerdict Fatal(TermReqFes fes, uint fei, out FramingError error)
    {
        error = new FramingError(fes, fei);
        return HeaderVerdict.Fatal;
    }

    private void GrowSlots(int count)
    {
        if (count <= _slots.Length) return;
        var bigger = new CommandSlot[count];
        _slots.CopyTo(bigger, 0);
        for (int i = _slots.Length; i < count; i++)
        {
            bigger[i] = new CommandSlot(i, new StorageRequest(this, i), Context.Buffers, Context.HostData);
            _freeSlots.Push(i);
        }
        _slots = bigger;
    }
}
