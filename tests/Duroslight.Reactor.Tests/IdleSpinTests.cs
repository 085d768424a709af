namespace Duroslight.Reactor.Tests;

/// <summary>Sleep mode's idle spin: on for back-to-back traffic, off for sparse traffic and once idle.</summary>
public sealed class IdleSpinTests
{
    private const long Max = 1000;

    [Fact]
    public void A_fresh_shard_sleeps_at_once()
    {
        var spin = new IdleSpin(Max);
        spin.Iterated(worked: true, queuedIo: false, now: 10);
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

    [Fact]
    public void Back_to_back_QD1_commands_turn_spinning_on_though_no_iteration_is_idle()
    {
        // A sleeping shard wakes straight into work: command in (queues the send), send done (queues nothing), next
        // command. Every iteration works, yet the host's turnaround between them is a gap worth spinning through.
        var spin = new IdleSpin(Max);
        long now = 0;
        for (int i = 0; i < 20; i++)
        {
            now += Max / 5;
            spin.Iterated(worked: true, queuedIo: true, now);
            now += 1;
            spin.Iterated(worked: true, queuedIo: false, now);
        }
        Assert.True(spin.ShouldSpin(now + 1));
    }

    [Fact]
    public void Work_that_keeps_queuing_its_own_io_is_not_a_gap()
    {
        // Device I/O chained by the shard itself (a long sparse-traffic gap, then back-to-back reads the shard
        // queues) must not pull the average down: only time spent waiting on the outside counts.
        var spin = new IdleSpin(Max);
        long now = Requests(ref spin, start: 0, count: 20, gap: 10 * Max);
        for (int i = 0; i < 50; i++)
            spin.Iterated(worked: true, queuedIo: true, now += 1);
        Assert.False(spin.ShouldSpin(now + 1));
    }

    /// <summary>
    /// Each request: an iteration with work that queues the reply, one with work that queues nothing (the send
    /// completed), then idle iterations until the next request, <paramref name="gap"/> after the last work.
    /// Returns the time of the last work.
    /// </summary>
    private static long Requests(ref IdleSpin spin, long start, int count, long gap)
    {
        long lastWork = start;
        for (int i = 0; i < count; i++)
        {
            spin.Iterated(worked: true, queuedIo: true, lastWork + gap);
            lastWork += gap + 1;
            spin.Iterated(worked: true, queuedIo: false, lastWork);
            spin.Iterated(worked: false, queuedIo: false, lastWork + 1);
            spin.Iterated(worked: false, queuedIo: false, lastWork + 2);
        }
        return lastWork;
    }
}
