using Duroslight.Server.Cluster;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Xunit;

namespace Duroslight.Server.Tests;

/// <summary>The leader's placement and primary choice as properties over random clusters and volume sequences.</summary>
public sealed class ClusterPlanTests
{
    private static VolumeRecord Unplaced(int i, int replicas) =>
        new(Guid.NewGuid(), $"v{i}", 1 << 20, 4096, (uint)i + 1, replicas, [], -1, [], 1);

    /// <summary>
    /// Volumes created one by one, each placed by a leader pass: replicas on distinct live nodes, as many as asked or
    /// as are live, every replica in sync and a live primary; replica counts over the live nodes never differ by more than one.
    /// </summary>
    [Property(MaxTest = 300)]
    public Property Sequential_placement_is_distinct_live_and_balanced()
    {
        var gen = from nodes in Gen.Choose(1, 8)
                  from deadMask in Gen.Choose(0, 255)
                  from replicas in Gen.ListOf(Gen.Choose(1, 3)).Select(l => l.Take(30).ToArray())
                  select (nodes, deadMask, replicas);
        return Prop.ForAll(Arb.From(gen), c =>
        {
            var live = Enumerable.Range(0, c.nodes).Where(n => (c.deadMask & (1 << n)) == 0 || n == 0).ToArray();
            var volumes = new List<VolumeRecord>();
            for (int i = 0; i < c.replicas.Length; i++)
            {
                volumes.Add(Unplaced(i, c.replicas[i]));
                foreach (var changed in ClusterPlan.Decide(volumes, live))
                    volumes[volumes.FindIndex(v => v.Id == changed.Id)] = changed;
            }
            foreach (var v in volumes)
            {
                Assert.Equal(Math.Min(v.Replicas, live.Length), v.Placement.Count);
                Assert.Equal(v.Placement.Count, v.Placement.Distinct().Count());
                Assert.All(v.Placement, n => Assert.Contains(n, live));
                Assert.Equal(v.Placement, v.InSync); // a new volume is empty everywhere: every replica is in sync
                Assert.Contains(v.Primary, v.Placement);
                Assert.Equal(2, v.Generation);
            }
            var load = live.Select(n => volumes.Count(v => v.Placement.Contains(n))).ToArray();
            Assert.True(load.Max() - load.Min() <= 1, $"replica loads {string.Join(',', load)}");
            // A second pass over a settled cluster changes nothing.
            Assert.Empty(ClusterPlan.Decide(volumes, live));
        });
    }

    /// <summary>A primary that is no longer live moves to a live in-sync replica; with none live, the volume has none (-1).</summary>
    [Property(MaxTest = 300)]
    public Property A_lost_primary_moves_to_a_live_in_sync_replica()
    {
        var gen = from placement in Gen.Shuffle(new[] { 0, 1, 2, 3, 4 }).Select(p => p.Take(3).ToArray())
                  from inSyncCount in Gen.Choose(1, 3)
                  from liveMask in Gen.Choose(0, 31)
                  select (placement, inSyncCount, liveMask);
        return Prop.ForAll(Arb.From(gen), c =>
        {
            var inSync = c.placement.Take(c.inSyncCount).ToArray();
            var v = Unplaced(0, 3) with { Placement = c.placement, InSync = inSync, Primary = inSync[0] };
            var live = Enumerable.Range(0, 5).Where(n => (c.liveMask & (1 << n)) != 0).ToArray();
            var changed = ClusterPlan.Decide([v], live);
            int primary = changed.Count == 0 ? v.Primary : changed[0].Primary;
            if (live.Contains(v.Primary)) Assert.Empty(changed);
            else if (inSync.Any(live.Contains)) Assert.True(live.Contains(primary) && inSync.Contains(primary));
            else Assert.Equal(-1, primary);
            Assert.Equal(v.Placement, changed.Count == 0 ? v.Placement : changed[0].Placement);
        });
    }

    /// <summary>
    /// Drain: a draining primary that is live stays primary (it hands over itself); once it released the primary (-1)
    /// the leader picks a live in-sync replica that is not draining, failing that a draining one (its successor died
    /// meanwhile); a new volume is never placed on a draining node.
    /// </summary>
    [Property(MaxTest = 300)]
    public Property A_released_primary_moves_to_a_live_in_sync_replica_that_is_not_draining()
    {
        var gen = from placement in Gen.Shuffle(new[] { 0, 1, 2, 3, 4 }).Select(p => p.Take(3).ToArray())
                  from inSyncCount in Gen.Choose(1, 3)
                  from liveMask in Gen.Choose(0, 31)
                  from drainMask in Gen.Choose(0, 31)
                  select (placement, inSyncCount, liveMask, drainMask);
        return Prop.ForAll(Arb.From(gen), c =>
        {
            var inSync = c.placement.Take(c.inSyncCount).ToArray();
            var live = Enumerable.Range(0, 5).Where(n => (c.liveMask & (1 << n)) != 0 || n == inSync[0]).ToArray();
            var draining = Enumerable.Range(0, 5).Where(n => (c.drainMask & (1 << n)) != 0 || n == inSync[0]).ToArray();
            var serving = Unplaced(0, 3) with { Placement = c.placement, InSync = inSync, Primary = inSync[0] };
            Assert.Empty(ClusterPlan.Decide([serving], live, draining));

            var released = serving with { Primary = -1 };
            var changed = ClusterPlan.Decide([released], live, draining);
            var candidates = inSync.Where(n => live.Contains(n) && !draining.Contains(n)).ToArray();
            Assert.Equal(candidates.Length > 0, ClusterPlan.HasSuccessor(serving, live, draining));
            if (candidates.Length > 0) Assert.Contains(Assert.Single(changed).Primary, candidates);
            else Assert.Contains(Assert.Single(changed).Primary, inSync.Where(n => live.Contains(n) && draining.Contains(n)));

            var placed = ClusterPlan.Decide([Unplaced(1, 3)], live, draining);
            var placeable = live.Where(n => !draining.Contains(n)).ToArray();
            if (placeable.Length == 0) Assert.Empty(placed);
            else Assert.All(Assert.Single(placed).Placement, n => Assert.Contains(n, placeable));
        });
    }
}
