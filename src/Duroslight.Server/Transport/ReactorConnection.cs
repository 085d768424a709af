using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Duroslight.Core.Interop;
using Duroslight.Protocol.Engine;
using Duroslight.Protocol.Nvme;
using Duroslight.Reactor;
using Duroslight.Server.Execution;
using Duroslight.Storage.Devices;
using Microsoft.Extensions.Logging;

namespace Duroslight.Server.Transport;

/// <summary>
/// Drives one <see cref="TargetConnection"/> (one NVMe queue) on its shard: receives and sends through the ring
/// (bytes pass through an <see cref="IByteStream"/>, the place for a transform such as TLS), hands storage requests
/// to the <see cref="ChunkRouter"/>, and closes once nothing is in flight. Read data goes out from its data buffer:
/// one gathering send (IORING_OP_SENDMSG) per loop iteration takes PDU headers from the engine's output and data
/// from the buffers storage filled, which go back to the pool only when the send is over. Every method runs
/// on the shard's thread; other threads only post to it (<see cref="Wake"/>, <see cref="Drain"/>, <see cref="Abort"/>).
/// </summary>
internal sealed unsafe class ReactorConnection : IReceiveHandler, IBatchedSender, IShardTicker, IShardWork, IConnectionSignal, IStorageCompletion
{
    // Back-pressure: a host that sends commands but does not read the responses stops being read once this much
    // output waits, so TCP pushes back on it instead of the process growing.
    private const int MaxPendingOutput = 4 << 20;
    private const byte OpReceive = 1, OpSend = 2, OpCancelReceive = 3;

    private readonly Shard _shard;
    private readonly TcpSocket _socket;
    private readonly ReactorTransport _owner;
    private readonly ChunkRouter _router;
    private long _timeoutsSeen;

    /// <summary>One fan-out per command slot, made on the slot's first request and reused: no allocation per I/O.</summary>
    private RequestFanOut?[] _fanOuts = [];
    private readonly ILogger _logger;
    private readonly TargetConnection _engine;
    private readonly IByteStream _stream;
    private readonly SendMessage _message = new();
    private readonly ReadOnlyMemory<byte>[] _segments = new ReadOnlyMemory<byte>[SendMessage.MaxSegments];
    private int _token = -1;
    private bool _receiving, _cancellingReceive, _sending, _dirty, _transportClosed, _draining, _closing, _closed;
    private int _wakePosted;

    public ReactorConnection(Shard shard, TcpSocket socket, string peer, bool isDiscoveryPort, ReactorTransport owner, IDataBufferPool buffers,
        HostDataBudget hostData)
    {
        _shard = shard;
        _socket = socket;
        _owner = owner;
        _router = owner.Router;
        _logger = owner.Logger;
        Peer = peer;
        // The shard's pool lends native buffers, which never move: the kernel may send from them in place.
        var context = new ConnectionContext(shard.Index, peer, isDiscoveryPort) { Buffers = buffers, HostData = hostData, SendReadDataInPlace = true };
        _engine = new TargetConnection(owner.Target, context, this);
        _stream = new PlainByteStream(_engine);
    }

    public string Peer { get; }

    public Shard Shard => _shard;

    /// <summary>First run on the shard (the transport posts the new connection): register and start receiving.</summary>
    public void Execute()
    {
        if (_token < 0) Open();
        else OnWake();
    }

    /// <summary>Any thread: asks the shard to run the engine's Poll (AEN to deliver, controller killed).</summary>
    public void Wake()
    {
        if (Interlocked.Exchange(ref _wakePosted, 1) == 0) _shard.Post(this);
    }

    /// <summary>Any thread: graceful close (stop reading, finish executing commands, send their responses).</summary>
    public void Drain() => _shard.Post(new Command(this, abort: false));

    /// <summary>Any thread: close now.</summary>
    public void Abort() => _shard.Post(new Command(this, abort: true));

    public void OnCompletion(byte op, int result, bool more)
    {
        try
        {
            switch (op)
            {
                case OpReceive: OnReceiveEnded(result); break;
                case OpSend: OnSent(result); break;
                case OpCancelReceive: OnCancelled(); break;
            }
            TryClose();
        }
        catch (Exception e)
        {
            Fail(e);
        }
    }

