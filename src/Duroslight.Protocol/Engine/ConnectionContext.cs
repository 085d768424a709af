namespace Duroslight.Protocol.Engine;

/// <summary>Where a connection lives: the transport supplies it when it accepts the socket.</summary>
public sealed record ConnectionContext(int Shard, string PeerAddress, bool IsDiscoveryPort = false)
{
    /// <summary>Command data buffers; the reactor supplies its shard's pinned pool.</summary>
    public IDataBufferPool Buffers { get; init; } = ArrayDataBufferPool.Instance;

    /// <summary>The shard's budget for write data hosts still owe; the reactor shares one per shard.</summary>
    public HostDataBudget HostData { get; init; } = HostDataBudget.Unlimited();

    /// <summary>
    /// Read data goes out from its data buffer instead of being copied into the output: the driver then sends with
    /// <see cref="TargetConnection.BeginSend(Span{ReadOnlyMemory{byte}})"/> (a gathering send) and the buffer goes
    /// back to <see cref="Buffers"/> once sent. Off, all output is one contiguous <see cref="TargetConnection.PendingOutput"/>.
    /// </summary>
    public bool SendReadDataInPlace { get; init; }
}

/// <summary>
/// Lets other threads ask the driver to run <see cref="TargetConnection.Poll"/> on the connection's own thread
/// (an AEN to deliver, a controller torn down). The engine owns no thread, so it can only ask.
/// </summary>
public interface IConnectionSignal
{
    void Wake();
}
