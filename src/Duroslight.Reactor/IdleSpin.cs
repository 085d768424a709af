namespace Duroslight.Reactor;

/// <summary>
/// Sleep mode's adaptive idle spin (see <see cref="Shard.MaxIdleSpin"/>), in Stopwatch ticks. It averages the idle
/// gaps (from the first iteration without work to the next one with work) and spins only while that average is
/// under the bound, so one odd gap neither starts nor stops spinning.
/// </summary>
internal struct IdleSpin(long maxTicks)
{
    private readonly long _maxTicks = maxTicks;
    private long _averageGap = maxTicks;
    private long _lastWork;
    private long _idleSince;

    public void Iterated(bool worked, long now)
    {
        if (!worked)
        {
            if (_idleSince == 0) _idleSince = now;
            return;
        }
        if (_idleSince != 0) _averageGap += (Math.Min(now - _idleSince, 2 * _maxTicks) - _averageGap) / 4;
        _idleSince = 0;
        _lastWork = now;
    }

    /// <summary>True while the shard should keep polling rather than sleep.</summary>
    public readonly bool ShouldSpin(long now) => _averageGap < _maxTicks && now - _lastWork < _maxTicks;
}
