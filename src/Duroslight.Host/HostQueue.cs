using System.Diagnostics.CodeAnalysis;
using Duroslight.Protocol.Engine;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Wire;

namespace Duroslight.Host;

public enum HostQueueState : byte
{
    /// <summary>Created; <see cref="HostQueue.Start"/> queues the ICReq.</summary>
    Idle,
    AwaitingICResp,
    /// <summary>ICResp accepted: commands may be submitted (the first one being the Fabrics Connect).</summary>
    Ready,
    /// <summary>Protocol error, peer TermReq or transport loss: every outstanding command was failed.</summary>
    Failed,
}

/// <summary>
/// The sans-IO host side of one NVMe/TCP connection (one NVMe queue), the mirror of the engine's TargetConnection:
/// bytes in (<see cref="Receive"/>), bytes out (<see cref="PendingOutput"/> + <see cref="ConsumeOutput"/>), commands
/// in (<see cref="TrySubmit"/>), completions out (<see cref="TryTakeCompletion"/>). It reuses the protocol's
/// <see cref="PduFramer"/> and <see cref="PduWriter"/>, so host and target share one framing implementation.
/// Not thread-safe: the owner serialises calls. Command slots are pooled; steady-state I/O allocates nothing.
/// </summary>
public sealed partial class HostQueue : IPduSink, IDisposable
{
    // CID = generation (4 bits) << 12 | slot index: a stale or duplicated response for a recycled slot is caught.
    private const int GenerationShift = 12;
    private const int IndexMask = (1 << GenerationShift) - 1;
    private const byte DigestHeader = 1, DigestData = 2;

    private readonly PduFramer _framer;
    private readonly OutputBuffer _out = new();
    private readonly HostCommand[] _commands;
    private readonly Stack<int> _free;
    private readonly Queue<HostCommand> _completed;

    public HostQueue(HostQueueOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Options = options;
        InCapsuleDataLimit = options.InCapsuleDataLimit;
        _framer = new PduFramer(this, static t => t is PduType.ICResp or PduType.C2HTermReq or PduType.CapsuleResp
            or PduType.C2HData or PduType.R2T)
        {
            MaxPduLength = MaxPduLength,
        };
        _commands = new HostCommand[options.QueueDepth];
        _free = new Stack<int>(options.QueueDepth);
        _completed = new Queue<HostCommand>(options.QueueDepth);
        for (int i = options.QueueDepth - 1; i >= 0; i--)
        {
            _commands[i] = new HostCommand(i);
            _free.Push(i);
        }
    }

    public HostQueueOptions Options { get; }

    public ushort QueueId => Options.QueueId;

    public HostQueueState State { get; private set; }

    /// <summary>Write data up to this size goes in-capsule; settable once IOCCSZ is known.</summary>
    public int InCapsuleDataLimit { get; set; }

    /// <summary>MAXH2CDATA from the ICResp (0 before it).</summary>
    public int MaxH2CData { get; private set; }

    /// <summary>Digests as negotiated (the ICResp echoes the ICReq's request).</summary>
    public bool HeaderDigest => _framer.HeaderDigest;

    public bool DataDigest => _framer.DataDigest;

    public string? FailureReason { get; private set; }

    /// <summary>FES of the target's C2HTermReq, when the target ended the connection with one.</summary>
    public TermReqFes? PeerTermination { get; private set; }

    /// <summary>The error this host reported in its own H2CTermReq, if any.</summary>
    public FramingError? LocalTermination { get; private set; }

    /// <summary>The owner should send what is pending and close the socket.</summary>
    public bool WantsClose => State == HostQueueState.Failed;

    /// <summary>Slots not in use (neither outstanding nor waiting to be released).</summary>
    public int FreeSlots => _free.Count;

    public ReadOnlyMemory<byte> PendingOutput => _out.Pending;

    public void ConsumeOutput(int count) => _out.Consume(count);

    /// <summary>
    /// Lends the pending bytes to an asynchronous send (an io_uring ring): they stay where they are (pinned) until
    /// <see cref="EndSend"/>, while commands keep being submitted.
    /// </summary>
    public ReadOnlyMemory<byte> BeginSend() => _out.BeginSend();

    /// <summary>The asynchronous send took <paramref name="sent"/> bytes.</summary>
    public void EndSend(int sent) => _out.EndSend(sent);

    /// <summary>Commands submitted and not yet completed.</summary>
    public int Outstanding => _commands.Length - _free.Count - _completed.Count;

    /// <summary>Queues the ICReq (no digests on it: it negotiates them).</summary>
    public void Start()
    {
        if (State != HostQueueState.Idle) throw new InvalidOperationException($"queue already started ({State})");
        var span = _out.GetSpan(PduLayout.ICReqSize);
        _out.Advance(PduWriter.ICReq(span, 0, Options.HeaderDigest, Options.DataDigest, Options.MaxR2T));
        State = HostQueueState.AwaitingICResp;
    }

    /// <summary>Feeds bytes from the target. Protocol violations end in an H2CTermReq and <see cref="WantsClose"/>.</summary>
    public void Receive(ReadOnlySpan<byte> data)
    {
        if (State == HostQueueState.Failed) return;
        if (State == HostQueueState.Idle) throw new InvalidOperationException("call Start before Receive");
        var verdict = _framer.Feed(data, out var error);
        if (verdict == HeaderVerdict.Fatal) Terminate(error);
        else if (verdict == HeaderVerdict.Close) Fail(_failureDetail ?? "target closed the connection");
    }

