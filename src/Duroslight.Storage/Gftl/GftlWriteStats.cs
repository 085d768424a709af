using System.Diagnostics;

namespace Duroslight.Storage.Gftl;

/// <summary>
/// Counters of the GFTL's write path since start (statistics, read off the I/O path): where a host write waits before
/// its record is submitted, and how many records each partition keeps in flight.
/// </summary>
/// <param name="HostWrites">Host writes whose records were written (trims and re-pack copies not counted).</param>
/// <param name="Queued">Host writes that did not go out at once (on the reactor: by the end of the loop iteration they arrived in): they waited for a record slot, company or room.</param>
/// <param name="QueueTicks">Total time host writes spent queued before their record was submitted (Stopwatch ticks).</param>
/// <param name="Records">Records the partitions started (one header, one device write each).</param>
/// <param name="DepthSum">Records of the partition in flight as each record started, itself included, summed.</param>
/// <param name="RoomWaits">Times a partition found no free segment and waited for the collector.</param>
public readonly record struct GftlWriteStats(long HostWrites, long Queued, long QueueTicks, long Records, long DepthSum, long RoomWaits)
{
    public static GftlWriteStats operator +(GftlWriteStats a, GftlWriteStats b) =>
        new(a.HostWrites + b.HostWrites, a.Queued + b.Queued, a.QueueTicks + b.QueueTicks, a.Records + b.Records,
            a.DepthSum + b.DepthSum, a.RoomWaits + b.RoomWaits);

    public static GftlWriteStats operator -(GftlWriteStats a, GftlWriteStats b) =>
        new(a.HostWrites - b.HostWrites, a.Queued - b.Queued, a.QueueTicks - b.QueueTicks, a.Records - b.Records,
            a.DepthSum - b.DepthSum, a.RoomWaits - b.RoomWaits);

    public double QueueSeconds => (double)QueueTicks / Stopwatch.Frequency;

    /// <summary>Records in flight (per partition) when a record started, on average.</summary>
    public double MeanDepth => Records == 0 ? 0 : (double)DepthSum / Records;

    public override string ToString() => FormattableString.Invariant(
        $"host writes {HostWrites}, records {Records} (mean depth {MeanDepth:F2}), queued {Queued} ({(HostWrites == 0 ? 0 : QueueSeconds * 1e6 / HostWrites):F1} us per host write), waits for room {RoomWaits}");
}
