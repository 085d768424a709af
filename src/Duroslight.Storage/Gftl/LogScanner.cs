using Duroslight.Storage.Devices;

namespace Duroslight.Storage.Gftl;

/// <summary>
/// Abrupt recovery: reads every segment of every device, collects the intact records, and rebuilds each volume's
/// map. For each block the record with the highest sequence number wins (a trim unmaps). A snapshot or clone
/// starts from its parent's state just before its base sequence number; records of a volume older than the
/// volume itself (a reused id) and of volumes no longer in the catalog are ignored.
/// </summary>
internal static class LogScanner
{
    private readonly record struct LogEvent(long Seq, long Lba, int Count, long Location);

    public static void Rebuild(GftlLog core, RecoveryTracker tracker)
    {
        var events = new Dictionary<Guid, List<LogEvent>>();
        long maxSeq = ScanDevices(core, events, tracker);
        core.RaiseSeq(maxSeq);
        foreach (List<LogEvent> list in events.Values)
        {
            list.Sort(static (a, b) => a.Seq.CompareTo(b.Seq));
        }

        foreach (GftlVolume volume in core.Volumes)
        {
            if (volume.Entry.Hidden)
            {
                continue;
            }

            foreach ((long lba, MapEntry entry) in Resolve(volume, long.MaxValue, events))
            {
                core.Install(volume, lba, entry.Location, entry.Seq);
            }
        }
    }

    private static long ScanDevices(GftlLog core, Dictionary<Guid, List<LogEvent>> events, RecoveryTracker tracker)
    {
        long maxSeq = 0;
        var records = new ParsedSegment();
        using var buffer = new NativeBuffer(core.Devices.SegmentBytes);
        foreach (Segment segment in core.Allocator.Segments)
        {
            int read = SyncBlockIo.Instance.ReadAsync(core.Devices.Devices[segment.Device].Handle, buffer.Memory, GftlLayout.ByteOffsetOf(segment.LocationAt(0))).GetAwaiter().GetResult();
            if (read != buffer.Length)
            {
                throw new IOException($"GFTL scan: cannot read segment {segment.Id} of device {segment.Device} (result {read}).");
            }

            // Stamps are sequence numbers too: new segments must be stamped above every stamp on disk.
            maxSeq = Math.Max(maxSeq, RecordParser.Parse(buffer.GetSpan(), core.Devices.LogKey, records, out int unknownVersion));
            if (unknownVersion != 0)
            {
                throw new InvalidDataException(
                    $"GFTL scan: segment {segment.Id} of device {segment.Device} holds records of format version {unknownVersion}; this build reads version {RecordFormat.Version} only.");
            }

            foreach (ParsedRecord record in records.Records)
            {
                maxSeq = Math.Max(maxSeq, Collect(segment, record, records.ExtentsOf(record), events));
            }

            tracker.Advance(buffer.Length);
        }

        return maxSeq;
    }

    private static long Collect(Segment segment, in ParsedRecord record, ReadOnlySpan<ParsedExtent> extents, Dictionary<Guid, List<LogEvent>> events)
    {
        long maxSeq = 0;
        if (record.Kind == RecordKind.Trim)
        {
            segment.TrimRecords++;
        }

        foreach ((Extent extent, int block) in extents)
        {
            if (!events.TryGetValue(extent.Volume, out List<LogEvent>? list))
            {
                events.Add(extent.Volume, list = []);
            }

            long location = record.Kind == RecordKind.Data ? segment.LocationAt(block) : GftlLayout.Unmapped;
            list.Add(new LogEvent(extent.Seq, extent.Lba, extent.Count, location));
            maxSeq = Math.Max(maxSeq, extent.Seq);
        }

        return maxSeq;
    }

    /// <summary>The volume's blocks as of (excluding) sequence number <paramref name="limit"/>.</summary>
    private static Dictionary<long, MapEntry> Resolve(GftlVolume volume, long limit, Dictionary<Guid, List<LogEvent>> events)
    {
        Dictionary<long, MapEntry> map = volume.Parent is { } parent ? Resolve(parent, volume.Entry.BaseSeq, events) : [];
        if (!events.TryGetValue(volume.Id, out List<LogEvent>? list))
        {
            return map;
        }

        long blocks = volume.Entry.SizeBytes / GftlLayout.BlockSize;
        foreach (LogEvent e in list)
        {
            if (e.Seq >= limit)
            {
                break;
            }

            // Older than the volume (a reused id), or outside it: a record's checksum proves it is whole, not that
            // its extent is sane, and a start must not fail (or map past the end) on one that is not.
            if (e.Seq < volume.Entry.CreatedSeq || e.Lba >= blocks || e.Count > blocks - e.Lba)
            {
                continue;
            }

            if (e.Location == GftlLayout.Unmapped)
            {
                Unmap(map, e.Lba, e.Count);
            }
            else
            {
                for (int i = 0; i < e.Count; i++)
                {
                    map[e.Lba + i] = new MapEntry { Location = e.Location + i, Seq = e.Seq };
                }
            }
        }

        return map;
    }

    private static void Unmap(Dictionary<long, MapEntry> map, long lba, long count)
    {
        if (count <= map.Count)
        {
            for (long i = 0; i < count; i++)
            {
                map.Remove(lba + i);
            }

            return;
        }

        foreach (long key in map.Keys)
        {
            if (key >= lba && key < lba + count)
            {
                map.Remove(key);
            }
        }
    }
}
