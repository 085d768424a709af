using Duroslight.Protocol.Engine;

namespace Duroslight.Server.Transport;

/// <summary>
/// The byte stream between a connection's socket and its engine: what the ring receives goes through
/// <see cref="Receive"/> to <see cref="TargetConnection.Receive"/>, and what the engine wants sent comes out of
/// <see cref="BeginSend"/> as the segments one gathering send (sendmsg) takes, until <see cref="EndSend"/> says
/// how many wire bytes the socket took. A transform sits here without touching the ring or the engine: TLS would
/// decrypt records in <see cref="Receive"/> (keeping a partial record for the next call) and, in
/// <see cref="BeginSend"/>, encrypt the engine's segments into record buffers of its own and lend those, ending the
/// engine's send (<see cref="TargetConnection.EndSend"/>) once the records holding its bytes are out.
/// <see cref="PlainByteStream"/> passes bytes through. One connection's thread only.
/// </summary>
internal interface IByteStream
{
    /// <summary>Bytes the socket received.</summary>
    void Receive(ReadOnlySpan<byte> wire, long nowMs);

    /// <summary>Something waits to be sent.</summary>
    bool HasPendingOutput { get; }

    /// <summary>Bytes waiting to be sent, for back-pressure.</summary>
    long PendingOutputBytes { get; }

    /// <summary>Lends the next wire bytes as at most <paramref name="segments"/>.Length pieces; returns how many.
    /// They stay valid (and in place) until <see cref="EndSend"/>.</summary>
    int BeginSend(Span<ReadOnlyMemory<byte>> segments);

    /// <summary>The socket took <paramref name="sent"/> bytes of what <see cref="BeginSend"/> lent (0 on error).</summary>
    void EndSend(int sent);
}

/// <summary>No transform: the engine's bytes are the wire's (read data sent in place, from its buffer).</summary>
internal sealed class PlainByteStream(TargetConnection engine) : IByteStream
{
    public void Receive(ReadOnlySpan<byte> wire, long nowMs) => engine.Receive(wire, nowMs);

    public bool HasPendingOutput => engine.HasPendingOutput;

    public long PendingOutputBytes => engine.PendingOutputBytes;

    public int BeginSend(Span<ReadOnlyMemory<byte>> segments) => engine.BeginSend(segments);

    public void EndSend(int sent) => engine.EndSend(sent);
}
