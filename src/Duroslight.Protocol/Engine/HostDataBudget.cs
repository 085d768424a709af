using System.Numerics;

namespace Duroslight.Protocol.Engine;

/// <summary>
/// Bytes of write buffers that hosts still owe data for (R2T'd and not yet received), shared by the connections of
/// one shard (so used from one thread, without a lock). A write that would exceed it waits, holding no buffer,
/// until others' data arrives: a flood of hosts that never send their data holds at most this much, not one
/// MDTS-sized buffer per queue entry of every connection. Reservations count the pool's power-of-two size class.
/// </summary>
public sealed class HostDataBudget(long limitBytes)
{
    public long LimitBytes { get; } = limitBytes;

    public long ReservedBytes { get; private set; }

    /// <summary>Writes that found the budget spent and waited (a gauge for operators: hosts owing data).</summary>
    public long Waits { get; private set; }

    public static HostDataBudget Unlimited() => new(long.MaxValue);

    /// <summary>The bytes a buffer of <paramref name="length"/> counts for: its power-of-two class, at least 4 KiB.</summary>
    public static long Cost(int length) => (long)BitOperations.RoundUpToPowerOf2((ulong)Math.Max(length, 4096));

    /// <summary>Reserves the cost of <paramref name="length"/>; with nothing reserved it always succeeds, so one
    /// command larger than the budget cannot wait forever.</summary>
    public bool TryReserve(int length)
    {
        long cost = Cost(length);
        if (ReservedBytes > 0 && ReservedBytes + cost > LimitBytes) return false;
        ReservedBytes += cost;
        return true;
    }

    internal void NoteWait() => Waits++;

    public void Release(int length) => ReservedBytes -= Cost(length);
}
