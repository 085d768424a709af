using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Duroslight.Storage.Devices;
using Duroslight.Storage.Volumes;

namespace Duroslight.Storage.Gftl;

/// <summary>
/// Reclaims segments: picks the closed segment with the fewest live blocks, copies what is still referenced (and
/// the trims still needed) into its own open segment as new records that keep the original sequence numbers,
/// repoints the maps, makes the copies durable, waits until no read can still be using the old locations, and
/// frees the segment. Runs when free segments run low (background) or a write finds none (a partition asks for
/// room), in slices of one victim segment on the shard of the partition that asked (its <see cref="Partition.Poster"/>),
/// re-posting itself between slices so the shard's host I/O runs in between; without a reactor the same slices run on
/// the thread pool. One collection at a time: a caller that finds it busy never waits on a lock.
/// </summary>
internal sealed class GarbageCollector : IAsyncDisposable
{
    private const int MaxBatchBlocks = 256;
    private const int MaxTrimChunksChecked = 4096;
    private const int ForegroundBatch = 4;

    /// <summary>
    /// Dead segments that make it worth a sync to free them early (<see cref="ReuseWanted"/>): 1/8 of the segments, at
    /// least 8, at most 1 GiB of them. A sync makes the device write back everything written since the last one: on this
    /// machine's virtual disk fio's 128 KiB writes at QD 8 ran at 0.3-0.5x with an fdatasync every 28 MiB, and like no
    /// sync at all with one per GiB (bench/README.md), so the batch is sized by the device, not by a count of segments.
    /// </summary>
    private readonly int _reuseBatch;

    /// <summary>
    /// The batch under way may copy live data (a low-water or room batch), not only free dead segments (a reuse
    /// batch): only such a batch freeing nothing means a waiting partition gets no room (OutOfSpace).
    /// </summary>
    private bool _batchMayCopy;

    private readonly GftlLog _core;
    private readonly NativeBuffer _victim;
    private readonly NativeBuffer _output = new(RecordFormat.HeaderSize + (MaxBatchBlocks * GftlLayout.BlockSize));
    private readonly List<Partition> _waiters = [];
    private readonly Action _slice;
    private readonly Action _sliceDone;
    private ValueTask<bool> _sliceInFlight;
    private readonly int[] _epochs;
    private int _nudged;
    private int _running;
    private bool _background;
    private volatile bool _stopping;
    private volatile bool _stopped;
    private bool _draining;
    private bool _durable;
    private IWorkPoster? _poster;
    private readonly List<Move> _moves = [];
    private readonly List<Extent> _extents = [];
    private readonly ParsedSegment _records = new();
    private readonly List<Segment> _emptied = [];
    private Segment? _open;
    private Segment? _lastWritten;
    private long _lastLocation;
    private long _relocatedBlocks;
    private long _recordBlocks;
    private long _segmentsCleaned;
    private long _slices;
    private long _slicesOffShard;

    public GarbageCollector(GftlLog core)
    {
        _core = core;
        _victim = new NativeBuffer(core.Devices.SegmentBytes);
        _epochs = new int[core.Partitions.Length];
        _slice = RunSlice;
        _sliceDone = SliceDone;
        LowWater = LowWaterFor(core.Allocator, core.Partitions.Length);
        _reuseBatch = ReuseBatchFor(core.Allocator);
    }

    public long RelocatedBlocks => Interlocked.Read(ref _relocatedBlocks);
    public long RecordBlocks => Interlocked.Read(ref _recordBlocks);
    public long SegmentsCleaned => Interlocked.Read(ref _segmentsCleaned);

    /// <summary>Slices run so far (two or more per batch: empty the victim, then free it once readers are gone).</summary>
    public long Slices => Interlocked.Read(ref _slices);

    /// <summary>Slices that ran on a thread without a shard's I/O (the thread-pool path; 0 on a reactor).</summary>
    public long SlicesOffShard => Interlocked.Read(ref _slicesOffShard);

