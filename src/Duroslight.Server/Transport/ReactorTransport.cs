using System.Collections.Concurrent;
using System.Net.Sockets;
using Duroslight.Protocol.Engine;
using Duroslight.Protocol.Subsystems;
using Duroslight.Reactor;
using Duroslight.Server.Execution;
using Duroslight.Server.Hosting;
using Microsoft.Extensions.Logging;

namespace Duroslight.Server.Transport;

/// <summary>
/// NVMe/TCP over the io_uring reactor: shard 0 accepts (multishot) on every listener and deals connections out to
/// the shards in turn; each connection then lives on its shard, and its storage requests run chunk by chunk on the
/// chunks' owning shards.
/// </summary>
public sealed class ReactorTransport : ITransport
{
    private readonly ShardGroup _shards;
    private readonly ShardBufferPool[] _pools;
    private readonly HostDataBudget[] _budgets;
    private readonly List<(Socket Socket, Acceptor Acceptor)> _listeners = [];
    private readonly ConcurrentDictionary<ReactorConnection, byte> _connections = new();
    private int _nextShard;
    private bool _acceptStopped;

    public ReactorTransport(Target target, ShardGroup shards, VolumeTable volumes, ILogger logger)
    {
        Target = target;
        _shards = shards;
        Logger = logger;
        Router = new ChunkRouter(shards, volumes);
        _pools = new ShardBufferPool[shards.Count];
        for (int i = 0; i < _pools.Length; i++) _pools[i] = new ShardBufferPool();
        _budgets = new HostDataBudget[shards.Count];
        for (int i = 0; i < _budgets.Length; i++) _budgets[i] = new HostDataBudget(target.Options.HostDataBudgetPerShard);
    }

    public int ConnectionCount => _connections.Count;

    internal Target Target { get; }

    internal ILogger Logger { get; }

    internal ChunkRouter Router { get; }

    public void Start(IReadOnlyList<TransportEndpoint> endpoints)
    {
        foreach (var endpoint in endpoints)
        {
            bool discovery = endpoint.IsDiscovery;
            var listener = ListenSocket.Open(endpoint.EndPoint, discovery ? "NVMe/TCP discovery" : "NVMe/TCP", 1024);
            var acceptor = new Acceptor(_shards[0], listener, socket => Adopt(socket, discovery),
                errno => Logger.LogWarning("accept on {Endpoint} failed: errno {Errno}", endpoint.EndPoint, errno));
            _listeners.Add((listener, acceptor));
            acceptor.Start();
            Logger.LogInformation("listening on {Endpoint} ({Kind})", listener.LocalEndPoint, discovery ? "discovery" : "nvme-tcp");
        }
    }

    public async Task DrainAsync(TimeSpan timeout)
    {
        await StopAcceptingAsync().ConfigureAwait(false);
        foreach (var c in _connections.Keys) c.Drain();
        if (!await WaitClosedAsync(timeout).ConfigureAwait(false))
        {
            Logger.LogWarning("drain timed out with {Count} connections left; closing them", _connections.Count);
            foreach (var c in _connections.Keys) c.Abort();
            await WaitClosedAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAcceptingAsync().ConfigureAwait(false);
        foreach (var c in _connections.Keys) c.Abort();
        if (!await WaitClosedAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false))
            Logger.LogError("{Count} connections did not close; their buffers are leaked", _connections.Count);
        else
            foreach (var pool in _pools) pool.Dispose();
    }

    internal void OnClosed(ReactorConnection connection)
    {
        _connections.TryRemove(connection, out _);
    }

    /// <summary>On shard 0: deal the new socket to the next shard.</summary>
    private void Adopt(TcpSocket socket, bool discovery)
    {
        var shard = _shards[_nextShard];
        _nextShard = (_nextShard + 1) % _shards.Count;
        var connection = new ReactorConnection(shard, socket, socket.PeerName(), discovery, this, _pools[shard.Index], _budgets[shard.Index]);
        _connections[connection] = 0;
        shard.Post(connection);
    }

    private async Task StopAcceptingAsync()
    {
        if (_acceptStopped) return;
        _acceptStopped = true;
        foreach (var (_, acceptor) in _listeners) await acceptor.StopAsync().ConfigureAwait(false);
        foreach (var (socket, _) in _listeners) socket.Dispose();
    }

    /// <summary>Shutdown only, so a short poll is simpler than a completion signal racing with the shards.</summary>
    private async Task<bool> WaitClosedAsync(TimeSpan timeout)
    {
        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        while (!_connections.IsEmpty && Environment.TickCount64 < deadline) await Task.Delay(10).ConfigureAwait(false);
        return _connections.IsEmpty;
    }
}
