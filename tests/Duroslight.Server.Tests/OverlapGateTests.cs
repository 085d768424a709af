using Duroslight.Server.Replication;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Xunit;

namespace Duroslight.Server.Tests;

/// <summary>
/// The replication overlap gate as a property over random arrivals and completions: overlapping changes run one at a
/// time in arrival order (so every replica applies them in the same order), others are never held up, and nothing
/// waits forever.
/// </summary>
public sealed class OverlapGateTests
{
    private sealed class Op(int id, long start, long end) : IRangeOp
    {
        public int Id { get; } = id;
        public long Start { get; } = start;
        public long End { get; } = end;
        public int BeganAt = -1;

        public bool Overlaps(Op other) => Start < other.End && other.Start < End;
    }

    /// <summary>Steps: (true, a, b) = an op over blocks [min, max] arrives; (false, k, _) = the k-th running op finishes.</summary>
    private static Gen<(bool arrive, int a, int b)[]> Steps =>
        Gen.ListOf(from arrive in Gen.Frequency((3, Gen.Constant(true)), (2, Gen.Constant(false)))
                   from a in Gen.Choose(0, 15)
                   from b in Gen.Choose(0, 15)
                   select (arrive, a, b)).Select(l => l.ToArray());

    [Property(MaxTest = 500)]
    public Property Overlapping_ops_run_alone_in_arrival_order_and_the_rest_run_at_once()
    {
        return Prop.ForAll(Arb.From(Steps), steps =>
        {
            var gate = new OverlapGate<Op>();
            var all = new List<Op>();
            var running = new List<Op>();
            int clock = 0;

            void Began(Op op)
            {
                Assert.Equal(-1, op.BeganAt);
                op.BeganAt = clock++;
                running.Add(op);
            }

            void Finish(Op op)
            {
                running.Remove(op);
                gate.Exit(op);
                while (gate.TryTakeReady(out var next)) Began(next);
            }

            foreach (var (arrive, a, b) in steps)
            {
                if (arrive)
                {
                    var op = new Op(all.Count, Math.Min(a, b) * 4096L, (Math.Max(a, b) + 1) * 4096L);
                    bool free = !all.Exists(o => o.Overlaps(op) && (o.BeganAt < 0 || running.Contains(o)));
                    all.Add(op);
                    bool entered = gate.TryEnter(op);
                    Assert.Equal(free, entered); // held up only by an overlapping op in flight or waiting
                    if (entered) Began(op);
                }
                else if (running.Count > 0)
                {
                    Finish(running[a % running.Count]);
                }
                AssertInvariants(all, running, gate);
            }
            while (running.Count > 0) Finish(running[0]);
            Assert.Equal(0, gate.Waiting);
            Assert.All(all, o => Assert.True(o.BeganAt >= 0, $"op {o.Id} never began"));
        });
    }

    [Fact]
    public void A_finished_op_lets_the_waiting_ops_it_blocked_start_in_order()
    {
        var gate = new OverlapGate<Op>();
        var first = new Op(0, 0, 8192);
        var second = new Op(1, 4096, 12288);   // overlaps first
        var third = new Op(2, 8192, 16384);    // overlaps second only: must wait behind it
        var apart = new Op(3, 65536, 69632);
        Assert.True(gate.TryEnter(first));
        Assert.False(gate.TryEnter(second));
        Assert.False(gate.TryEnter(third));
        Assert.True(gate.TryEnter(apart));

        gate.Exit(first);
        Assert.True(gate.TryTakeReady(out var next));
        Assert.Same(second, next);
        Assert.False(gate.TryTakeReady(out _));
        gate.Exit(second);
        Assert.True(gate.TryTakeReady(out next));
        Assert.Same(third, next);
    }

    private static void AssertInvariants(List<Op> all, List<Op> running, OverlapGate<Op> gate)
    {
        Assert.Equal(running.Count, gate.Running);
        for (int i = 0; i < running.Count; i++)
            for (int j = i + 1; j < running.Count; j++)
                Assert.False(running[i].Overlaps(running[j]), $"ops {running[i].Id} and {running[j].Id} overlap and run together");
        foreach (var a in all)
            foreach (var b in all)
                if (a.Id < b.Id && a.Overlaps(b) && b.BeganAt >= 0)
                    Assert.True(a.BeganAt >= 0 && a.BeganAt < b.BeganAt, $"op {b.Id} began before the earlier overlapping op {a.Id}");
        // Nothing waits without cause: every waiting op overlaps a running op or an earlier waiting one.
        foreach (var w in all)
        {
            if (w.BeganAt >= 0) continue;
            bool blocked = running.Exists(r => r.Overlaps(w)) || all.Exists(o => o.Id < w.Id && o.BeganAt < 0 && o.Overlaps(w));
            Assert.True(blocked, $"op {w.Id} waits though nothing it overlaps is in flight or ahead of it");
        }
    }
}
