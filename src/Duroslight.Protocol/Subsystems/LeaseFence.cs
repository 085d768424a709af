using System.Diagnostics;

namespace Duroslight.Protocol.Subsystems;

/// <summary>
/// Fencing of a cluster node's primaries (docs/ARCHITECTURE.md, "Failover"): the node may serve I/O on the
/// namespaces that reference this fence only while <see cref="Holds"/>, i.e. until a deadline the cluster code moves
/// forward after each successful lease renewal (the time the renewal was sent + 5/6 of the lease TTL). etcd expires
/// the lease no earlier than TTL after it received that renewal, and a new primary is chosen only once the lease
/// expired, so the old primary stops before the new one starts. Read on the I/O path: one clock read and a compare,
/// no lock, no allocation.
/// </summary>
public sealed class LeaseFence
{
    /// <summary>Stopwatch timestamp until which I/O may be served; starts open (a lone node is never fenced).</summary>
    private long _until = long.MaxValue;

    /// <summary>Whether the node may still serve I/O as a primary.</summary>
    public bool Holds => Stopwatch.GetTimestamp() < Volatile.Read(ref _until);

    /// <summary>Control path: serve until <paramref name="stopwatchTimestamp"/>.</summary>
    public void HoldUntil(long stopwatchTimestamp) => Volatile.Write(ref _until, stopwatchTimestamp);

    /// <summary>Control path: stop serving now (lease lost, or not yet confirmed).</summary>
    public void Close() => Volatile.Write(ref _until, 0);
}