    public void OnReceived(byte op, ReadOnlySpan<byte> data, bool more)
    {
        try
        {
            _receiving = more;
            _stream.Receive(data, Environment.TickCount64);
            AfterEngine();
            if (more) StopReceivingIfHeld();
            else ArmReceive();
            TryClose();
        }
        catch (Exception e)
        {
            Fail(e);
        }
    }

    public void OnStorageDone(StorageRequest request, NvmeStatus status)
    {
        try
        {
            _engine.CompleteStorage(request, status);
            AfterEngine();
            TryClose();
        }
        catch (Exception e)
        {
            Fail(e);
        }
    }

    /// <summary>End of the shard's iteration: one send for everything this connection produced meanwhile.</summary>
    public void SendBatch()
    {
        _dirty = false;
        if (_sending || _transportClosed || _closed) return;
        if (!_stream.HasPendingOutput)
        {
            TryClose();
            return;
        }
        int count = _stream.BeginSend(_segments);
        if (count == 1)
        {
            _shard.SubmitSend(_socket.Fd, PointerOf(_segments[0]), _segments[0].Length, _token, OpSend);
        }
        else
        {
            for (int i = 0; i < count; i++) _message.Set(i, PointerOf(_segments[i]), _segments[i].Length);
            _message.Count = count;
            _shard.SubmitSendMessage(_socket.Fd, _message, _token, OpSend);
        }
        _sending = true;
    }

    /// <summary>
    /// Output arrays live on the pinned object heap and data buffers are native (<see cref="ShardBufferPool"/>):
    /// their addresses are stable without a pin handle.
    /// </summary>
    private static byte* PointerOf(ReadOnlyMemory<byte> segment) =>
        (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(segment.Span));

    public void OnTick(long nowMs)
    {
        try
        {
            _engine.Poll(nowMs);
            if (_engine.StorageTimeouts != _timeoutsSeen) OnStorageTimeouts();
            AfterEngine();
            TryClose();
        }
        catch (Exception e)
        {
            Fail(e);
        }
    }

    /// <summary>Counts and logs (once per tick, not per command) commands answered because storage held them too long.</summary>
    private void OnStorageTimeouts()
    {
        long fresh = _engine.StorageTimeouts - _timeoutsSeen;
        _timeoutsSeen = _engine.StorageTimeouts;
        _router.Volumes.Metrics.RecordTimeouts(_engine.Context.Shard, fresh);
        _logger.LogWarning("connection {Peer}: {Count} commands answered with Command Interrupted, storage held them over {Timeout} ms (a stalled device?)",
            Peer, fresh, _owner.Target.Options.StorageTimeoutMs);
    }

    private void Open()
    {
        _token = _shard.Register(this);
        _shard.AddTicker(this);
        _socket.SetNoDelay();
        _logger.LogDebug("connection from {Peer} on shard {Shard}", Peer, _shard.Index);
        ArmReceive();
    }

    private void OnWake()
    {
        Volatile.Write(ref _wakePosted, 0);
        OnTick(Environment.TickCount64);
    }

    /// <summary>Why this connection must not read now: closing, draining, or too much output waits (back-pressure).</summary>
    private bool HoldsReceive =>
        _transportClosed || _draining || _closing || _engine.WantsClose || _stream.PendingOutputBytes > MaxPendingOutput;

    private void ArmReceive()
    {
        if (_receiving || _cancellingReceive || HoldsReceive) return;
        _shard.SubmitReceiveSelect(_socket.Fd, _token, OpReceive);
        _receiving = true;
    }

    /// <summary>A multishot receive keeps reading until cancelled, so holding back (see <see cref="HoldsReceive"/>) cancels it.</summary>
    private void StopReceivingIfHeld()
    {
        if (!_receiving || _cancellingReceive || _closing || !HoldsReceive) return;
        _shard.SubmitCancel(_token, OpReceive, OpCancelReceive);
        _cancellingReceive = true;
    }

