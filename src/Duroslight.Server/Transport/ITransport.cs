using System.Net;

namespace Duroslight.Server.Transport;

/// <summary>
/// Moves bytes between sockets and the sans-IO engine: what the node host starts, counts and drains.
/// <see cref="ReactorTransport"/> (io_uring shards) is the implementation.
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
