namespace Duroslight.Reactor.Tests;

/// <summary>Sleep mode's idle spin: on for back-to-back traffic, off for sparse traffic and once idle.</summary>
public sealed class IdleSpinTests
{
    private const long Max = 1000;

    [Fact]
    public void A_fresh_shard_sleeps_at_once()
    {
        var spin = new IdleSpin(Max);
        spin.Iterated(worked: true, now: 10);
        Assert.False(spin.ShouldSpin(11));
    }

    [Fact]
    public void Short_idle_gaps_turn_spinning_on_but_only_for_the_bound_after_the_last_work()
    {
        var spin = new IdleSpin(Max);
        long now = Requests(ref spin, start: 0, count: 20, gap: Max / 5);
        Assert.True(spin.ShouldSpin(now + 1));
        Assert.True(spin.ShouldSpin(now + Max - 1));
        Assert.False(spin.ShouldSpin(now + Max)); // the bound: an idle shard goes to sleep
    }

    [Fact]
    public void Sparse_traffic_never_spins_and_a_switch_to_it_stops_spinning()
    {
        var spin = new IdleSpin(Max);
        long now = Requests(ref spin, start: 0, count: 20, gap: 10 * Max);
        Assert.False(spin.ShouldSpin(now + 1));

        now = Requests(ref spin, now, count: 20, gap: Max / 10);
        Assert.True(spin.ShouldSpin(now + 1));
        now = Requests(ref spin, now, count: 20, gap: 10 * Max);
        Assert.False(spin.ShouldSpin(now + 1));
    }

    [Fact]
    public void One_odd_gap_does_not_flip_the_decision()
    {
        var spin = new IdleSpin(Max);
        long now = Requests(ref spin, start: 0, count: 20, gap: Max / 10);
        now = Requests(ref spin, now, count: 1, gap: 100 * Max);
        Assert.True(spin.ShouldSpin(now + 1));
    }

    /// <summary>
    /// Each request: two iterations with work (receive, then send), then idle iterations until the next one,
    /// <paramref name="gap"/> after the last work. Returns the time of the last work.
    /// </summary>
    private static long Requests(ref IdleSpin spin, long start, int count, long gap)
    {
        long lastWork = start;
        for (int i = 0; i < count; i++)
        {
            spin.Iterated(worked: true, lastWork + gap);
            lastWork += gap + 1;
            spin.Iterated(worked: true, lastWork);
            spin.Iterated(worked: false, lastWork + 1);
            spin.Iterated(worked: false, lastWork + 2);
        }
        return lastWork;
    }
}
