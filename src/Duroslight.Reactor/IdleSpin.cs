namespace Duroslight.Reactor;

/// <summary>
/// Sleep mode's adaptive idle spin (see <see cref="Shard.MaxIdleSpin"/>), in Stopwatch ticks. It averages the idle
/// gaps and spins only while that average is under the bound, so one odd gap neither starts nor stops spinning.
/// A gap starts at the first iteration that queued no I/O of its own (from then on only the outside, a host or
/// another shard, can bring work) and ends at the next iteration with work. A QD1 host keeps every iteration busy
/// (command in, send out, send done), so counting only iterations without work would never see its gaps.
/// </summary>
internal struct IdleSpin(long maxTicks)
{
    private readonly long _maxTicks = maxTicks;
    private long _averageGap = maxTicks;
    private long _lastWork;
    private long _idleSince;

    public void Iterated(bool worked, bool queuedIo, long now)
    {
        if (!worked)
        {
            if (_idleSince == 0) _idleSince = now;
            return;
        }
        if (_idleSince != 0) _averageGap += (Math.Min(now - _idleSince, 2 * _maxTicks) - _averageGap) / 4;
        _idleSince = queuedIo ? 0 : now;
        _lastWork = now;
    }

    /// <summary>True while the shard should keep polling rather than sleep.</summary>
    public readonly bool ShouldSpin(long now) => _averageGap < _maxTicks && now - _lastWork < _maxTicks;
}
