namespace Duroslight.Reactor;

/// <summary>Work handed to a shard; runs on the shard's thread.</summary>
public interface IShardWork
{
    void Execute();
}

/// <summary>Receives the completions of the ring operations it submitted (see <see cref="Shard.Register"/>).</summary>
public interface IRingHandler
{
    /// <param name="op">The caller's tag from the submission.</param>
    /// <param name="result">The CQE result: bytes, a file descriptor, 0, or a negative errno.</param>
    /// <param name="more">A multishot operation stays armed.</param>
    void OnCompletion(byte op, int result, bool more);
}

/// <summary>
/// Takes what a receive into the shard's provided buffers got (<see cref="Shard.SubmitReceiveSelect"/>). Completions
/// without data (end of stream, errors, a cancel, no buffer left: -ENOBUFS) come to <see cref="IRingHandler.OnCompletion"/>.
/// </summary>
public interface IReceiveHandler : IRingHandler
{
    /// <param name="data">Valid only during the call: the buffer goes back to the kernel when it returns.</param>
    /// <param name="more">The multishot receive stays armed; false: submit another to keep receiving.</param>
    void OnReceived(byte op, ReadOnlySpan<byte> data, bool more);
}

/// <summary>
/// Something that batches output during a loop iteration and sends it once at the end
/// (<see cref="Shard.ScheduleSend"/>): one socket send for all the responses an iteration produced.
/// </summary>
public interface IBatchedSender
{
    void SendBatch();
}

/// <summary>Called about every <see cref="Shard.TickInterval"/> on the shard (timers: keep-alive, AENs).</summary>
public interface IShardTicker
{
    void OnTick(long nowMs);
}

/// <summary>How an idle shard waits.</summary>
public enum PollMode
{
    /// <summary>Sleep in io_uring_enter until a completion, a wake-up or the next tick: no CPU when idle.</summary>
    Sleep,

    /// <summary>Never sleep (as SPDK on dedicated cores): lowest latency, one core always at 100%.</summary>
    Busy,
}
