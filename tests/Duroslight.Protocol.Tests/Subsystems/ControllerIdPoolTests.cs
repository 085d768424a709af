using Duroslight.Protocol.Subsystems;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Xunit;

namespace Duroslight.Protocol.Tests.Subsystems;

public sealed class ControllerIdPoolTests
{
    /// <summary>One step of a random session: allocate, or release the n-th live ID (modulo how many are live).</summary>
    private readonly record struct Step(bool Allocate, int Pick);

    [Property(MaxTest = 500)]
    public Property Random_allocate_release_sequences_match_a_model()
    {
        Gen<(int NodeIndex, int Capacity, Step[] Steps)> sessions =
            from capacity in Gen.Choose(1, 40)
            from nodeIndex in Gen.Choose(0, ControllerIdPool.MaxNodeCount(capacity) - 1)
            from steps in Gen.Zip(Gen.Frequency((3, Gen.Constant(true)), (2, Gen.Constant(false))), Gen.Choose(0, 1000), (allocate, pick) => new Step(allocate, pick)).ArrayOf()
            select (nodeIndex, capacity, steps);

        return Prop.ForAll(Arb.From(sessions), session => RunAgainstModel(session.NodeIndex, session.Capacity, session.Steps));
    }

    [Fact]
    public void The_default_pool_hands_out_2030_ids_then_refuses()
    {
        var pool = new ControllerIdPool(nodeIndex: 0);
        var seen = new HashSet<ushort>();
        for (int i = 0; i < 2030; i++)
        {
            Assert.True(pool.TryAllocate(out ushort cntlid));
            Assert.True(seen.Add(cntlid));
        }

        Assert.False(pool.TryAllocate(out _));
        Assert.Equal((2030, 2030, (ushort)1, (ushort)2030), (pool.InUse, pool.Capacity, pool.First, pool.Last));
    }

    [Fact]
    public void Every_node_range_lies_in_the_assignable_ids_and_no_two_overlap()
    {
        Assert.Equal(32, ControllerIdPool.MaxNodeCount());
        var owner = new int[0x10000];
        for (int node = 0; node < 32; node++)
        {
            var pool = new ControllerIdPool(node);
            Assert.Equal((1 + (node * 2030), (node + 1) * 2030), (pool.First, pool.Last));
            Assert.InRange(pool.First, 1, 0xFFEF);
            Assert.InRange(pool.Last, 1, 0xFFEF);
            for (int id = pool.First; id <= pool.Last; id++)
            {
                Assert.Equal(0, owner[id]);
                owner[id] = node + 1;
            }
        }
    }

    [Theory]
    [InlineData(32, 2030)]
    [InlineData(-1, 2030)]
    [InlineData(0, 0)]
    [InlineData(0, 0xFFF0)]
    [InlineData(1, 0xFFEF)] // one node takes the whole range
    public void Bad_node_indexes_and_capacities_are_rejected(int nodeIndex, int capacity)
    {
        var refused = Assert.Throws<ArgumentOutOfRangeException>(() => new ControllerIdPool(nodeIndex, capacity));
        Assert.False(string.IsNullOrWhiteSpace(refused.Message));
    }

    [Fact]
    public void The_node_index_refusal_says_what_would_be_valid()
    {
        var refused = Assert.Throws<ArgumentOutOfRangeException>(() => new ControllerIdPool(32));
        Assert.Equal("nodeIndex", refused.ParamName);
        Assert.Contains("0..31", refused.Message);
    }

    [Fact]
    public void A_released_id_is_not_reused_while_others_are_free()
    {
        var pool = new ControllerIdPool(nodeIndex: 3, capacity: 4);
        Assert.True(pool.TryAllocate(out ushort first));
        pool.Release(first);

        Assert.True(pool.TryAllocate(out ushort second));

        Assert.NotEqual(first, second);
        Assert.Equal(first + 1, second);
    }

    [Fact]
    public void Ids_are_recycled_round_robin_after_wrapping()
    {
        var pool = new ControllerIdPool(nodeIndex: 0, capacity: 3); // IDs 1, 2, 3
        var ids = new ushort[3];
        for (int i = 0; i < 3; i++)
        {
            pool.TryAllocate(out ids[i]);
        }

        pool.Release(2);
        pool.Release(1);

        Assert.True(pool.TryAllocate(out ushort next));
        Assert.Equal(1, next); // the cursor is past 3; wrapping, 1 is the first free
        Assert.True(pool.TryAllocate(out next));
        Assert.Equal(2, next);
        Assert.Equal(new ushort[] { 1, 2, 3 }, ids);
    }