    /// <summary>
    /// Free segments below this start background cleaning: the reserve plus 4 MiB per partition (room for the
    /// writes that arrive while a pass runs), at most 1/8 of the segments. Free segments hold no data, so every
    /// one kept free raises the utilization of the rest and with it the copies per host write.
    /// </summary>
    public int LowWater { get; }

    private static int LowWaterFor(SegmentAllocator allocator, int partitions)
    {
        int headroom = partitions * SegmentsPerDefaultSegment(allocator);
        return allocator.Reserve + Math.Max(1, Math.Min(headroom, (allocator.Segments.Length / 8) - allocator.Reserve));
    }

    private static int ReuseBatchFor(SegmentAllocator allocator)
    {
        long segmentBytes = (long)allocator.BlocksPerSegment * GftlLayout.BlockSize;
        return (int)Math.Clamp(allocator.Segments.Length / 8, 8, Math.Max(8, (1L << 30) / segmentBytes));
    }

    /// <summary>Turns on background cleaning: from now on <see cref="Nudge"/> starts slices when free segments run low.</summary>
    public void Start() => Volatile.Write(ref _background, true);

    private static int SegmentsPerDefaultSegment(SegmentAllocator allocator) =>
        Math.Max(1, GftlLayout.DefaultSegmentBytes / (allocator.BlocksPerSegment * GftlLayout.BlockSize));

    /// <summary>
    /// A user segment was opened by <paramref name="partition"/> (on its shard): starts slices there if free segments
    /// are now below <see cref="LowWater"/> (or <see cref="ReuseWanted"/>). Once per segment at most, never per I/O.
    /// </summary>
    public void Nudge(Partition partition)
    {
        if (Volatile.Read(ref _background) && !_stopping && (_core.Allocator.FreeCount < LowWater || ReuseWanted()) &&
            Interlocked.Exchange(ref _nudged, 1) == 0)
        {
            Kick(partition);
        }
    }

    /// <summary>
    /// Foreground: <paramref name="partition"/> found no free segment. The collector cleans until a user write can open
    /// one, then calls <see cref="Partition.RoomMade"/> on the partition's shard (false when nothing can be reclaimed).
    /// </summary>
    public void RequestRoom(Partition partition)
    {
        lock (_waiters)
        {
            _waiters.Add(partition);
        }

        Kick(partition);
        if (_stopped)
        {
            AnswerAll(false); // the store is stopping: no collection will answer
        }
    }

    /// <summary>
    /// Cleans up to <paramref name="maxSegments"/> segments (or fewer if nothing is worth it, or once
    /// <paramref name="untilFree"/> segments are free); returns how many it freed. Control path and tests, off the
    /// reactor: waits by polling for a running collection to finish its slices, and for readers.
    /// </summary>
    public async Task<int> CollectAsync(int maxSegments, int untilFree = int.MaxValue)
    {
        while (Interlocked.CompareExchange(ref _running, 1, 0) != 0)
        {
            await Task.Delay(1).ConfigureAwait(false);
        }

        try
        {
            int freed = 0;
            while (freed < maxSegments && _core.Allocator.FreeCount < untilFree)
            {
                int want = Math.Min(maxSegments - freed, (int)Math.Min(ForegroundBatch, (long)untilFree - _core.Allocator.FreeCount));
                await BeginBatchAsync(want).ConfigureAwait(false);
                while (!ReadersDrained())
                {
                    await Task.Delay(1).ConfigureAwait(false);
                }

                int batch = await FinishBatchAsync().ConfigureAwait(false);
                if (batch == 0)
                {
                    break;
                }

                freed += batch;
            }

            return freed;
        }
        finally
        {
            GoIdle();
        }
    }

