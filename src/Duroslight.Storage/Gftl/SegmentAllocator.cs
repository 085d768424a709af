namespace Duroslight.Storage.Gftl;

/// <summary>
/// Every segment of every device, and the free ones. New segments go to the devices in turn (striping); a device
/// with none free is skipped. Taken once per segment filled, never per I/O, so one lock serves all shards.
/// The last <see cref="Reserve"/> free segments are kept for the collector, which needs room to move live data.
/// Within a device, a segment written before (freed by the collector) is taken before a never-written one: on a
/// file-backed device the first write into a block makes the filesystem allocate or convert it (bench/README.md:
/// 128 KiB O_DIRECT writes 1.3-1.7x faster over written blocks), and a thin device stays smaller. Never-written
/// segments are handed out lowest first, so on each device they are the ones at or above a high-water mark.
/// </summary>
internal sealed class SegmentAllocator
{
    private readonly object _gate = new();
    private readonly Stack<Segment>[] _free;
    private readonly int[] _highWater;
    private int _nextDevice;
    private int _freeCount;
    private long _freshOpened;
    private long _reusedOpened;

    private readonly Func<long> _nextSeq;

    public SegmentAllocator(DeviceSet devices, int shardCount, Func<long> nextSeq)
    {
        _nextSeq = nextSeq;
        int blocks = devices.SegmentBytes / GftlLayout.BlockSize;
        Segments = new Segment[devices.Count * devices.SegmentsPerDevice];
        _free = new Stack<Segment>[devices.Count];
        _highWater = new int[devices.Count];
        for (int d = 0; d < devices.Count; d++)
        {
            _free[d] = new Stack<Segment>();
            for (int s = 0; s < devices.SegmentsPerDevice; s++)
            {
                long firstBlock = (GftlLayout.DataStart / GftlLayout.BlockSize) + ((long)s * blocks);
                Segments[(d * devices.SegmentsPerDevice) + s] = new Segment((d * devices.SegmentsPerDevice) + s, d, firstBlock, blocks);
            }
        }

        SegmentsPerDevice = devices.SegmentsPerDevice;
        BlocksPerSegment = blocks;
        Reserve = Math.Min(shardCount + 2, Segments.Length / 4);
    }

    public Segment[] Segments { get; }
    public int SegmentsPerDevice { get; }
    public int BlocksPerSegment { get; }
    public int Reserve { get; }
    public int FreeCount => Volatile.Read(ref _freeCount);

    /// <summary>Segments opened that had never been written (since start: at or above their device's high-water mark).</summary>
    public long FreshOpened => Interlocked.Read(ref _freshOpened);

    /// <summary>Segments opened that had been written before and freed.</summary>
    public long ReusedOpened => Interlocked.Read(ref _reusedOpened);

    /// <summary>True when <paramref name="location"/> is a block inside some device's segments (checked before trusting on-device metadata).</summary>
    public bool IsDataLocation(long location)
    {
        long firstBlock = GftlLayout.DataStart / GftlLayout.BlockSize;
        long block = GftlLayout.DeviceBlockOf(location);
        return location >= 0 && GftlLayout.DeviceOf(location) < Segments.Length / SegmentsPerDevice &&
               block >= firstBlock && block - firstBlock < (long)SegmentsPerDevice * BlocksPerSegment;
    }

    public Segment SegmentOf(long location) =>
        Segments[(GftlLayout.DeviceOf(location) * SegmentsPerDevice) +
                 (int)((GftlLayout.DeviceBlockOf(location) - (GftlLayout.DataStart / GftlLayout.BlockSize)) / BlocksPerSegment)];

    /// <summary>
    /// After recovery: segments nothing refers to are free, the rest closed (partly filled ones are not reopened). A
    /// device's high-water mark is one past its highest closed segment: a free segment above it counts as never
    /// written (one written and freed before the restart is taken for fresh, which only costs it its preference).
    /// </summary>
    public void Rebuild()
    {
        lock (_gate)
        {
            _freeCount = 0;
            Array.Clear(_highWater);
            foreach (Stack<Segment> stack in _free)
            {
                stack.Clear();
            }

            // Pushed in reverse so each device hands out its lowest segments first.
            for (int i = Segments.Length - 1; i >= 0; i--)
            {
                Segment segment = Segments[i];
                bool free = segment.Live == 0 && segment.TrimRecords == 0;
                segment.State = free ? SegmentState.Free : SegmentState.Closed;
                segment.Cursor = free ? 0 : segment.Blocks;
                if (free)
                {
                    _free[segment.Device].Push(segment);
                    _freeCount++;
                }
                else
                {
                    _highWater[segment.Device] = Math.Max(_highWater[segment.Device], IndexOnDevice(segment) + 1);
                }
            }
        }
    }

    /// <summary>An open, empty segment, or null when none is left (for user writes: none beyond the reserve).</summary>
    public Segment? TryOpen(bool forCollector)
    {
        lock (_gate)
        {
            if (_freeCount <= (forCollector ? 0 : Reserve))
            {
                return null;
            }

            for (int tried = 0; tried < _free.Length; tried++)
            {
                Stack<Segment> stack = _free[_nextDevice];
                _nextDevice = (_nextDevice + 1) % _free.Length;
                if (stack.TryPop(out Segment? segment))
                {
                    CountOpen(segment);
                    _freeCount--;
                    segment.State = SegmentState.Open;
                    segment.Cursor = 0;
                    segment.Stamp = _nextSeq();
                    return segment;
                }
            }

            return null;
        }
    }

    /// <summary>Under the lock: a segment being opened; one at the high-water mark raises it.</summary>
    private void CountOpen(Segment segment)
    {
        if (IndexOnDevice(segment) >= _highWater[segment.Device])
        {
            _highWater[segment.Device] = IndexOnDevice(segment) + 1;
            _freshOpened++;
        }
        else
        {
            _reusedOpened++;
        }
    }

    private int IndexOnDevice(Segment segment) => segment.Id - (segment.Device * SegmentsPerDevice);

    public void Close(Segment segment)
    {
        lock (_gate)
        {
            segment.State = SegmentState.Closed;
        }
    }

    /// <summary>Returns a segment whose contents are no longer needed.</summary>
    public void Release(Segment segment)
    {
        lock (_gate)
        {
            segment.State = SegmentState.Free;
            segment.Cursor = 0;
            segment.TrimRecords = 0;
            _free[segment.Device].Push(segment);
            _freeCount++;
        }
    }
}
