using Duroslight.Core.Interop;

namespace Duroslight.Reactor;

/// <summary>
/// A connected TCP socket that an <see cref="Acceptor"/> handed out: the descriptor the shard's ring sends and
/// receives on (<see cref="Shard.SubmitSend"/>, <see cref="Shard.SubmitReceive"/>), and the few calls made on it
/// outside the ring. Whoever accepted it closes it once.
/// </summary>
public readonly record struct TcpSocket(int Fd)
{
    /// <summary>"address:port" of the peer, or "?".</summary>
    public string PeerName() => LibC.PeerName(Fd);

    /// <summary>Turns off Nagle: responses go out when the shard sends them, not after the peer's delayed ACK.</summary>
    public void SetNoDelay() => LibC.SetNoDelay(Fd);

    /// <summary>Shuts down both directions: an armed receive completes with 0, a stuck send with EPIPE.</summary>
    public void Shutdown() => LibC.Shutdown(Fd);

    public void Close() => LibC.Close(Fd);
}