    [Fact]
    public void Releasing_an_id_that_is_not_in_use_is_a_bug()
    {
        var pool = new ControllerIdPool(nodeIndex: 1, capacity: 10); // IDs 11..20
        pool.TryAllocate(out ushort cntlid);
        pool.Release(cntlid);

        Assert.Throws<InvalidOperationException>(() => pool.Release(cntlid)); // twice
        Assert.Throws<InvalidOperationException>(() => pool.Release(12)); // never handed out
        Assert.Throws<InvalidOperationException>(() => pool.Release(10)); // another node's
        Assert.Throws<InvalidOperationException>(() => pool.Release(0));
        Assert.Throws<InvalidOperationException>(() => pool.Release(0xFFFF));
        Assert.Equal(0, pool.InUse);
    }

    [Fact]
    public async Task Concurrent_connects_and_disconnects_never_share_an_id()
    {
        var pool = new ControllerIdPool(nodeIndex: 5, capacity: 64);
        var live = new int[0x10000];
        var workers = new Task[4];
        for (int w = 0; w < workers.Length; w++)
        {
            workers[w] = Task.Run(() => ConnectAndDisconnect(pool, live, rounds: 20_000));
        }

        await Task.WhenAll(workers);

        Assert.Equal(0, pool.InUse);
    }

    private static void ConnectAndDisconnect(ControllerIdPool pool, int[] live, int rounds)
    {
        for (int i = 0; i < rounds; i++)
        {
            if (!pool.TryAllocate(out ushort cntlid))
            {
                continue;
            }

            Assert.Equal(1, Interlocked.Increment(ref live[cntlid]));
            Assert.Equal(0, Interlocked.Decrement(ref live[cntlid]));
            pool.Release(cntlid);
        }
    }

    /// <summary>
    /// The model: the set of live IDs and the last ID handed out. The pool must hand out the first free ID
    /// after that one (cyclically), refuse only when full, and account for every ID.
    /// </summary>
    private static bool RunAgainstModel(int nodeIndex, int capacity, Step[] steps)
    {
        var pool = new ControllerIdPool(nodeIndex, capacity);
        int first = 1 + (nodeIndex * capacity);
        var live = new List<ushort>();
        int lastHandedOut = first - 1;
        foreach (Step step in steps)
        {
            if (step.Allocate)
            {
                bool allocated = pool.TryAllocate(out ushort cntlid);
                if (allocated != (live.Count < capacity))
                {
                    return false;
                }

                if (allocated)
                {
                    if (cntlid != NextFree(live, first, capacity, lastHandedOut))
                    {
                        return false;
                    }

                    live.Add(cntlid);
                    lastHandedOut = cntlid;
                }
            }
            else if (live.Count > 0)
            {
                int index = step.Pick % live.Count;
                pool.Release(live[index]);
                live.RemoveAt(index);
            }

            if (pool.InUse != live.Count)
            {
                return false;
            }
        }

        return ReleasesEverythingAndRefills(pool, live, capacity);
    }

    private static int NextFree(List<ushort> live, int first, int capacity, int lastHandedOut)
    {
        for (int step = 1; step <= capacity; step++)
        {
            int candidate = first + ((lastHandedOut - first + step) % capacity);
            if (!live.Contains((ushort)candidate))
            {
                return candidate;
            }
        }

        return -1;
    }

    /// <summary>No leaks: once everything is released the whole capacity is available again.</summary>
    private static bool ReleasesEverythingAndRefills(ControllerIdPool pool, List<ushort> live, int capacity)
    {
        foreach (ushort cntlid in live)
        {
            pool.Release(cntlid);
        }

        if (pool.InUse != 0)
        {
            return false;
        }

        var distinct = new HashSet<ushort>();
        for (int i = 0; i < capacity; i++)
        {
            if (!pool.TryAllocate(out ushort cntlid) || cntlid < pool.First || cntlid > pool.Last || !distinct.Add(cntlid))
            {
                return false;
            }
        }

        return !pool.TryAllocate(out _) && pool.InUse == capacity;
    }
}