    /// <summary>Our cancel is done; the receive's own completion may come before or after it.</summary>
    private void OnCancelled()
    {
        _cancellingReceive = false;
        ArmReceive();
    }

    /// <summary>The receive completed without data: end of stream, an error, our cancel, or no provided buffer was free.</summary>
    private void OnReceiveEnded(int result)
    {
        _receiving = false;
        if (result == -LibC.ECANCELED && !_closing || result == -LibC.ENOBUFS)
        {
            // Our back-pressure cancel (re-armed once output drains), or a shard out of buffers (they are back by now).
            ArmReceive();
            return;
        }
        // 0: the host closed; negative: reset, or the shutdown while closing.
        TransportClosed();
    }

    private void OnSent(int result)
    {
        _sending = false;
        if (result < 0)
        {
            _stream.EndSend(0);
            TransportClosed();
            return;
        }
        _stream.EndSend(result);
        MarkDirty();
        ArmReceive();
    }

    /// <summary>Executes what the engine asked for and schedules a send.</summary>
    private void AfterEngine()
    {
        while (_engine.TryTakeStorageRequest(out var request)) _router.Route(request, FanOutFor(request.Slot), this);
        MarkDirty();
    }

    private RequestFanOut FanOutFor(int slot)
    {
        if (slot >= _fanOuts.Length) Array.Resize(ref _fanOuts, Math.Max(slot + 1, _fanOuts.Length * 2));
        return _fanOuts[slot] ??= _router.NewFanOut();
    }

    private void MarkDirty()
    {
        if (_dirty || _closed) return;
        _dirty = true;
        _shard.ScheduleSend(this);
    }

    private void TransportClosed()
    {
        if (_transportClosed) return;
        _transportClosed = true;
        _engine.OnTransportClosed();
    }

    /// <summary>Closes once the socket is done with and no storage request or ring operation is in flight.</summary>
    private void TryClose()
    {
        if (_closed) return;
        bool outputDone = _transportClosed || !_stream.HasPendingOutput;
        // A draining or failed connection first finishes its executing commands and sends their responses.
        bool wantClose = _transportClosed || ((_engine.WantsClose || _draining) && _engine.InFlightStorage == 0 && outputDone);
        if (!wantClose) return;
        if (!_closing)
        {
            _closing = true;
            // A host we cut off needs to know why (a PDU field it got wrong), not just see the socket close.
            if (_engine.SentTermination is { } t) _logger.LogInformation("connection {Peer} terminated: {Termination}", Peer, t);
            if (_engine.TimedOutWaitingForHost)
                _logger.LogWarning("connection {Peer} closed: it owed data for more than {Timeout} ms", Peer, _owner.Target.Options.HostDataTimeoutMs);
            _engine.OnTransportClosed();
            // Ends a receive still armed (it completes with 0) and a send stuck on a host that stopped reading (EPIPE).
            _socket.Shutdown();
        }
        if (_receiving || _cancellingReceive || _sending || _engine.InFlightStorage > 0) return;
        Finish();
    }

    private void Finish()
    {
        _closed = true;
        _shard.RemoveTicker(this);
        _shard.Unregister(_token);
        _socket.Close();
        _engine.Dispose(); // gives back read buffers that were never sent
        _message.Dispose();
        _owner.OnClosed(this);
        _logger.LogDebug("connection {Peer} closed", Peer);
    }

    /// <summary>A bug in one connection must not take the shard or other connections down: close it.</summary>
    private void Fail(Exception e)
    {
        _logger.LogError(e, "connection {Peer} failed; closing it", Peer);
        _transportClosed = true;
        try
        {
            TryClose();
        }
        catch (Exception again)
        {
            _logger.LogError(again, "connection {Peer} could not close cleanly", Peer);
        }
    }

    private sealed class Command(ReactorConnection connection, bool abort) : IShardWork
    {
        public void Execute()
        {
            if (connection._closed) return;
            connection._draining = true;
            if (abort) connection.TransportClosed();
            connection.StopReceivingIfHeld();
            connection.TryClose();
        }
    }
}
