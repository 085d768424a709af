using System.Net;
using System.Net.Sockets;
using Duroslight.Protocol.Engine;
using Duroslight.Protocol.Subsystems;
using Duroslight.Protocol.Tests.Engine;

namespace Duroslight.Protocol.Tests.Host;

/// <summary>
/// A minimal socket driver for TargetConnection on 127.0.0.1, for testing the socket initiator: one lock per
/// connection serialises engine calls (receive loop, wake-ups, a 20 ms poll timer), storage runs inline against
/// <see cref="MemoryStorage"/>, and output is sent in order under a per-connection send lock.
/// </summary>
internal sealed class LoopbackTarget : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly List<Task> _connections = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly object _storageLock = new();
    private readonly Task _accept;

    public LoopbackTarget(TargetOptions? options = null)
    {
        Target = new Target(options ?? new TargetOptions());
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        Target.AddListener(new ListenerInfo("127.0.0.1", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), 1, IsDiscovery: false));
        // Off the test's synchronization context: xUnit's context would otherwise run every connection's continuations.
        _accept = Task.Run(AcceptLoopAsync);
    }

    public Target Target { get; }
    public MemoryStorage Storage { get; } = new();
    public int Port { get; }

    public Duroslight.Protocol.Subsystems.NamespaceInfo AddVolume(uint nsid, long blocks, int blockSize, Guid? id = null)
    {
        lock (_storageLock) return Storage.AddVolume(Target, nsid, blocks, blockSize, id);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        try
        {
            await _accept;
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
        }
        Task[] all;
        lock (_connections) all = [.. _connections];
        await Task.WhenAll(all).WaitAsync(TimeSpan.FromSeconds(10));
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            var socket = await _listener.AcceptSocketAsync(_stop.Token);
            socket.NoDelay = true;
            var served = new Served(this, socket);
            lock (_connections) _connections.Add(served.RunAsync(_stop.Token));
        }
    }

    private sealed class Served : IConnectionSignal
    {
        private readonly LoopbackTarget _owner;
        private readonly Socket _socket;
        private readonly TargetConnection _conn;
        private readonly object _gate = new();
        private readonly SemaphoreSlim _sendLock = new(1, 1);
        private bool _closed;

        public Served(LoopbackTarget owner, Socket socket)
        {
            _owner = owner;
            _socket = socket;
            _conn = new TargetConnection(owner.Target, new ConnectionContext(0, socket.RemoteEndPoint?.ToString() ?? "?"), this);
        }

        public void Wake() => _ = Task.Run(() => ServiceAsync(null));

        public async Task RunAsync(CancellationToken stop)
        {
            using var timer = new Timer(_ => Wake(), null, 20, 20);
            var buffer = new byte[64 * 1024];
            try
            {
                while (!stop.IsCancellationRequested)
                {
                    int n = await _socket.ReceiveAsync(buffer.AsMemory(), SocketFlags.None, stop);
                    if (n == 0) break;
                    await ServiceAsync(buffer.AsMemory(0, n));
                    if (_closed) break;
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException)
            {
            }
            lock (_gate)
            {
                _closed = true;
                _conn.OnTransportClosed();
                DrainStorage();
            }
            _socket.Dispose();
        }

        /// <summary>Feeds input (if any), runs storage and timers, then sends what the engine produced.</summary>
        private async Task ServiceAsync(ReadOnlyMemory<byte>? input)
        {
            await _sendLock.WaitAsync();
            try
            {
                byte[] output;
                bool close;
                lock (_gate)
                {
                    if (_closed) return;
                    if (input is { } data) _conn.Receive(data.Span, Environment.TickCount64);
                    DrainStorage();
                    _conn.Poll(Environment.TickCount64);
                    output = _conn.PendingOutput.ToArray();
                    _conn.ConsumeOutput(output.Length);
                    close = _conn.WantsClose;
                }
                if (output.Length > 0) await _socket.SendAsync(output, SocketFlags.None);
                if (close) CloseSocket();
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                CloseSocket();
            }
            finally
            {
                _sendLock.Release();
            }
        }

        private void DrainStorage()
        {
            while (_conn.TryTakeStorageRequest(out var r))
            {
                Duroslight.Protocol.Nvme.NvmeStatus status;
                lock (_owner._storageLock) status = _owner.Storage.Execute(r);
                _conn.CompleteStorage(r, status);
            }
        }

        private void CloseSocket()
        {
            lock (_gate) _closed = true;
            try
            {
                _socket.Shutdown(SocketShutdown.Both);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
            }
            _socket.Close();
        }
    }
}
