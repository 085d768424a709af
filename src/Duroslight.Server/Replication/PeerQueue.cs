using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Duroslight.Core.Interop;
using Duroslight.Host;
using Duroslight.Reactor;

namespace Duroslight.Server.Replication;

/// <summary>
/// One node-to-node NVMe/TCP I/O queue, driven on one shard's ring: the host library's sans-IO
/// <see cref="HostQueue"/> (already past ICReq and Connect, see <see cref="PeerLink"/>) gets the bytes the ring
/// receives and lends its output to the ring's sends. The shard's <see cref="IForwardOp"/>s (replicated writes, rebuild
/// copies) submit here and
/// hear their completions here, on the same thread. A command waits for a free slot in FIFO order. No completion
/// for <see cref="PeerLink.TimeoutMs"/> while commands are outstanding, a transport error or a protocol error fails
/// the queue: every outstanding and waiting command fails, and the link reports the peer lost.
/// </summary>
internal sealed unsafe class PeerQueue : IRingHandler, IBatchedSender, IShardTicker
{
    private const int ReceiveBufferSize = 128 * 1024;
    private const byte OpReceive = 1, OpSend = 2;

    private readonly Shard _shard;
    private readonly Socket _socket;
    private readonly int _fd;
    private readonly HostQueue _queue;
    private readonly PeerLink _link;
    private readonly Queue<IForwardOp> _waiting = new();
    private readonly NativeBuffer _receiveBuffer = new(ReceiveBufferSize);
    private readonly PeerCounters _counters;
    /// <summary>When each command slot's command went out (Stopwatch ticks), for the forward's round-trip time.</summary>
    private readonly long[] _sentAt;
    private int _token = -1;
    private bool _receiving, _sending, _dirty, _closed;
    private long _lastProgress;
    private volatile bool _failed;

    public PeerQueue(Shard shard, Socket socket, HostQueue queue, PeerLink link, PeerCounters counters)
    {
        _counters = counters;
        _sentAt = new long[queue.Options.QueueDepth];
        _shard = shard;
        _socket = socket;
        _fd = (int)socket.Handle;
        _queue = queue;
        _link = link;
    }

    public Shard Shard => _shard;

    public bool IsFailed => _failed;

    /// <summary>On the shard: start receiving.</summary>
    public void Open()
    {
        _token = _shard.Register(this);
        _shard.AddTicker(this);
        _lastProgress = Environment.TickCount64;
        ArmReceive();
    }

    /// <summary>
    /// On the shard: sends <paramref name="op"/>'s command (now, or once a slot frees). False when the queue has
    /// failed: the peer will not get it.
    /// </summary>
    public bool Submit(IForwardOp op)
    {
        if (_failed) return false;
        if (_queue.Outstanding == 0) _lastProgress = Environment.TickCount64;
        if (_waiting.Count > 0 || !TrySend(op)) _waiting.Enqueue(op);
        MarkDirty();
        return true;
    }

    /// <summary>On the shard: fail and close (the link is closed or lost).</summary>
    public void Fail(string reason)
    {
        if (_failed) return;
        _failed = true;
        _queue.OnTransportClosed();
        DeliverCompletions();
        while (_waiting.TryDequeue(out var op)) op.RemoteDone(_link, ok: false);
        _link.OnQueueFailed(reason);
        LibC.Shutdown(_fd); // ends the armed receive (0) and a stuck send
        TryClose();
    }

    public void OnCompletion(byte op, int result, bool more)
    {
        if (op == OpReceive) OnReceived(result);
        else OnSent(result);
        TryClose();
    }

    public void SendBatch()
    {
        _dirty = false;
        if (_sending || _closed || _failed || _queue.PendingOutput.IsEmpty) return;
        var bytes = _queue.BeginSend();
        _shard.SubmitSend(_fd, (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(bytes.Span)), bytes.Length, _token, OpSend);
        _sending = true;
    }

    public void OnTick(long nowMs)
    {
        if (!_failed && _queue.Outstanding > 0 && nowMs - _lastProgress > _link.TimeoutMs)
            Fail($"no completion from node {_link.Node} for {_link.TimeoutMs} ms");
    }

    private void ArmReceive()
    {
        if (_receiving || _failed) return;
        _shard.SubmitReceive(_fd, _receiveBuffer.Pointer, ReceiveBufferSize, _token, OpReceive);
        _receiving = true;
    }

    private void OnReceived(int result)
    {
        _receiving = false;
        if (_failed) return;
        if (result <= 0)
        {
            Fail(result == 0 ? $"node {_link.Node} closed the connection" : $"receive from node {_link.Node} failed (errno {-result})");
            return;
        }
        _queue.Receive(_receiveBuffer.GetSpan()[..result]);
        if (_queue.WantsClose)
        {
            Fail(_queue.FailureReason ?? "protocol error");
            return;
        }
        DeliverCompletions();
        SubmitWaiting();
        MarkDirty(); // R2T answers, and commands the completions started
        ArmReceive();
    }

    private void OnSent(int result)
    {
        _sending = false;
        if (result < 0)
        {
            _queue.EndSend(0);
            Fail($"send to node {_link.Node} failed (errno {-result})");
            return;
        }
        _queue.EndSend(result);
        MarkDirty();
    }

    /// <summary>The slot goes back before the op hears of it, so a write it sets off finds the slot free.</summary>
    private void DeliverCompletions()
    {
        while (_queue.TryTakeCompletion(out var command))
        {
            var op = (IForwardOp)command.UserState!;
            bool ok = !command.TransportFailed && command.Status.IsSuccess;
            if (ok) _counters.Completed(command.Data.Length, Stopwatch.GetTimestamp() - _sentAt[command.Index]);
            _queue.Release(command);
            _lastProgress = Environment.TickCount64;
            op.RemoteDone(_link, ok);
        }
    }

    private void SubmitWaiting()
    {
        while (!_failed && _waiting.TryPeek(out var op) && TrySend(op)) _waiting.Dequeue();
    }

    private bool TrySend(IForwardOp op)
    {
        if (!_queue.TrySubmit(op.Command, op.Data, op, out var command)) return false;
        _sentAt[command.Index] = Stopwatch.GetTimestamp();
        return true;
    }

    private void MarkDirty()
    {
        if (_dirty || _closed) return;
        _dirty = true;
        _shard.ScheduleSend(this);
    }

    private void TryClose()
    {
        if (!_failed || _closed || _receiving || _sending) return;
        _closed = true;
        _shard.RemoveTicker(this);
        _shard.Unregister(_token);
        _socket.Dispose();
        _queue.Dispose();
        _receiveBuffer.Free();
    }
}

/// <summary>
/// Forwarding counters of one (peer node, shard): written only by that shard's thread, read by metrics; they outlive
/// the links (a reconnected link to the node counts on).
/// </summary>
public sealed class PeerCounters
{
    private long _commands, _bytes, _ticks;

    public long Commands => Volatile.Read(ref _commands);

    public long Bytes => Volatile.Read(ref _bytes);

    /// <summary>Sum of the forwards' round-trip times (send to completion).</summary>
    public TimeSpan Latency => TimeSpan.FromSeconds((double)Volatile.Read(ref _ticks) / Stopwatch.Frequency);

    internal void Completed(int bytes, long ticks)
    {
        Volatile.Write(ref _commands, _commands + 1);
        Volatile.Write(ref _bytes, _bytes + bytes);
        Volatile.Write(ref _ticks, _ticks + ticks);
    }
}
