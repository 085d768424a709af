using Duroslight.Host;

namespace Duroslight.Server.Replication;

/// <summary>A change that takes its turn in a channel's <see cref="OverlapGate{T}"/> and starts when it gets it.</summary>
internal interface IGatedOp : IRangeOp
{
    /// <summary>On the shard: the gate let it start.</summary>
    void Begin();
}

/// <summary>A command a shard sends to a peer on its <see cref="PeerQueue"/>: a replicated write or a rebuild's chunk copy.</summary>
internal interface IForwardOp
{
    NvmeCommand Command { get; }

    Memory<byte> Data { get; }

    /// <summary>On the shard: the peer answered (<paramref name="ok"/>) or the queue failed.</summary>
    void RemoteDone(PeerLink link, bool ok);
}
