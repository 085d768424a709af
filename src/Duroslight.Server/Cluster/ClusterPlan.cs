namespace Duroslight.Server.Cluster;

/// <summary>
/// The leader's decisions, as pure functions of the cluster's records (property-tested): where a volume's replicas
/// go and which replica is primary.
/// </summary>
public static class ClusterPlan
{
    /// <summary>
    /// Places an unplaced volume: its replicas on distinct live nodes, the least loaded first (fewest replicas, then
    /// the lowest index), as many as it asks for or as there are live nodes. A volume placed already keeps its
    /// placement: adding a replica later needs a rebuild (Cluster II).
    /// </summary>
    public static IReadOnlyList<int> Place(int replicas, IReadOnlyCollection<int> live, IReadOnlyDictionary<int, int> load)
    {
        var candidates = new List<int>(live);
        candidates.Sort((a, b) => Load(load, a) != Load(load, b) ? Load(load, a).CompareTo(Load(load, b)) : a.CompareTo(b));
        if (candidates.Count > replicas) candidates.RemoveRange(replicas, candidates.Count - replicas);
        candidates.Sort();
        return candidates;
    }

    /// <summary>
    /// The primary: the current one while it is live and in sync (a draining node too: it hands its primaries over
    /// itself, <see cref="ClusterMember"/>); otherwise the live in-sync replica not being drained with the fewest
    /// primaries (then the lowest index); failing that a drained one (the successor a drain counted on died
    /// meanwhile: better a drained primary than none); -1 when no in-sync replica is live.
    /// </summary>
    public static int ChoosePrimary(VolumeRecord v, IReadOnlyCollection<int> live, IReadOnlyDictionary<int, int> primaries,
        IReadOnlyCollection<int>? draining = null)
    {
        if (v.Primary >= 0 && Contains(v.InSync, v.Primary) && live.Contains(v.Primary)) return v.Primary;
        int best = Best(v, live, primaries, draining);
        return best < 0 && draining is not null ? Best(v, live, primaries, null) : best;
    }

    /// <summary>Whether a drained primary can hand <paramref name="v"/> over: a live in-sync replica on a node not drained.</summary>
    public static bool HasSuccessor(VolumeRecord v, IReadOnlyCollection<int> live, IReadOnlyCollection<int> draining) =>
        Best(v, live, new Dictionary<int, int>(), draining) >= 0;

    private static int Best(VolumeRecord v, IReadOnlyCollection<int> live, IReadOnlyDictionary<int, int> primaries, IReadOnlyCollection<int>? except)
    {
        int best = -1;
        foreach (int n in v.InSync)
            if (live.Contains(n) && except?.Contains(n) != true && (best < 0 || Load(primaries, n) < Load(primaries, best) || (Load(primaries, n) == Load(primaries, best) && n < best)))
                best = n;
        return best;
    }

    /// <summary>
    /// One leader pass over every volume: places the unplaced (never on a draining node), re-chooses primaries that are
    /// gone or were handed over. Returns the records that changed (generation + 1), in the order given; loads are
    /// counted as the pass goes so one pass balances.
    /// </summary>
    public static List<VolumeRecord> Decide(IReadOnlyList<VolumeRecord> volumes, IReadOnlyCollection<int> live,
        IReadOnlyCollection<int>? draining = null)
    {
        var placeable = new List<int>(live.Count);
        foreach (int n in live) if (draining?.Contains(n) != true) placeable.Add(n);
        var load = new Dictionary<int, int>();
        var primaries = new Dictionary<int, int>();
        foreach (var v in volumes)
        {
            foreach (int n in v.Placement) load[n] = Load(load, n) + 1;
            if (v.Primary >= 0) primaries[v.Primary] = Load(primaries, v.Primary) + 1;
        }
        var changed = new List<VolumeRecord>();
        foreach (var v in volumes)
        {
            var next = v;
            if (v.Placement.Count == 0 && placeable.Count > 0)
            {
                var placement = Place(v.Replicas, placeable, load);
                foreach (int n in placement) load[n] = Load(load, n) + 1;
                // Every replica is in sync: a new volume is empty everywhere, and from then on the primary forwards
                // every write to the in-sync secondaries (dropping one that misses a write before acknowledging it).
                next = v with { Placement = placement, InSync = placement, Primary = -1 };
            }
            int primary = ChoosePrimary(next, live, primaries, draining);
            if (primary != next.Primary)
            {
                if (next.Primary >= 0 && primaries.ContainsKey(next.Primary)) primaries[next.Primary]--;
                if (primary >= 0) primaries[primary] = Load(primaries, primary) + 1;
                next = next with { Primary = primary };
            }
            if (!ReferenceEquals(next, v)) changed.Add(next with { Generation = v.Generation + 1 });
        }
        return changed;
    }

    private static int Load(IReadOnlyDictionary<int, int> load, int node) => load.TryGetValue(node, out int n) ? n : 0;

    private static bool Contains(IReadOnlyList<int> list, int value)
    {
        foreach (int x in list) if (x == value) return true;
        return false;
    }
}
