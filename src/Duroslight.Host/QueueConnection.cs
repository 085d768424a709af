using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;
using Duroslight.Protocol.Nvme;

namespace Duroslight.Host;

/// <summary>
/// Drives one <see cref="HostQueue"/> over a TCP socket: a receive loop feeds it, whichever thread produced output
/// becomes the sender until the output is drained, and each submitted command is awaited through a pooled
/// <see cref="CommandWaiter"/>. One lock guards the queue; socket I/O happens outside it, so the receive loop never
/// waits behind a blocked send (which could otherwise deadlock against a target blocked sending to us).
/// </summary>
internal sealed class QueueConnection : IAsyncDisposable
{
    private const int ReceiveBufferSize = 64 * 1024;

    private readonly object _gate = new();
    private readonly Socket _socket;
    private readonly HostQueue _queue;
    private readonly SemaphoreSlim _slots;
    private readonly Stack<CommandWaiter> _waiters = new();
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private byte[] _sendBuffer = new byte[ReceiveBufferSize];
    private bool _sending;
    private bool _disposed;
    private Exception? _failure;
    private Task _receiveLoop = Task.CompletedTask;

    private QueueConnection(Socket socket, HostQueueOptions options)
    {
        _socket = socket;
        _queue = new HostQueue(options);
        _slots = new SemaphoreSlim(options.QueueDepth, options.QueueDepth);
    }

    public ushort QueueId => _queue.QueueId;

    public int QueueDepth => _queue.Options.QueueDepth;

    public int MaxH2CData => _queue.MaxH2CData;

    public bool IsFailed => Volatile.Read(ref _failure) is not null;

    /// <summary>Connects the socket (TCP_NODELAY) and completes the ICReq/ICResp exchange.</summary>
    public static async Task<QueueConnection> OpenAsync(string host, int port, HostQueueOptions options, CancellationToken ct)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(host, port, ct).ConfigureAwait(false);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
        var connection = new QueueConnection(socket, options);
        connection.Start();
        try
        {
            await connection._ready.Task.WaitAsync(ct).ConfigureAwait(false);
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        return connection;
    }

    /// <summary>Submits a command and waits for its completion; throws <see cref="NvmeTransportException"/> if the queue fails.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<CompletionEntry> ExecuteAsync(NvmeCommand command, Memory<byte> data, CancellationToken ct)
    {
        await _slots.WaitAsync(ct).ConfigureAwait(false);
        var waiter = Submit(command, data);
        KickSend();
        return await waiter.AsValueTask().ConfigureAwait(false);
    }

    public void ReturnWaiter(CommandWaiter waiter)
    {
        lock (_gate) _waiters.Push(waiter);
    }

