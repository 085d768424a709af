using System.Buffers.Binary;
using System.Collections.Concurrent;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;
using Duroslight.Protocol.Wire;

namespace Duroslight.Protocol.Engine;

/// <summary>
/// The sans-IO NVMe/TCP target side of one TCP connection (one NVMe queue): the queue transport, as SPDK's tcp.c.
/// It frames PDUs (digests, ICReq/ICResp, termination), moves command data (in-capsule, R2T/H2CData, C2HData), keeps
/// the queue's state (command slots, SQ head, SQ flow control, the shard's host-data budget and the host-data
/// timeout) and writes responses; what commands mean is the command layer's (<see cref="CommandProcessor"/>), which
/// gets each <see cref="CommandSlot"/> to check once and to run. The driver feeds received bytes to
/// <see cref="Receive"/>, sends <see cref="PendingOutput"/>, executes the <see cref="StorageRequest"/>s it takes with
/// <see cref="TryTakeStorageRequest"/> and hands them back with <see cref="CompleteStorage"/>, and calls
/// <see cref="Poll"/> on wake-ups and timer ticks. All calls for one connection come from one thread; time is
/// passed in. The engine owns no socket, thread or timer.
/// </summary>
public sealed class TargetConnection : IPduSink, IDisposable
{
    private enum Phase { AwaitingICReq, AwaitingConnect, Connected, Closing }

    private const int InitialSlots = 32;
    private const byte DigestHeader = 1;
    private const byte DigestData = 2;

    private readonly TargetOptions _options;
    private readonly PduFramer _framer;
    private readonly CommandProcessor _commands;
    private readonly OutputBuffer _out;
    private readonly Queue<StorageRequest> _storageQueue = new();
    private readonly Dictionary<ushort, int> _slotByCid = new(InitialSlots);
    private readonly Stack<int> _freeSlots = new(InitialSlots);
    private readonly Queue<CommandSlot> _budgetWaiters = new();
    // Work other threads hand to this connection's thread (deferred completions, Preempt and Abort); rare.
    private readonly ConcurrentQueue<Mail> _mail = new();
    private readonly object _abortGate = new();
    private bool _refusesAborts;
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
    private int _abandoned;
    private int _awaitingH2CData;
    private long _lastReceiveMs = -1;

    public TargetConnection(Target target, ConnectionContext context, IConnectionSignal signal)
    {
        _options = target.Options;
        Context = context;
        Signal = signal;
        _out = new OutputBuffer(dataOwner: context.Buffers);
        _framer = new PduFramer(this, static t => t is PduType.ICReq or PduType.H2CTermReq or PduType.CapsuleCmd or PduType.H2CData)
        {
            MaxPduLength = MaxPduLength,
        };
        _commands = new CommandProcessor(target, this);
        GrowSlots(InitialSlots);
    }

    public ConnectionContext Context { get; }
    public IConnectionSignal Signal { get; }

    /// <summary>The time of the call being served (ms), for the command layer's keep-alive.</summary>
    internal long Now => _now;

    /// <summary>The NVMe queue this connection carries (0 = admin), valid once connected.</summary>
    public ushort QueueId { get; private set; }

    public Controller? Controller => _commands.Controller;

    /// <summary>
    /// Bytes to send, in order, when read data is copied (not <see cref="ConnectionContext.SendReadDataInPlace"/>).
    /// Call <see cref="ConsumeOutput"/> with what the socket took.
    /// </summary>
    public ReadOnlyMemory<byte> PendingOutput => _out.Pending;

    /// <summary>Whether anything waits to be sent (in-place read data included).</summary>
    public bool HasPendingOutput => !_out.IsEmpty;

    /// <summary>Bytes waiting to be sent, in-place read data included (the driver's back-pressure gauge).</summary>
    public long PendingOutputBytes => _out.PendingBytes;

    /// <summary>The C2HTermReq this connection sent, if any: the driver logs it (the engine has no logger).</summary>
    public Termination? SentTermination { get; private set; }

    /// <summary>The driver should stop reading, send what is pending, and close the socket.</summary>
    public bool WantsClose => _phase == Phase.Closing;

