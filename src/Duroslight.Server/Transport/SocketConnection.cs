using System.Net.Sockets;
using System.Threading.Channels;
using Duroslight.Protocol.Engine;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;
using Duroslight.Server.Execution;
using Microsoft.Extensions.Logging;

namespace Duroslight.Server.Transport;

/// <summary>
/// Drives one <see cref="TargetConnection"/> over one socket. A single event loop owns the engine (so the engine
/// sees one thread at a time); the receive loop, storage completions and wake-ups only post work items to it.
/// The receive loop reads the next bytes only after the engine consumed the previous ones: TCP back-pressure.
/// </summary>
internal sealed class SocketConnection : IConnectionSignal
{
    private static readonly TimeSpan TickInterval = TimeSpan.FromMilliseconds(500);

    private enum WorkKind { Received, ReceiveEnded, StorageDone, Wake }

    private readonly record struct Work(WorkKind Kind, int Length = 0, StorageRequest? Request = null, NvmeStatus Status = default);

    private readonly Socket _socket;
    private readonly StorageExecutor _executor;
    private readonly ILogger _logger;
    private readonly TargetConnection _engine;
    private readonly Channel<Work> _work = Channel.CreateUnbounded<Work>(new UnboundedChannelOptions { SingleReader = true });
    private readonly byte[] _receiveBuffer = new byte[256 * 1024];
    private readonly SemaphoreSlim _bufferFree = new(0);
    private readonly CancellationTokenSource _stop = new();
    private readonly string _peer;
    private bool _transportClosed;
    private volatile bool _draining;

    public SocketConnection(Socket socket, Target target, StorageExecutor executor, bool isDiscoveryPort, ILogger logger)
    {
        _socket = socket;
        _executor = executor;
        _logger = logger;
        _peer = socket.RemoteEndPoint?.ToString() ?? "?";
        _engine = new TargetConnection(target, new ConnectionContext(0, _peer, isDiscoveryPort), this);
    }

    public void Wake() => _work.Writer.TryWrite(new Work(WorkKind.Wake));

    /// <summary>Graceful close: stop reading, finish executing commands and send their responses, then close.</summary>
    public void Drain()
    {
        _draining = true;
        _stop.Cancel();
        Wake();
    }

    /// <summary>Immediate close (drain timed out, or process exit).</summary>
    public void Abort()
    {
        _stop.Cancel();
        _socket.Dispose();
        Wake();
    }

    public async Task RunAsync()
    {
        _logger.LogDebug("connection from {Peer}", _peer);
        var receive = ReceiveLoopAsync();
        var ticks = TickLoopAsync();
        try
        {
            await EventLoopAsync().ConfigureAwait(false);
        }
        catch (Exception e)
        {
            // A bug in one connection must not take the process or other connections down.
            _logger.LogError(e, "connection {Peer} failed", _peer);
        }
        finally
        {
            await CloseAsync(receive, ticks).ConfigureAwait(false);
        }
    }

    private async Task EventLoopAsync()
    {
        var reader = _work.Reader;
        while (await reader.WaitToReadAsync().ConfigureAwait(false))
        {
            while (reader.TryRead(out var work)) Handle(work);
            while (_engine.TryTakeStorageRequest(out var request)) _ = ExecuteAsync(request);
            await FlushAsync().ConfigureAwait(false);
            if (ShouldExit()) return;
        }
    }

    private bool ShouldExit() =>
        _engine.InFlightStorage == 0 && (_transportClosed || _engine.WantsClose || (_draining && _engine.PendingOutput.IsEmpty));

    private void Handle(in Work work)
    {
        long now = Environment.TickCount64;
        switch (work.Kind)
        {
            case WorkKind.Received:
                _engine.Receive(_receiveBuffer.AsSpan(0, work.Length), now);
                _bufferFree.Release();
                break;
            case WorkKind.ReceiveEnded:
                if (!_draining) TransportClosed();
                break;
            case WorkKind.StorageDone:
                _engine.CompleteStorage(work.Request!, work.Status);
                break;
            case WorkKind.Wake:
                _engine.Poll(now);
                break;
        }
    }

    private void TransportClosed()
    {
        _transportClosed = true;
        _engine.OnTransportClosed();
    }

    private async Task ExecuteAsync(StorageRequest request)
    {
        var status = await _executor.ExecuteAsync(request).ConfigureAwait(false);
        _work.Writer.TryWrite(new Work(WorkKind.StorageDone, Request: request, Status: status));
    }

    private async ValueTask FlushAsync()
    {
        while (!_transportClosed && !_engine.PendingOutput.IsEmpty)
        {
            try
            {
                int sent = await _socket.SendAsync(_engine.PendingOutput, SocketFlags.None).ConfigureAwait(false);
                _engine.ConsumeOutput(sent);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                TransportClosed();
            }
        }
    }

    private async Task ReceiveLoopAsync()
    {
        try
        {
            while (true)
            {
                int n = await _socket.ReceiveAsync(_receiveBuffer, SocketFlags.None, _stop.Token).ConfigureAwait(false);
                if (n == 0) break;
                _work.Writer.TryWrite(new Work(WorkKind.Received, n));
                await _bufferFree.WaitAsync(_stop.Token).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
        _work.Writer.TryWrite(new Work(WorkKind.ReceiveEnded));
    }

    private async Task TickLoopAsync()
    {
        using var timer = new PeriodicTimer(TickInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(_stop.Token).ConfigureAwait(false)) Wake();
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task CloseAsync(Task receive, Task ticks)
    {
        _stop.Cancel();
        try { _socket.Shutdown(SocketShutdown.Both); } catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
        _socket.Dispose();
        await Task.WhenAll(receive, ticks).ConfigureAwait(false);
        _engine.OnTransportClosed();
        // Requests still running keep their buffers until they come back.
        while (_engine.InFlightStorage > 0 && await _work.Reader.WaitToReadAsync().ConfigureAwait(false))
            while (_work.Reader.TryRead(out var work)) if (work.Kind == WorkKind.StorageDone) _engine.CompleteStorage(work.Request!, work.Status);
        // _stop is not disposed: Drain or Abort from a shutdown may still race with this close, and a
        // CancellationTokenSource without a timer holds nothing that needs disposing.
        _engine.Dispose();
        _logger.LogDebug("connection {Peer} closed", _peer);
    }
}