    /// <summary>
    /// Submits a command. <paramref name="data"/> is read (host-to-controller) or filled (controller-to-host) and must
    /// stay valid until the command completes. Returns false when all slots are in use.
    /// </summary>
    public bool TrySubmit(in NvmeCommand command, Memory<byte> data, object? userState, [NotNullWhen(true)] out HostCommand? token)
    {
        token = null;
        if (State != HostQueueState.Ready)
            throw new InvalidOperationException($"queue is {State}{(FailureReason is null ? "" : ": " + FailureReason)}");
        var direction = command.Direction;
        if (direction == DataDirection.Bidirectional) throw new ArgumentException("bidirectional commands are not supported", nameof(command));
        if (data.Length > 0 && direction == DataDirection.None)
            throw new ArgumentException($"opcode {command.Opcode:X2}h transfers no data", nameof(data));
        if (!_free.TryPop(out int index)) return false;

        var cmd = _commands[index];
        cmd.Generation = (byte)((cmd.Generation + 1) & 0xF);
        cmd.Cid = (ushort)(cmd.Generation << GenerationShift | index);
        cmd.State = HostCommandState.Outstanding;
        cmd.Opcode = command.Opcode;
        cmd.Direction = direction;
        cmd.Data = data;
        cmd.UserState = userState;
        // The Connect data always travels in-capsule: an unconnected queue cannot carry R2T/H2CData.
        cmd.InCapsule = direction == DataDirection.HostToController && data.Length > 0
            && (data.Length <= InCapsuleDataLimit || command.IsConnect);
        WriteCapsule(command, cmd);
        token = cmd;
        return true;
    }

    public bool TryTakeCompletion([NotNullWhen(true)] out HostCommand? command) => _completed.TryDequeue(out command);

    /// <summary>Returns a completed command's slot to the pool.</summary>
    public void Release(HostCommand command)
    {
        ArgumentNullException.ThrowIfNull(command);
        if (command.Index >= _commands.Length || _commands[command.Index] != command)
            throw new ArgumentException("command belongs to another queue", nameof(command));
        if (command.State != HostCommandState.Completed) throw new InvalidOperationException($"command is {command.State}");
        command.Reset();
        _free.Push(command.Index);
    }

    /// <summary>The socket is gone: fails every outstanding command.</summary>
    public void OnTransportClosed() => Fail("transport closed");

    public void Dispose() => _out.Dispose();

    private void WriteCapsule(in NvmeCommand c, HostCommand cmd)
    {
        Span<byte> sqe = stackalloc byte[SubmissionEntry.Size];
        byte sglType = cmd.InCapsule ? SglTypes.InCapsuleData : SglTypes.TransportDataBlock;
        SubmissionEntryWriter.Write(sqe, c.Opcode, cmd.Cid, c.Nsid, sglType, (uint)cmd.Data.Length,
            c.Cdw10, c.Cdw11, c.Cdw12, c.Cdw13, c.Cdw14, c.Cdw15);
        int icd = cmd.InCapsule ? cmd.Data.Length : 0;
        var span = _out.GetSpan(PduWriter.MaxHeaderBytes + icd + PduLayout.DigestSize);
        int n = PduWriter.CapsuleCmdHeader(span, sqe, icd, HeaderDigest, DataDigest);
        if (icd > 0)
        {
            var data = cmd.Data.Span;
            data.CopyTo(span[n..]);
            n += icd;
            if (DataDigest) n += PduWriter.DataDigest(span[n..], data);
            cmd.BytesTransferred = icd;
        }
        _out.Advance(n);
    }

    private bool TryFindOutstanding(ushort cid, [NotNullWhen(true)] out HostCommand? cmd)
    {
        int index = cid & IndexMask;
        cmd = index < _commands.Length ? _commands[index] : null;
        if (cmd is not null && cmd.State == HostCommandState.Outstanding && cmd.Cid == cid) return true;
        cmd = null;
        return false;
    }

    private void Complete(HostCommand cmd, in CompletionEntry cqe)
    {
        cmd.Completion = cqe;
        cmd.State = HostCommandState.Completed;
        _completed.Enqueue(cmd);
    }

    /// <summary>Sends an H2CTermReq echoing the offending header, then fails the queue.</summary>
    private void Terminate(FramingError error)
    {
        int n = PduWriter.TermReq(_out.GetSpan(PduLayout.TermReqHeaderSize + PduLayout.TermReqMaxData),
            PduType.H2CTermReq, error.Fes, error.Fei, _framer.CurrentHeader);
        _out.Advance(n);
        LocalTermination = error;
        Fail($"protocol error {error.Fes} (FEI {error.Fei}): {_failureDetail ?? "framing"}");
    }

    private void Fail(string reason)
    {
        if (State == HostQueueState.Failed) return;
        State = HostQueueState.Failed;
        FailureReason = reason;
        _receiving = null;
        foreach (var cmd in _commands)
        {
            if (cmd.State != HostCommandState.Outstanding) continue;
            cmd.TransportFailed = true;
            Complete(cmd, default);
        }
    }

    private static int MaxPduLength(PduType type) =>
        // C2HData is bounded by the command's buffer, which OnC2HDataHeader checks against DATAO/DATAL.
        type == PduType.C2HData ? int.MaxValue : 1 << 20;
}
