namespace Duroslight.Server.Replication;

/// <summary>A byte range an operation changes, [<see cref="Start"/>, <see cref="End"/>).</summary>
public interface IRangeOp
{
    long Start { get; }
    long End { get; }
}

/// <summary>
/// Keeps overlapping changes of one volume, on the shard that owns their chunks, one at a time and in arrival order.
/// The primary forwards a write to every secondary and each replica runs its copies concurrently, so two overlapping
/// writes in flight together could land in one order here and the other order there: replicas that differ, and a
/// host that reads one value before a failover and the other after. NVMe lets either order win, but only one of them
/// for good. An operation starts when it overlaps nothing in flight and nothing that arrived before it and still
/// waits; otherwise it waits for them. Operations that do not overlap are never held up. One shard's thread only: no
/// lock; the lists keep their capacity, so steady state allocates nothing.
/// </summary>
public sealed class OverlapGate<T> where T : class, IRangeOp
{
    private readonly List<T> _running = [];
    private readonly List<T> _waiting = [];

    public int Running => _running.Count;

    public int Waiting => _waiting.Count;

    /// <summary>True: <paramref name="op"/> may start now. False: it waits; <see cref="TryTakeReady"/> hands it out later.</summary>
    public bool TryEnter(T op)
    {
        if (OverlapsAny(_running, _running.Count, op) || OverlapsAny(_waiting, _waiting.Count, op))
        {
            _waiting.Add(op);
            return false;
        }
        _running.Add(op);
        return true;
    }

    /// <summary><paramref name="op"/>, which <see cref="TryEnter"/> let start or <see cref="TryTakeReady"/> handed out, is over.</summary>
    public void Exit(T op)
    {
        int i = _running.IndexOf(op);
        if (i < 0) throw new InvalidOperationException("the operation is not running");
        _running.RemoveAt(i);
    }

    /// <summary>
    /// The oldest waiting operation that may start now (counted as running), if any. Call it until false after every
    /// <see cref="Exit"/>; it re-reads the state each time, so an operation started from here may finish inside it.
    /// </summary>
    public bool TryTakeReady(out T op)
    {
        for (int i = 0; i < _waiting.Count; i++)
        {
            var candidate = _waiting[i];
            if (OverlapsAny(_running, _running.Count, candidate) || OverlapsAny(_waiting, i, candidate)) continue;
            _waiting.RemoveAt(i);
            _running.Add(candidate);
            op = candidate;
            return true;
        }
        op = null!;
        return false;
    }

    private static bool OverlapsAny(List<T> ops, int count, T op)
    {
        for (int i = 0; i < count; i++)
            if (ops[i].Start < op.End && op.Start < ops[i].End) return true;
        return false;
    }
}