    public async ValueTask DisposeAsync()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            FailLocked(new NvmeTransportException($"queue {QueueId} closed"));
        }
        CloseSocket();
        try
        {
            await _receiveLoop.ConfigureAwait(false);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException)
        {
            // The loop ends by failing on the closed socket; the queue already recorded why.
        }
    }

    private CommandWaiter Submit(in NvmeCommand command, Memory<byte> data)
    {
        lock (_gate)
        {
            try
            {
                if (_failure is not null) throw NewTransportException();
                var waiter = _waiters.Count > 0 ? _waiters.Pop() : new CommandWaiter(this);
                if (!_queue.TrySubmit(command, data, waiter, out _))
                {
                    _waiters.Push(waiter);
                    throw new InvalidOperationException("no free command slot although the slot semaphore granted one");
                }
                return waiter;
            }
            catch
            {
                _slots.Release();
                throw;
            }
        }
    }

    private void Start()
    {
        lock (_gate) _queue.Start();
        _receiveLoop = Task.Run(ReceiveLoopAsync);
        KickSend();
    }

    private async Task ReceiveLoopAsync()
    {
        var buffer = new byte[ReceiveBufferSize];
        try
        {
            while (true)
            {
                int n = await _socket.ReceiveAsync(buffer.AsMemory(), SocketFlags.None).ConfigureAwait(false);
                if (n == 0)
                {
                    Fail(new NvmeTransportException($"queue {QueueId}: target closed the connection"));
                    return;
                }
                lock (_gate)
                {
                    _queue.Receive(buffer.AsSpan(0, n));
                    if (_queue.WantsClose) _failure ??= NewTransportException();
                    DrainLocked();
                }
                KickSend();
                if (IsFailed) return;
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException)
        {
            Fail(new NvmeTransportException($"queue {QueueId}: {e.Message}", inner: e));
        }
    }

    /// <summary>Hands completions to their waiters (continuations run on the thread pool, never under the lock).</summary>
    private void DrainLocked()
    {
        if (_queue.State == HostQueueState.Ready) _ready.TrySetResult();
        while (_queue.TryTakeCompletion(out var cmd))
        {
            var waiter = (CommandWaiter)cmd.UserState!;
            bool failed = cmd.TransportFailed;
            var cqe = cmd.Completion;
            _queue.Release(cmd);
            _slots.Release();
            if (failed) waiter.SetException(NewTransportException());
            else waiter.SetResult(cqe);
        }
        if (_failure is not null) _ready.TrySetException(_failure);
    }

    private void Fail(Exception e)
    {
        lock (_gate) FailLocked(e);
        CloseSocket();
    }

    private void FailLocked(Exception e)
    {
        _failure ??= e;
        _queue.OnTransportClosed();
        DrainLocked();
    }

    private NvmeTransportException NewTransportException() =>
        new($"queue {QueueId}: {_queue.FailureReason ?? _failure?.Message ?? "failed"}", _queue.PeerTermination, _failure);

    /// <summary>Makes the caller the sender unless one is already running; the sender drains all output.</summary>
    private void KickSend()
    {
        bool send;
        lock (_gate)
        {
            if (_sending || _disposed) return;
            send = !_queue.PendingOutput.IsEmpty;
            // Nothing to send: a queue that failed without last words (peer TermReq) just closes.
            if (!send && !_queue.WantsClose) return;
            _sending = send;
        }
        if (send) _ = SendPumpAsync();
        else CloseSocket();
    }

    private async Task SendPumpAsync()
    {
        try
        {
            while (true)
            {
                int n = TakeOutput();
                if (n == 0) return;
                for (int sent = 0; sent < n;)
                    sent += await _socket.SendAsync(_sendBuffer.AsMemory(sent, n - sent), SocketFlags.None).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException)
        {
            lock (_gate) _sending = false;
            Fail(new NvmeTransportException($"queue {QueueId}: {e.Message}", inner: e));
        }
    }

    /// <summary>Copies pending output into the send buffer (the queue's buffer may move while we send).</summary>
    private int TakeOutput()
    {
        bool close;
        lock (_gate)
        {
            var pending = _queue.PendingOutput;
            if (pending.IsEmpty || _disposed)
            {
                _sending = false;
                close = _queue.WantsClose;
                if (!close) return 0;
            }
            else
            {
                if (_sendBuffer.Length < pending.Length) _sendBuffer = new byte[Math.Max(pending.Length, _sendBuffer.Length * 2)];
                pending.Span.CopyTo(_sendBuffer);
                _queue.ConsumeOutput(pending.Length);
                return pending.Length;
            }
        }
        // A failed queue's last words (an H2CTermReq) are out: close the connection.
        CloseSocket();
        return 0;
    }

    private void CloseSocket()
    {
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Already closed or never connected.
        }
        _socket.Dispose();
    }
}

/// <summary>A reusable awaitable for one command's completion; returns itself to its queue's pool once awaited.</summary>
internal sealed class CommandWaiter(QueueConnection owner) : IValueTaskSource<CompletionEntry>
{
    private ManualResetValueTaskSourceCore<CompletionEntry> _core = new() { RunContinuationsAsynchronously = true };

    public ValueTask<CompletionEntry> AsValueTask() => new(this, _core.Version);

    public void SetResult(CompletionEntry entry) => _core.SetResult(entry);

    public void SetException(Exception e) => _core.SetException(e);

    public CompletionEntry GetResult(short token)
    {
        try
        {
            return _core.GetResult(token);
        }
        finally
        {
            _core.Reset();
            owner.ReturnWaiter(this);
        }
    }

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
