using System.Collections.Concurrent;
using System.Net.Sockets;
using Duroslight.Protocol.Subsystems;
using Duroslight.Server.Execution;
using Microsoft.Extensions.Logging;

namespace Duroslight.Server.Transport;

/// <summary>Accepts TCP connections and runs one <see cref="SocketConnection"/> per accepted socket.</summary>
public sealed class SocketTransport(Target target, StorageExecutor executor, ILogger logger) : ITransport
{
    private readonly List<Socket> _listeners = [];
    private readonly ConcurrentDictionary<SocketConnection, Task> _connections = new();
    private readonly CancellationTokenSource _stopAccepting = new();
    private readonly List<Task> _acceptLoops = [];

    public int ConnectionCount => _connections.Count;

    public void Start(IReadOnlyList<TransportEndpoint> endpoints)
    {
        foreach (var endpoint in endpoints)
        {
            var listener = new Socket(endpoint.EndPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
            listener.Bind(endpoint.EndPoint);
            listener.Listen(1024);
            _listeners.Add(listener);
            _acceptLoops.Add(AcceptLoopAsync(listener, endpoint.IsDiscovery));
            logger.LogInformation("listening on {Endpoint} ({Kind})", listener.LocalEndPoint, endpoint.IsDiscovery ? "discovery" : "nvme-tcp");
        }
    }

    public async Task DrainAsync(TimeSpan timeout)
    {
        await StopAcceptingAsync().ConfigureAwait(false);
        foreach (var c in _connections.Keys) c.Drain();
        var all = Task.WhenAll(_connections.Values);
        await Task.WhenAny(all, Task.Delay(timeout)).ConfigureAwait(false);
        if (!all.IsCompleted)
        {
            logger.LogWarning("drain timed out with {Count} connections left; closing them", _connections.Count);
            foreach (var c in _connections.Keys) c.Abort();
            await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(5))).ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAcceptingAsync().ConfigureAwait(false);
        foreach (var c in _connections.Keys) c.Abort();
        await Task.WhenAll(_connections.Values).ConfigureAwait(false);
        _stopAccepting.Dispose();
    }

    private async Task StopAcceptingAsync()
    {
        if (_stopAccepting.IsCancellationRequested) return;
        await _stopAccepting.CancelAsync().ConfigureAwait(false);
        foreach (var l in _listeners) l.Dispose();
        await Task.WhenAll(_acceptLoops).ConfigureAwait(false);
    }

    private async Task AcceptLoopAsync(Socket listener, bool isDiscovery)
    {
        while (!_stopAccepting.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptAsync(_stopAccepting.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                if (_stopAccepting.IsCancellationRequested) return;
                logger.LogWarning("accept failed: {Error}", e.Message);
                continue;
            }
            socket.NoDelay = true;
            var connection = new SocketConnection(socket, target, executor, isDiscovery, logger);
            _connections[connection] = RunAsync(connection);
        }
    }

    private async Task RunAsync(SocketConnection connection)
    {
        await Task.Yield();
        try
        {
            await connection.RunAsync().ConfigureAwait(false);
        }
        finally
        {
            _connections.TryRemove(connection, out _);
        }
    }
}