    /// <summary>
    /// Stops collecting: a running collection ends after its current slice (it finishes a batch it began). Call while
    /// the shards still run: a slice posted to a stopped shard never runs, so the wait is bounded. Idempotent.
    /// </summary>
    public async ValueTask StopAsync()
    {
        if (_stopping)
        {
            return;
        }

        _stopping = true;
        long deadline = Environment.TickCount64 + 30_000;
        while (!_stopped && Environment.TickCount64 < deadline)
        {
            _stopped = Interlocked.CompareExchange(ref _running, 1, 0) == 0;
            if (!_stopped)
            {
                await Task.Delay(1).ConfigureAwait(false);
            }
        }

        if (_stopped)
        {
            AnswerAll(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        if (!_stopped)
        {
            return; // a slice still holds the buffers (its shard stopped under it): leak them rather than free them under it
        }

        if (_open is not null)
        {
            _core.Allocator.Close(_open);
        }

        _victim.Free();
        _output.Free();
    }

    /// <summary>Starts slices on <paramref name="from"/>'s shard unless a collection is already running (it sees the new demand).</summary>
    private void Kick(Partition? from)
    {
        if (Interlocked.CompareExchange(ref _running, 1, 0) != 0)
        {
            return;
        }

        _poster = from?.Poster ?? AnyPoster();
        Post();
    }

    private IWorkPoster? AnyPoster()
    {
        foreach (Partition partition in _core.Partitions)
        {
            if (partition.Poster is { } poster)
            {
                return poster;
            }
        }

        return null;
    }

    private void Post()
    {
        if (_poster is { } poster)
        {
            poster.Post(_slice);
        }
        else
        {
            ThreadPool.UnsafeQueueUserWorkItem(static slice => slice(), _slice, preferLocal: false);
        }
    }

    /// <summary>
    /// Runs one slice; when its device I/O leaves it pending, <see cref="SliceDone"/> takes it up where the I/O
    /// completes. The slice's state is pooled and goes back once its result is read, so slices allocate nothing.
    /// </summary>
    private void RunSlice()
    {
        ValueTask<bool> slice = SliceAsync();
        if (slice.IsCompleted)
        {
            AfterSlice(slice.GetAwaiter().GetResult());
            return;
        }

        _sliceInFlight = slice;
        slice.ConfigureAwait(false).GetAwaiter().UnsafeOnCompleted(_sliceDone);
    }

    private void SliceDone()
    {
        ValueTask<bool> slice = _sliceInFlight;
        _sliceInFlight = default;
        AfterSlice(slice.GetAwaiter().GetResult());
    }

    /// <summary>The next slice is posted only once this one is over, so at most one is ever in flight.</summary>
    private void AfterSlice(bool again)
    {
        if (again)
        {
            Post();
        }
        else
        {
            GoIdle();
        }
    }

    /// <summary>
    /// One slice: either empties one victim (copies, repoints, syncs, flips the read epochs), or, once the readers of
    /// the old locations are gone, frees it; returns whether there is demand for another. Every await inside is device
    /// I/O through the running thread's <see cref="BlockIo.Current"/>, which on a shard completes on the shard.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> SliceAsync()
    {
        Interlocked.Increment(ref _slices);
        if (BlockIo.IsFallback)
        {
            Interlocked.Increment(ref _slicesOffShard);
        }
        try
        {
            if (_draining)
            {
                if (!ReadersDrained())
                {
                    return true;
                }

                int freed = await FinishBatchAsync().ConfigureAwait(false);
                AnswerWaiters(freed);
                // A batch of dead segments only that freed none says nothing about room: a copying batch follows if wanted.
                return (freed > 0 || (!_batchMayCopy && CopyingWanted())) && Wanted();
            }

            if (Wanted())
            {
                AnswerWaiters(-1);
                await BeginBatchAsync(CopyingWanted() ? 1 : 0).ConfigureAwait(false);
                return true;
            }
        }
        catch (Exception)
        {
            _draining = false;
            AnswerAll(false);
        }

        return false;
    }

    /// <summary>
    /// Background (until stopping): below the low-water mark, or enough dead segments to free (<see cref="ReuseWanted"/>); foreground (until stopped): a partition waits for room.
    /// </summary>
    private bool Wanted() => CopyingWanted() || (Volatile.Read(ref _background) && !_stopping && ReuseWanted());

    /// <summary>Cleaning that may copy live data: below the low-water mark (background), or a partition waits for room.</summary>
    private bool CopyingWanted()
    {
        if (Volatile.Read(ref _background) && !_stopping && _core.Allocator.FreeCount < LowWater)
        {
            return true;
        }

        lock (_waiters)
        {
            return _waiters.Count > 0;
        }
    }

    /// <summary>
    /// <see cref="_reuseBatch"/> dead segments (nothing to copy: freed for one sync, no read) wait: free them now rather
    /// than at the low-water mark. While some segment was never written, the log, which takes freed segments first
    /// (<see cref="SegmentAllocator"/>), then overwrites written blocks instead of filling never-written ones (on a
    /// file-backed device each first write into a block costs the filesystem an allocation, and a thin device
    /// grows); once all were written, a sequential writer finds freed segments long before the low-water mark, where
    /// it would wait for a batch's sync. Checked once per segment opened and once per slice, never per I/O.
    /// </summary>
    private bool ReuseWanted()
    {
        int dead = 0;
        foreach (Segment segment in _core.Allocator.Segments)
        {
            dead += IsIdleDead(segment) ? 1 : 0;
            if (dead == _reuseBatch)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Answers the waiting partitions once a user write can open a segment, or when a batch freed nothing (<paramref name="freed"/> 0).</summary>
    private void AnswerWaiters(int freed)
    {
        if (_core.Allocator.FreeCount > _core.Allocator.Reserve)
        {
            AnswerAll(true);
        }
        else if (freed == 0 && _batchMayCopy)
        {
            AnswerAll(false);
        }
    }

    private void AnswerAll(bool room)
    {
        Partition[] waiting;
        lock (_waiters)
        {
            if (_waiters.Count == 0)
            {
                return;
            }

            waiting = [.. _waiters];
            _waiters.Clear();
        }

        foreach (Partition partition in waiting)
        {
            if (partition.Poster is { } poster)
            {
                poster.Post(room ? partition.RoomMadeAction : partition.NoRoomAction);
            }
            else
            {
                partition.RoomMade(room);
            }
        }
    }

    /// <summary>Ends a collection; picks up a room request that arrived while it was ending. The next segment opened below the low-water mark nudges again.</summary>
    private void GoIdle()
    {
        Volatile.Write(ref _nudged, 0);
        Volatile.Write(ref _running, 0);
        bool waiting;
        lock (_waiters)
        {
            waiting = _waiters.Count > 0;
        }

        if (waiting)
        {
            Kick(null);
        }
    }

    /// <summary>
    /// Empties every dead victim (freed without a device read: the more one sync frees, the fewer syncs per byte
    /// written) and up to <paramref name="max"/> victims that need copying, and makes the copies durable (the copies, and
    /// every write that outranks what the victims held, must be on the device before the victims are reused), then flips
    /// every partition's read epoch: the victims are freed by <see cref="FinishBatchAsync"/> once <see cref="ReadersDrained"/>.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask BeginBatchAsync(int max)
    {
        _batchMayCopy = max > 0;
        _emptied.Clear();
        foreach (Segment segment in _core.Allocator.Segments)
        {
            if (IsIdleDead(segment))
            {
                segment.State = SegmentState.Cleaning;
                _emptied.Add(segment);
            }
        }

        for (int copying = 0; copying < max && PickVictim() is { } victim; copying++)
        {
            victim.State = SegmentState.Cleaning;
            _emptied.Add(victim);
            if (!await RelocateAsync(victim).ConfigureAwait(false))
            {
                break;
            }
        }

        _durable = _emptied.Count > 0 && await _core.FlushAsync().ConfigureAwait(false) == StorageResult.Ok;
        for (int i = 0; i < _epochs.Length; i++)
        {
            _epochs[i] = _core.Partitions[i].FlipReadEpoch();
        }

        _draining = true;
    }

    /// <summary>
    /// Nothing of the victim is referenced and it holds no trim, so reading it would find nothing to copy (the same rule
    /// that makes a segment free at start, <see cref="SegmentAllocator.Rebuild"/>). A closed, idle segment gains no
    /// references, so this cannot change before it is freed.
    /// </summary>
    private static bool IsDead(Segment victim) => Volatile.Read(ref victim.Live) == 0 && Volatile.Read(ref victim.TrimRecords) == 0;

    private static bool IsIdle(Segment segment) => segment.State == SegmentState.Closed && Volatile.Read(ref segment.Pending) == 0;

    private static bool IsIdleDead(Segment segment) => IsIdle(segment) && IsDead(segment);

    /// <summary>No read that started before the batch's epoch flip is still using the victims' old locations.</summary>
    private bool ReadersDrained()
    {
        for (int i = 0; i < _epochs.Length; i++)
        {
            if (!_core.Partitions[i].ReadersDrained(_epochs[i]))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Frees the batch's victims that are durable and empty (the rest close again); returns how many it freed.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<int> FinishBatchAsync()
    {
        _draining = false;
        int freed = 0;
        foreach (Segment victim in _emptied)
        {
            if (_durable && Volatile.Read(ref victim.Live) == 0 && await EraseAsync(victim).ConfigureAwait(false))
            {
                _core.Allocator.Release(victim);
                freed++;
            }
            else
            {
                _core.Allocator.Close(victim);
            }
        }

        _emptied.Clear();
        Interlocked.Add(ref _segmentsCleaned, freed);
        return freed;
    }

    /// <summary>
    /// Marks the freed segment's old records dead for a later scan (a newer stamp at its start). Not synced: should
    /// the marker be lost, a scan finds only dead records, which newer records or trims outrank.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> EraseAsync(Segment victim)
    {
        RecordFormat.WriteHeader(_output.GetSpan(), RecordKind.Erased, _core.NextSeq(), [], [], _core.Devices.LogKey);
        int written = await BlockIo.Current.WriteAsync(_core.Devices.Devices[victim.Device].Handle, _output.Memory[..RecordFormat.HeaderSize], GftlLayout.ByteOffsetOf(victim.LocationAt(0))).ConfigureAwait(false);
        return written == RecordFormat.HeaderSize;
    }

    /// <summary>
    /// Greedy: the closed, idle segment with the fewest live blocks, if copying them out frees at least 1/16 of a
    /// segment (packing many small records into few headers counts as a gain), so every cleaning makes progress.
    /// </summary>
    private Segment? PickVictim()
    {
        Segment? best = null;
        foreach (Segment segment in _core.Allocator.Segments)
        {
            if (IsIdle(segment) && (best is null || segment.Live < best.Live))
            {
                best = segment;
            }
        }

        int copyCost = best is null ? 0 : best.Live + (best.Live / MaxBatchBlocks) + 1;
        return best is not null && best.Blocks - copyCost >= best.Blocks / 16 ? best : null;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> RelocateAsync(Segment victim)
    {
        int read = await BlockIo.Current.ReadAsync(_core.Devices.Devices[victim.Device].Handle, _victim.Memory, GftlLayout.ByteOffsetOf(victim.LocationAt(0))).ConfigureAwait(false);
        if (read != _victim.Length)
        {
            return false;
        }

        RecordParser.Parse(_victim.GetSpan(), _core.Devices.LogKey, _records, out int unknownVersion);
        if (unknownVersion != 0)
        {
            // Records this build cannot read (the scan refuses them; a checkpoint start does not look): keep the segment.
            return false;
        }

        FindLiveData(victim);
        for (int next = 0; next < _moves.Count;)
        {
            if (!EnsureRoom(2))
            {
                return false;
            }

            int taken = FillDataBatch(next, Math.Min(MaxBatchBlocks, _open!.Blocks - _open.Cursor - 1));
            if (!await WriteBatchAsync(RecordKind.Data, taken).ConfigureAwait(false))
            {
                return false;
            }

            RepointBatch(victim, next, taken);
            next += taken;
        }

        return await RelocateTrimsAsync().ConfigureAwait(false);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> RelocateTrimsAsync()
    {
        _extents.Clear();
        foreach (ParsedRecord record in _records.Records)
        {
            if (record.Kind != RecordKind.Trim)
            {
                continue;
            }

            for (int i = 0; i < record.ExtentCount; i++)
            {
                Extent extent = _records.ExtentsOf(record)[i].Extent; // a span cannot live across the await below
                if (!TrimIsLive(extent))
                {
                    continue;
                }

                _extents.Add(extent);
                if (_extents.Count == RecordFormat.MaxExtents && !await WriteTrimBatchAsync().ConfigureAwait(false))
                {
                    return false;
                }
            }
        }

        return _extents.Count == 0 || await WriteTrimBatchAsync().ConfigureAwait(false);
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> WriteTrimBatchAsync()
    {
        if (!EnsureRoom(1))
        {
            return false;
        }

        RecordFormat.WriteHeader(_output.GetSpan(), RecordKind.Trim, _open!.Stamp, CollectionsMarshal.AsSpan(_extents), [], _core.Devices.LogKey);
        _extents.Clear();
        return await WriteBatchAsync(RecordKind.Trim, 0).ConfigureAwait(false);
    }

    /// <summary>Every block of the victim's data records that some map still points at.</summary>
    private void FindLiveData(Segment victim)
    {
        _moves.Clear();
        foreach (ParsedRecord record in _records.Records)
        {
            if (record.Kind != RecordKind.Data)
            {
                continue;
            }

            foreach ((Extent extent, int first) in _records.ExtentsOf(record))
            {
                for (int i = 0, block = first; i < extent.Count; i++, block++)
                {
                    long location = victim.LocationAt(block);
                    if (_core.Find(extent.Volume) is { } volume && extent.Seq >= volume.Entry.CreatedSeq &&
                        IsReferenced(volume, extent.Lba + i, extent.Seq, location))
                    {
                        _moves.Add(new Move(extent.Volume, extent.Lba + i, extent.Seq, location, block));
                    }
                }
            }
        }
    }

    /// <summary>Copies up to <paramref name="max"/> moves from <paramref name="first"/> into the output buffer as one record; returns how many it took.</summary>
    private int FillDataBatch(int first, int max)
    {
        Span<byte> output = _output.GetSpan();
        ReadOnlySpan<byte> source = _victim.GetSpan();
        _extents.Clear();
        int taken = 0;
        while (first + taken < _moves.Count && taken < max)
        {
            Move move = _moves[first + taken];
            bool extends = _extents.Count > 0 && _extents[^1] is var last &&
                last.Volume == move.Volume && last.Seq == move.Seq && last.Lba + last.Count == move.Lba;
            if (!extends && _extents.Count == RecordFormat.MaxExtents)
            {
                break;
            }

            _extents.Add(extends ? _extents[^1] with { Count = _extents[^1].Count + 1 } : new Extent(move.Volume, move.Lba, 1, move.Seq));
            if (extends)
            {
                _extents.RemoveAt(_extents.Count - 2);
            }

            source.Slice(move.SourceBlock * GftlLayout.BlockSize, GftlLayout.BlockSize)
                .CopyTo(output[(RecordFormat.HeaderSize + (taken * GftlLayout.BlockSize))..]);
            taken++;
        }

        RecordFormat.WriteHeader(output, RecordKind.Data, _open!.Stamp, CollectionsMarshal.AsSpan(_extents), output.Slice(RecordFormat.HeaderSize, taken * GftlLayout.BlockSize), _core.Devices.LogKey);
        return taken;
    }

    /// <summary>Appends the output buffer (header + <paramref name="dataBlocks"/>) to the collector's segment.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> WriteBatchAsync(RecordKind kind, int dataBlocks)
    {
        int blocks = 1 + dataBlocks;
        if (!EnsureRoom(blocks) || !_open!.TryTake(blocks, out long location))
        {
            return false;
        }

        Segment segment = _open;
        if (kind == RecordKind.Trim)
        {
            Interlocked.Increment(ref segment.TrimRecords);
        }

        int length = blocks * GftlLayout.BlockSize;
        int written = await BlockIo.Current.WriteAsync(_core.Devices.Devices[segment.Device].Handle, _output.Memory[..length], GftlLayout.ByteOffsetOf(location)).ConfigureAwait(false);
        Interlocked.Decrement(ref segment.Pending);
        Interlocked.Add(ref _recordBlocks, blocks);
        _lastWritten = segment;
        _lastLocation = location;
        return written == length;
    }

    /// <summary>Makes sure the collector's open segment has <paramref name="blocks"/> free, opening a new one if not.</summary>
    private bool EnsureRoom(int blocks)
    {
        if (_open is not null && _open.Blocks - _open.Cursor >= blocks)
        {
            return true;
        }

        if (_open is not null)
        {
            _core.Allocator.Close(_open);
        }

        _open = _core.Allocator.TryOpen(forCollector: true);
        return _open is not null;
    }

    /// <summary>Points every map entry that still refers to a moved block at its copy.</summary>
    private void RepointBatch(Segment victim, int first, int count)
    {
        for (int i = 0; i < count; i++)
        {
            Move move = _moves[first + i];
            long to = _lastLocation + 1 + i;
            if (_core.Find(move.Volume) is not { } volume)
            {
                continue;
            }

            int moved = Repoint(volume, move.Lba, move.Seq, move.From, to);
            Interlocked.Add(ref victim.Live, -moved);
            Interlocked.Add(ref _lastWritten!.Live, moved);
        }

        Interlocked.Add(ref _relocatedBlocks, count);
    }

    /// <summary>The volume itself and the snapshots/clones taken after the write (which inherited the block).</summary>
    private bool IsReferenced(GftlVolume volume, long lba, long seq, long location)
    {
        if (_core.PartitionFor(volume.PlacementId, lba / GftlLayout.BlocksPerChunk).References(volume, lba, location))
        {
            return true;
        }

        foreach (GftlVolume child in volume.Children)
        {
            if (child.Entry.BaseSeq > seq && IsReferenced(child, lba, seq, location))
            {
                return true;
            }
        }

        return false;
    }

    private int Repoint(GftlVolume volume, long lba, long seq, long from, long to)
    {
        int moved = _core.PartitionFor(volume.PlacementId, lba / GftlLayout.BlocksPerChunk).Relocate(volume, lba, from, to) ? 1 : 0;
        foreach (GftlVolume child in volume.Children)
        {
            if (child.Entry.BaseSeq > seq)
            {
                moved += Repoint(child, lba, seq, from, to);
            }
        }

        return moved;
    }

    /// <summary>
    /// A trim must outlive every older record of its blocks that could still be on disk. It is kept while any of its
    /// blocks is still unmapped in the volume (a later write would shadow the older records itself) or a snapshot or
    /// clone taken after it reads through it. Very wide trims are kept without checking.
    /// </summary>
    private bool TrimIsLive(Extent trim)
    {
        if (_core.Find(trim.Volume) is not { } volume || trim.Seq < volume.Entry.CreatedSeq)
        {
            return false;
        }

        foreach (GftlVolume child in volume.Children)
        {
            if (child.Entry.BaseSeq > trim.Seq)
            {
                return true;
            }
        }

        if (volume.Entry.Hidden || volume.IsClosed)
        {
            return false;
        }

        Chunking.ChunkSpans pieces = Chunking.ChunkMap.SplitBlocks(trim.Lba, trim.Count, GftlLayout.BlockShift);
        if (pieces.Count > MaxTrimChunksChecked)
        {
            return true;
        }

        foreach (Chunking.ChunkSpan piece in pieces)
        {
            if (_core.PartitionFor(volume.PlacementId, piece.ChunkIndex).HasUnmapped(volume, piece.Offset, piece.Length))
            {
                return true;
            }
        }

        return false;
    }

    private readonly record struct Move(Guid Volume, long Lba, long Seq, long From, int SourceBlock);
}
