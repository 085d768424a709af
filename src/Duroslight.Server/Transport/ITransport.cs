using System.Net;

namespace Duroslight.Server.Transport;

/// <summary>
/// Listens on the node's NVMe/TCP ports and moves bytes between their sockets and the sans-IO engine, one
/// <see cref="Duroslight.Protocol.Engine.TargetConnection"/> per socket. <see cref="ReactorTransport"/> (io_uring,
/// one connection per shard) is the implementation; <see cref="Hosting.NodeHost"/> sees only this contract (start,
/// count, drain, dispose).
/// </summary>
public interface ITransport : IAsyncDisposable
{
    /// <summary>Starts accepting on every endpoint (I/O and discovery ports).</summary>
    void Start(IReadOnlyList<TransportEndpoint> endpoints);

    /// <summary>Live connections (queues).</summary>
    int ConnectionCount { get; }

    /// <summary>
    /// Graceful stop: stop accepting, let executing commands finish and their responses go out, then close
    /// every connection. Returns when all are closed or <paramref name="timeout"/> passed.
    /// </summary>
    Task DrainAsync(TimeSpan timeout);
}

public sealed record TransportEndpoint(IPEndPoint EndPoint, bool IsDiscovery);