    /// <summary>
    /// Storage requests handed out and deferred commands (<see cref="CommandState.Deferred"/>) not yet completed; the
    /// driver disposes only when this is 0, and keeps polling until then.
    /// </summary>
    public int InFlightStorage => _inFlightStorage;

    /// <summary>Why the connection closed itself when the host owed data too long (<see cref="TargetOptions.HostDataTimeoutMs"/>).</summary>
    public bool TimedOutWaitingForHost { get; private set; }

    /// <summary>Commands answered with Command Interrupted because storage held them past <see cref="TargetOptions.StorageTimeoutMs"/>.</summary>
    public long StorageTimeouts { get; private set; }

    /// <summary>Commands received and not yet answered (AERs excluded): the driver's back-pressure gauge.</summary>
    public int OutstandingCommands => _slotByCid.Count - _commands.ParkedAers;

    public void ConsumeOutput(int count) => _out.Consume(count);

    /// <summary>
    /// For drivers whose send completes later (io_uring): lends the pending bytes, which stay where they are while
    /// the engine appends more, until <see cref="EndSend"/> says how many the socket took.
    /// </summary>
    public ReadOnlyMemory<byte> BeginSend() => _out.BeginSend();

    /// <summary>
    /// For gathering sends (sendmsg): lends the front of the output as at most <paramref name="segments"/>.Length
    /// pieces (PDU bytes from the output buffer, read data from its data buffer); returns how many. They stay valid
    /// until <see cref="EndSend"/>.
    /// </summary>
    public int BeginSend(Span<ReadOnlyMemory<byte>> segments) => _out.BeginSend(segments);

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
        if (!_mail.IsEmpty) ReadMail();
        if (_phase == Phase.Closing) return;
        if (HostDataOverdue(nowMs))
        {
            TimedOutWaitingForHost = true;
            Close();
            return;
        }
        StartBudgetWaiters();
        if (_inFlightStorage > _abandoned && _options.StorageTimeoutMs > 0) AnswerOverdueStorage(nowMs);
        if (!_commands.Poll(nowMs)) Close();
    }

    /// <summary>
    /// Answers commands storage has held past the timeout (a stalled device) with Command Interrupted, keeping their
    /// slots, and so their buffers, until storage returns. Their CIDs are released, so the host may reuse them at
    /// once; a spare slot is added for each, so the host can still fill its SQ. At most an SQ's worth are
    /// abandoned at a time (the rest keep waiting), which bounds the spare slots.
    /// </summary>
    private void AnswerOverdueStorage(long nowMs)
    {
        foreach (var slot in _slots)
        {
            if (_abandoned >= _sqEntries) return;
            if (slot.State != CommandState.Executing || slot.Abandoned || nowMs - slot.StorageStartedMs <= _options.StorageTimeoutMs) continue;
            _slotByCid.Remove(slot.Cid);
            slot.Abandoned = true;
            _abandoned++;
            StorageTimeouts++;
            WriteResponse(slot.Cid, NvmeStatus.CommandInterrupted, 0);
            GrowSlots(_sqEntries + _abandoned);
        }
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
        if (slot.Abandoned)
        {
            // Already answered (storage timeout): drop the late result; the buffer goes back only now.
            _abandoned--;
            slot.Reset();
            if (_phase != Phase.Closing) _freeSlots.Push(slot.Index);
            return;
        }
        if (_phase == Phase.Closing)
        {
            slot.Reset();
            return;
        }
        Complete(slot, FencedStatus(slot, status));
    }

    /// <summary>
    /// A host's write-type command on a cluster primary is checked against the lease fence again as it completes: one
    /// admitted just before the fence went down may finish after a new primary was chosen, and must not be
    /// acknowledged (the host retries it on the new path). Forwarded writes on the backend subsystem are not fenced.
    /// </summary>
    private NvmeStatus FencedStatus(CommandSlot slot, NvmeStatus status)
    {
        if (slot.Namespace?.Fence is not { } fence || slot.Request.Op == StorageOp.Read || fence.Holds) return status;
        return Controller?.Subsystem is { IsBackend: true } ? status : NvmeStatus.AsymmetricAccessInaccessible;
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
        ushort pfv = BinaryPrimitives.ReadUInt16LittleEndian(h[PduLayout.OffPfv..]);
        byte hpda = h[PduLayout.OffHpdaOrCpda];
        byte digest = h[PduLayout.OffDigest];
        uint maxR2T = BinaryPrimitives.ReadUInt32LittleEndian(h[PduLayout.OffMaxR2TOrMaxH2CData..]);
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
    internal void Close()
    {
        if (_phase == Phase.Closing) return;
        _phase = Phase.Closing;
        foreach (var slot in _slots)
            if (slot.State is not (CommandState.Free or CommandState.Executing or CommandState.Deferred)) slot.Reset();
        _budgetWaiters.Clear();
        _slotByCid.Clear();
        _awaitingH2CData = 0;
        _commands.OnQueueClosed();
        // Aborts posted from now on find nothing here to wait for; those already posted still hold executing commands.
        lock (_abortGate) _refusesAborts = true;
        ReadMail();
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

    private HeaderVerdict OnCapsuleHeader(ReadOnlySpan<byte> header, int dataLength, out Memory<byte> destination, out FramingError error)
    {
        destination = default;
        error = default;
        var sqe = header.Slice(PduLayout.CommonHeaderSize, SubmissionEntry.Size);
        var cmd = new SubmissionEntry(sqe);
        _sqHeadCount++;
        _commands.OnCommandArrived(_now);
        if (_slotByCid.TryGetValue(cmd.CommandId, out int existing))
        {
            if (_slots[existing].State != CommandState.AwaitingEvent)
            {
                // The original command keeps running; the duplicate is refused and its data dropped.
                WriteResponse(cmd.CommandId, NvmeStatus.CommandIdConflict, 0);
                return HeaderVerdict.Accept;
            }
            // SPDK's host aborts its AERs locally before detaching, without telling us, and reuses their CIDs (its
            // Property Get of CC then failed with Command ID Conflict). Such a host no longer waits for that AER:
            // retire it silently; pending events stay queued for the next AER.
            _commands.RetireAer(_slots[existing]);
            Release(_slots[existing]);
        }
        if (!_freeSlots.TryPop(out int index))
        {
            // More outstanding commands than the SQ the host connected: refuse without growing.
            WriteResponse(cmd.CommandId, NvmeStatus.CommandSequenceError, 0);
            return HeaderVerdict.Accept;
        }
        var slot = _slots[index];
        sqe.CopyTo(slot.Sqe);
        slot.Cid = cmd.CommandId;
        slot.State = CommandState.ReceivingCapsuleData;
        _slotByCid.Add(slot.Cid, index);
        _receiving = slot;
        if (dataLength > 0) destination = AcceptInCapsuleData(slot, dataLength);
        return HeaderVerdict.Accept;
    }

    /// <summary>Where in-capsule data goes: the slot's buffer, or nowhere when the SGL does not describe it.</summary>
    private Memory<byte> AcceptInCapsuleData(CommandSlot slot, int dataLength)
    {
        var cmd = slot.Command;
        if (cmd.SglType != SglTypes.InCapsuleData) slot.DeferredStatus = NvmeStatus.SglDescriptorTypeInvalid;
        else if (cmd.Direction != DataDirection.HostToController) slot.DeferredStatus = NvmeStatus.InvalidField;
        else if (cmd.SglLength != dataLength) slot.DeferredStatus = NvmeStatus.DataSglLengthInvalid;
        else if (cmd.SglAddress != 0) slot.DeferredStatus = NvmeStatus.SglOffsetInvalid;
        if (!slot.DeferredStatus.IsSuccess) return default;
        slot.RentBuffer(dataLength);
        slot.Received = dataLength;
        return slot.Data;
    }

    private void OnCapsuleComplete(CommandSlot slot, bool dataDigestOk)
    {
        if (!dataDigestOk) Complete(slot, NvmeStatus.TransientTransportError);
        else if (!slot.DeferredStatus.IsSuccess) Complete(slot, slot.DeferredStatus);
        else StartCommand(slot);
    }

    /// <summary>Hands a command whose data is in to the command layer; completes it unless that layer completes it later.</summary>
    private void Run(CommandSlot slot)
    {
        if (_commands.Run(slot, out ulong result) is { } status) Complete(slot, status, result);
    }

    /// <summary>
    /// All capsule bytes are in: the command layer checks the command (once, before any data moves); then its host
    /// data is fetched with R2Ts if it needs some, else it runs.
    /// </summary>
    private void StartCommand(CommandSlot slot)
    {
        var cmd = slot.Command;
        uint sglLength = cmd.SglLength;
        bool fetchesData = cmd.Direction == DataDirection.HostToController && sglLength > 0 && !slot.HasBuffer;
        if (fetchesData && cmd.SglType != SglTypes.TransportDataBlock)
        {
            Complete(slot, NvmeStatus.SglDescriptorTypeInvalid);
            return;
        }
        var status = _commands.Check(slot, fetchesData);
        if (!status.IsSuccess)
        {
            Complete(slot, status);
            return;
        }
        if (!fetchesData)
        {
            Run(slot);
            return;
        }
        if (_budgetWaiters.Count > 0 || !Context.HostData.TryReserve((int)sglLength))
        {
            slot.State = CommandState.AwaitingBudget;
            _budgetWaiters.Enqueue(slot);
            Context.HostData.NoteWait();
            return;
        }
        BeginHostTransfer(slot, (int)sglLength);
    }

    /// <summary>Budget reserved: rent the buffer and ask for the data.</summary>
    private void BeginHostTransfer(CommandSlot slot, int length)
    {
        slot.BudgetReserved = length;
        slot.RentBuffer(length);
        slot.State = CommandState.ReceivingH2CData;
        _awaitingH2CData++;
        IssueR2Ts(slot);
    }

    /// <summary>Writes that waited for the shard's budget, in arrival order, as far as it now allows.</summary>
    private void StartBudgetWaiters()
    {
        while (_budgetWaiters.TryPeek(out var slot))
        {
            int length = (int)slot.Command.SglLength;
            if (!Context.HostData.TryReserve(length)) return;
            _budgetWaiters.Dequeue();
            BeginHostTransfer(slot, length);
        }
    }

    /// <summary>Sends R2Ts while fewer than MAXR2T+1 are outstanding; each asks for at most MAXH2CDATA bytes.</summary>
    private void IssueR2Ts(CommandSlot slot)
    {
        int chunk = _options.MaxH2CData;
        while (slot.R2TIssuedEnd < slot.DataLength)
        {
            int issued = (slot.R2TIssuedEnd + chunk - 1) / chunk;
            int done = slot.Received / chunk;
            if (issued - done >= _maxR2TPerCommand) break;
            int length = Math.Min(chunk, slot.DataLength - slot.R2TIssuedEnd);
            int n = PduWriter.R2T(_out.GetSpan(PduLayout.R2THeaderSize + PduLayout.DigestSize), slot.Cid,
                (ushort)slot.Index, (uint)slot.R2TIssuedEnd, (uint)length, _framer.HeaderDigest);
            _out.Advance(n);
            slot.R2TIssuedEnd += length;
        }
    }

    private HeaderVerdict OnH2CDataHeader(ReadOnlySpan<byte> h, int dataLength, out Memory<byte> destination, out FramingError error)
    {
        destination = default;
        ushort cccid = BinaryPrimitives.ReadUInt16LittleEndian(h[PduLayout.OffCccid..]);
        ushort ttag = BinaryPrimitives.ReadUInt16LittleEndian(h[PduLayout.OffTtag..]);
        uint datao = BinaryPrimitives.ReadUInt32LittleEndian(h[PduLayout.OffDataOffset..]);
        uint datal = BinaryPrimitives.ReadUInt32LittleEndian(h[PduLayout.OffDataLength..]);
        if (ttag >= _slots.Length || _slots[ttag].State != CommandState.ReceivingH2CData)
            return Fatal(TermReqFes.InvalidPduHeaderField, PduLayout.OffTtag, out error);
        var slot = _slots[ttag];
        if (slot.Cid != cccid) return Fatal(TermReqFes.InvalidPduHeaderField, PduLayout.OffCccid, out error);
        if (datal != dataLength || datal == 0) return Fatal(TermReqFes.InvalidPduHeaderField, PduLayout.OffDataLength, out error);
        if (datao != slot.Received || datao + (ulong)datal > (ulong)slot.R2TIssuedEnd)
            return Fatal(TermReqFes.DataTransferOutOfRange, PduLayout.OffDataOffset, out error);
        error = default;
        destination = slot.Buffer.Slice((int)datao, (int)datal);
        _receiving = slot;
        _receivingLength = (int)datal;
        return HeaderVerdict.Accept;
    }

    private void OnH2CDataComplete(CommandSlot slot, bool dataDigestOk)
    {
        slot.Received += _receivingLength;
        if (!dataDigestOk) slot.DeferredStatus = NvmeStatus.TransientTransportError;
        if (slot.Received < slot.DataLength)
        {
            IssueR2Ts(slot);
            return;
        }
        _awaitingH2CData--;
        slot.ReleaseBudget();
        StartBudgetWaiters();
        // A bad data digest fails this command only (after its data is drained), not the connection.
        if (!slot.DeferredStatus.IsSuccess) Complete(slot, slot.DeferredStatus);
        else Run(slot);
    }

    /// <summary>Finishes a command: C2HData for any data to return, then the CapsuleResp; frees the slot.</summary>
    internal void Complete(CommandSlot slot, NvmeStatus status, ulong result = 0)
    {
        var cmd = slot.Command;
        // On I/O queues the host's SGL bounds what we send (it protects the host's memory): send what fits, and never
        // a zero-length C2HData. On admin and discovery queues the command defines the size (Identify 4096 bytes, Get
        // Log Page NUMD), and some hosts (Lightbits' discovery-client) send a shorter SGL, even 0, expecting it all.
        int length = QueueId == 0 ? slot.DataLength : (int)Math.Min((uint)slot.DataLength, cmd.SglLength);
        bool sendData = status.IsSuccess && slot.HasBuffer && length > 0
            && cmd.Direction == DataDirection.ControllerToHost;
        if (sendData)
        {
            // SUCCESS saves the CapsuleResp only for I/O reads without SQ flow control; admin data is always
            // followed by a CapsuleResp (strict discovery hosts expect exactly that).
            bool success = _sqFlowControlDisabled && QueueId != 0 && cmd.Opcode == IoOpcode.Read;
            WriteC2HData(slot, length, success);
            if (!success) WriteResponse(slot.Cid, status, result);
        }
        else
        {
            WriteResponse(slot.Cid, status, result);
        }
        Release(slot);
    }

    private void Release(CommandSlot slot)
    {
        _slotByCid.Remove(slot.Cid);
        slot.Reset();
        _freeSlots.Push(slot.Index);
    }

    /// <summary>
    /// One C2HData PDU with the slot's first <paramref name="length"/> bytes. I/O read data is sent from its buffer
    /// when the driver gathers (the buffer moves to the output); otherwise it is copied after the header.
    /// </summary>
    private void WriteC2HData(CommandSlot slot, int length, bool success)
    {
        var flags = PduFlags.LastPdu | (success ? PduFlags.Success : PduFlags.None);
        bool ddgst = _framer.DataDigest;
        bool inPlace = Context.SendReadDataInPlace && QueueId != 0;
        var lent = slot.Request.LentData;
        ReadOnlyMemory<byte> data = lent.IsEmpty ? slot.Buffer[..length] : lent[..length];
        var span = _out.GetSpan(PduWriter.MaxHeaderBytes + (inPlace ? 0 : length) + PduLayout.DigestSize);
        int n = PduWriter.C2HDataHeader(span, slot.Cid, 0, length, flags, _framer.HeaderDigest, ddgst, _hostDataAlignment);
        if (inPlace)
        {
            _out.Advance(n);
            if (lent.IsEmpty) _out.AppendInPlace(slot.TakeBuffer(), length);
            else _out.AppendLent(lent, length);
            if (ddgst) _out.Advance(PduWriter.DataDigest(_out.GetSpan(PduLayout.DigestSize), data.Span));
            return;
        }
        data.Span.CopyTo(span[n..]);
        n += length;
        if (ddgst) n += PduWriter.DataDigest(span[n..], data.Span);
        _out.Advance(n);
    }

    private void WriteResponse(ushort cid, NvmeStatus status, ulong result)
    {
        var cqe = new CompletionEntry(result, SqHead, QueueId, cid, status);
        _out.Advance(PduWriter.CapsuleResp(_out.GetSpan(PduLayout.CapsuleRespHeaderSize + PduLayout.DigestSize), cqe, _framer.HeaderDigest));
    }

    private ushort SqHead => (ushort)(_sqHeadCount % (uint)_sqEntries);

    /// <summary>Hands the slot's prepared storage request to the driver (<see cref="TryTakeStorageRequest"/>).</summary>
    internal void SubmitStorage(CommandSlot slot)
    {
        slot.State = CommandState.Executing;
        slot.StorageStartedMs = _now;
        _inFlightStorage++;
        _storageQueue.Enqueue(slot.Request);
    }

    /// <summary>The command layer completes this slot later, from any thread, with <see cref="PostCompletion"/>.</summary>
    internal void Defer(CommandSlot slot)
    {
        slot.State = CommandState.Deferred;
        _inFlightStorage++;
    }

    /// <summary>Any thread: completes a deferred slot on this connection's thread (its next <see cref="Poll"/>).</summary>
    internal void PostCompletion(CommandSlot slot, NvmeStatus status)
    {
        _mail.Enqueue(new Mail(slot, status, null, null));
        Signal.Wake();
    }

    /// <summary>
    /// Any thread: Preempt and Abort of this queue's host on <paramref name="ns"/> (see <see cref="AbortCommandsTo"/>).
    /// False once the queue closed: it then has no command left that the fence would have to wait for.
    /// </summary>
    internal bool PostAbort(NamespaceInfo ns, AbortFence fence, NvmeStatus status)
    {
        lock (_abortGate)
        {
            if (_refusesAborts) return false;
            _mail.Enqueue(new Mail(null, status, ns, fence));
        }
        Signal.Wake();
        return true;
    }

    private void ReadMail()
    {
        while (_mail.TryDequeue(out var m))
        {
            if (m.Slot is not { } slot)
            {
                AbortCommandsTo(m.Namespace!, m.Fence!, m.Status);
                continue;
            }
            _inFlightStorage--;
            if (_phase == Phase.Closing) slot.Reset();
            else Complete(slot, m.Status);
        }
    }

    /// <summary>
    /// Preempt and Abort (NVMe Base 2.0, 8.19): this queue's host lost its registration on <paramref name="ns"/>. Its
    /// commands there that storage has not seen end with <paramref name="status"/> (Command Aborted due to Preempt and
    /// Abort; one still owed data once the data is drained, as any deferred status); those storage already executes
    /// cannot be recalled, so they finish with their own status and hold the fence, and the Acquire completes after
    /// them. Commands checked from now on meet the new reservation state, which was published before this was posted.
    /// A drained primary's quiesce is the same walk with the ANA path status (<see cref="Target.QuiesceAsync"/>).
    /// </summary>
    private void AbortCommandsTo(NamespaceInfo ns, AbortFence fence, NvmeStatus status)
    {
        foreach (var slot in _slots)
        {
            if (slot.Namespace != ns) continue;
            switch (slot.State)
            {
                case CommandState.Executing:
                    fence.HoldUntilReleased(slot);
                    break;
                case CommandState.ReceivingH2CData:
                    slot.DeferredStatus = status;
                    break;
                case CommandState.AwaitingBudget:
                    DropBudgetWaiter(slot);
                    Complete(slot, status);
                    break;
            }
        }
        fence.Signal();
    }

    private void DropBudgetWaiter(CommandSlot slot)
    {
        for (int n = _budgetWaiters.Count; n > 0; n--)
        {
            var waiter = _budgetWaiters.Dequeue();
            if (waiter != slot) _budgetWaiters.Enqueue(waiter);
        }
    }

    /// <summary>A completion or a Preempt and Abort handed over from another thread.</summary>
    private readonly record struct Mail(CommandSlot? Slot, NvmeStatus Status, NamespaceInfo? Namespace, AbortFence? Fence);

    /// <summary>A Connect succeeded: the queue takes the ID, size and flow-control mode the host asked for.</summary>
    internal void OnConnected(ushort qid, int sqEntries, bool sqFlowControlDisabled)
    {
        QueueId = qid;
        _sqEntries = sqEntries;
        _sqFlowControlDisabled = sqFlowControlDisabled;
        GrowSlots(_sqEntries);
        _phase = Phase.Connected;
    }
}
