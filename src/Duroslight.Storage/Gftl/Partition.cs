using System.Diagnostics;
using Duroslight.Storage.Devices;
using Duroslight.Storage.Volumes;

namespace Duroslight.Storage.Gftl;

/// <summary>
/// What one reactor shard owns: the map entries of the chunks it owns (in every volume), its open segment, its I/O
/// buffers, its queue of writes and its records being written (group commit). Guarded by its own lock, uncontended
/// in production where only the shard's thread comes here; other callers (tests, control plane, the collector) take
/// it briefly.
/// </summary>
internal sealed class Partition(GftlLog core, int index) : IDisposable
{
    /// <summary>One chunk of data (read bounce buffers).</summary>
    public const int BufferBytes = Chunking.ChunkMap.ChunkSize;

    /// <summary>
    /// Records of this partition that go out without waiting for company: one, so a lone write never waits, while
    /// writes that arrive behind it pack under one header (a second eager slot halved the writes per record of 4 KiB
    /// random writes, and every record costs a 4 KiB header). Beyond it, a record goes out only once it carries
    /// <see cref="GroupBlocks"/> (small writes keep packing under one header) and up to <see cref="MaxWritesInFlight"/>.
    /// On the reactor every record forms at the end of the loop iteration, so the eager one carries all the writes
    /// the iteration received (<see cref="FormBatches"/>).
    /// </summary>
    public const int EagerWrites = 1;

    /// <summary>
    /// Records of this partition being written at once at most. The disk needs several large writes outstanding to
    /// reach its bandwidth (512 KiB writes: about 2.4x more at 4 in flight than at 2), which two slots never gave
    /// 128 KiB writes at QD 8.
    /// </summary>
    public const int MaxWritesInFlight = 8;

    /// <summary>
    /// Data (blocks; trims count one per extent) that lets a record go out beyond <see cref="EagerWrites"/>: 64 KiB,
    /// so its 4 KiB header costs at most 1/16 of what it carries.
    /// </summary>
    public const int GroupBlocks = 16;

    /// <summary>Data of one group-committed record at most (512 KiB: large device writes, bounded latency).</summary>
    public const int BatchDataBlocks = 128;

    private readonly object _gate = new();
    private readonly Stack<NativeBuffer> _buffers = new();
    private readonly Stack<PendingRecord> _spare = new();
    private readonly Stack<RecordBatch> _batches = new();

    // What Map changed in the segments' live counts, applied once per batch (SettleLiveCounts): blocks mapped into
    // the batch's segment, and the locations they replaced.
    private readonly List<long> _unreferenced = [];
    private int _referenced;
    private readonly Stack<ChunkRead> _reads = new();

    /// <summary>The re-packs of fragmented chunks in flight or waiting, and the slots' own reads to start outside the lock.</summary>
    private readonly Repacker _repacker = new(index);
    private readonly Stack<ChunkRead> _repackReads = new(Repacker.MaxInFlight);
    private long _repackedBlocks;
    private long _deviceReads;

    /// <summary>O_DIRECT devices need aligned buffers: reads into anything else go through a bounce buffer.</summary>
    private readonly bool _bounceReads = Array.Exists(core.Devices.Devices, static d => d.IsDirect);
    private readonly List<PendingRecord> _inflight = [];
    private readonly List<PendingRecord> _queue = [];
    private readonly long[] _readers = new long[2];
    private Segment? _open;
    private int _writing;
    private bool _awaitingRoom;
    private IWorkPoster? _poster;
    private Action? _formQueued;
    private bool _formScheduled;
    private int _queueCounted;
    private Action? _roomMade;
    private Action? _noRoom;
    private int _readEpoch;
    private long _userBlocks;
    private long _recordBlocks;
    private long _records;

    /// <summary>Where host writes wait on their way to the device (<see cref="WriteStats"/>).</summary>
    private long _hostWrites, _writesQueued, _queueTicks, _depthSum, _roomWaits;

    public int Index { get; } = index;
    public object Gate => _gate;

    /// <summary>Writes and trims queued or being written; read under <see cref="Gate"/> (snapshots wait for 0).</summary>
    public int InflightCount => _inflight.Count;

    public long UserBlocks => Volatile.Read(ref _userBlocks);

    /// <summary>Blocks this partition wrote (headers included).</summary>
    public long RecordBlocks => Volatile.Read(ref _recordBlocks);

    /// <summary>Records this partition wrote (each one header).</summary>
    public long Records => Volatile.Read(ref _records);

    /// <summary>Counters of the write path: how long host writes wait for a record, how deep records go out.</summary>
    public GftlWriteStats WriteStats
    {
        get
        {
            lock (_gate)
            {
                return new(_hostWrites, _writesQueued, _queueTicks, _records, _depthSum, _roomWaits);
            }
        }
    }

    /// <summary>Device reads issued by chunk reads (host reads and re-packs' own): one per mapped run.</summary>
    public long DeviceReads => Volatile.Read(ref _deviceReads);

    /// <summary>Blocks rewritten contiguously because reads found them fragmented.</summary>
    public long RepackedBlocks => Volatile.Read(ref _repackedBlocks);

    /// <summary>A read that finds at least this many separate device runs re-packs what it read.</summary>
    public const int RepackMinRuns = 4;

    /// <summary>Re-pack requests dropped because every slot was busy and the queue full.</summary>
    public long RepacksDropped
    {
        get
        {
            lock (_gate)
            {
                return _repacker.Dropped;
            }
        }
    }

    /// <summary>Chunks queued for a re-pack or being re-packed.</summary>
    public int RepacksBusy
    {
        get
        {
            lock (_gate)
            {
                return _repacker.Busy;
            }
        }
    }

    /// <summary>
    /// Logs a host write of one chunk's blocks. It goes out at once (on the reactor: with the rest of its loop
    /// iteration's writes, in one record) when fewer than <see cref="EagerWrites"/> records of this partition are
    /// being written (a lone write never waits for company); otherwise it waits in the queue and goes out with
    /// everything that queued behind the in-flight writes, packed into one record (group commit), as soon as a slot
    /// frees or the queue holds <see cref="GroupBlocks"/> (a slot of the <see cref="MaxWritesInFlight"/> is free).
    /// Completes when its record is on the device, then it is mapped.
    /// </summary>
    public ValueTask<StorageResult> WriteAsync(GftlVolume volume, long lba, ReadOnlyMemory<byte> source) =>
        Submit(volume, lba, source.Length >> GftlLayout.BlockShift, 0, source);

    /// <summary>Logs a trim (already applied to the maps) as sequence number <paramref name="seq"/>; trims are group-committed with each other.</summary>
    public ValueTask<StorageResult> LogTrimAsync(GftlVolume volume, long lba, int count, long seq) =>
        Submit(volume, lba, count, seq, default);

    /// <summary>Back to the pool once the caller took its result.</summary>
    public void Recycle(PendingRecord record)
    {
        lock (_gate)
        {
            _spare.Push(record);
        }
    }

    /// <summary>
    /// A record's device write is over: maps its extents (unless a newer write or a trim got there first), starts
    /// the next batch from the queue, then completes the host writes it carried.
    /// </summary>
    public void Written(RecordBatch batch, StorageResult result)
    {
        bool ok = result == StorageResult.Ok;
        lock (_gate)
        {
            foreach (PendingRecord record in batch.Records)
            {
                _inflight.Remove(record);
                if (record.Relocation)
                {
                    _repackedBlocks += ok && !record.Volume.IsClosed ? Relocate(record, batch.Segment) : 0;
                    RelocationDone(record.Repack!);
                    continue;
                }

                if (ok && !record.IsTrim)
                {
                    if (!record.Volume.IsClosed)
                    {
                        Map(record.Volume.Maps[Index], record.Chunk!, record);
                    }

                    MapIntoLaterSnapshots(record.Volume, record);
                }

                _userBlocks += record.IsTrim ? 0 : record.Count;
                _hostWrites += record.IsTrim ? 0 : 1;
            }

            SettleLiveCounts(batch.Segment);
            _recordBlocks += 1 + batch.DataBlocks;
            _records++;
            Interlocked.Decrement(ref batch.Segment.Pending);
            _writing--;
        }

        FormBatches();
        StartRepackReads();
        foreach (PendingRecord record in batch.Records)
        {
            Finish(record, result);
        }

        batch.Records.Clear();
        lock (_gate)
        {
            _batches.Push(batch);
        }
    }

    private ValueTask<StorageResult> Submit(GftlVolume volume, long lba, int count, long trimSeq, ReadOnlyMemory<byte> source)
    {
        PendingRecord record;
        lock (_gate)
        {
            if (volume.IsClosed)
            {
                return new(StorageResult.MediaError);
            }

            bool trim = trimSeq != 0;
            record = Enqueue(volume, trim ? null : volume.Maps[Index].GetOrAdd(lba / GftlLayout.BlocksPerChunk), lba, count,
                trim ? trimSeq : core.NextSeq(), source, relocation: false);
            record.ContinueOnThreadPool(BlockIo.IsFallback);
        }

        short token = record.Token;
        FormBatches();
        return record.AsValueTask(token);
    }

    /// <summary>
    /// Outside the lock, after the queue or the slots changed: on the partition's shard, batches form once at the end
    /// of the reactor iteration, after everything it received and before its submissions go to the kernel, so every
    /// write of one iteration shares a record and none waits longer for it (the iteration submits its I/O then
    /// anyway); elsewhere (no reactor: tests, the in-process bench, the control path) at once.
    /// </summary>
    private void FormBatches()
    {
        if (Poster is { IsCurrent: true } poster)
        {
            // The queue changes only under the gate, which the caller has just left: its count is current.
            if (!_formScheduled && _queue.Count > 0)
            {
                _formScheduled = true;
                poster.AtIterationEnd(_formQueued ??= FormQueued);
            }

            return;
        }

        FormNow();
    }

    private void FormQueued()
    {
        _formScheduled = false;
        FormNow();
    }

    /// <summary>Writes every batch the queue and the free slots allow (or has the collector make room).</summary>
    private void FormNow()
    {
        while (true)
        {
            RecordBatch? batch;
            bool wantRoom;
            lock (_gate)
            {
                batch = TryFormBatch(out wantRoom);
                if (batch is null)
                {
                    CountQueued();
                }
            }

            Continue(batch, wantRoom);
            if (batch is null)
            {
                return;
            }
        }
    }

    /// <summary>Under the lock: host writes still queued once batches formed waited for a record (slot, company or room); each counts once.</summary>
    private void CountQueued()
    {
        for (int i = _queueCounted; i < _queue.Count; i++)
        {
            _writesQueued += _queue[i].IsTrim || _queue[i].Relocation ? 0 : 1;
        }

        _queueCounted = _queue.Count;
    }

    /// <summary>Outside the lock: writes a formed batch, or has the collector make room for the queue.</summary>
    private void Continue(RecordBatch? batch, bool wantRoom)
    {
        if (batch is not null)
        {
            Pack(batch, core.Devices.LogKey);
            batch.Write(core.DeviceOf(batch.Location));
        }
        else if (wantRoom)
        {
            core.Collector.RequestRoom(this);
        }
    }

    /// <summary>
    /// Under the lock: takes the front of the queue (records of one kind, as many as fit in the open segment, the
    /// batch buffer and one header) as a batch and reserves its space, if a write slot is free.
    /// <paramref name="wantRoom"/> says no free segment was left (the collector must run first).
    /// </summary>
    private RecordBatch? TryFormBatch(out bool wantRoom)
    {
        wantRoom = false;
        if (_writing >= MaxWritesInFlight || _queue.Count == 0 || _awaitingRoom)
        {
            return null;
        }

        bool trim = _queue[0].IsTrim;
        int front = GroupLength(0, out int frontBlocks);
        if (!EnsureOpen(1 + (trim ? 0 : frontBlocks)))
        {
            _awaitingRoom = wantRoom = true;
            _roomWaits++;
            return null;
        }

        int room = Math.Min(_open!.Blocks - _open.Cursor - 1, BatchDataBlocks);
        // Small writes pack; a large one (a group's worth itself, which needs no company to pay for its header) gets a
        // record of its own while another slot stays free, so 128K writes keep streaming one record each, several
        // deep, as the disk needs (the queue only holds several of them when records form at the end of a reactor
        // iteration). With the last slot everything goes together.
        bool spareSlot = _writing + 1 < MaxWritesInFlight;
        int taken = 0, data = 0, lastBlocks = 0;
        while (taken < _queue.Count && _queue[taken].IsTrim == trim)
        {
            int groupBlocks = frontBlocks;
            int group = taken == 0 ? front : GroupLength(taken, out groupBlocks);
            int blocks = trim ? 0 : groupBlocks;
            // The front group always fits: EnsureOpen made room for it, and a group is at most one chunk (32 blocks).
            if (taken > 0 && (taken + group > RecordFormat.MaxExtents || data + blocks > room ||
                (spareSlot && Math.Max(blocks, lastBlocks) >= GroupBlocks)))
            {
                break;
            }

            data += blocks;
            taken += group;
            lastBlocks = blocks;
        }

        // Past the eager slots, wait for company unless the batch is full enough or something is left behind it.
        if (_writing >= EagerWrites && (trim ? taken : data) < GroupBlocks && taken == _queue.Count)
        {
            return null;
        }

        RecordBatch batch = _batches.Count > 0 ? _batches.Pop() : new RecordBatch(this, BatchDataBlocks);
        _open.TryTake(1 + data, out batch.Location);
        batch.Segment = _open;
        batch.DataBlocks = data;
        batch.Kind = trim ? RecordKind.Trim : RecordKind.Data;
        for (int i = 0; i < taken; i++)
        {
            batch.Records.Add(_queue[i]);
        }

        _queue.RemoveRange(0, taken);
        _queueCounted = Math.Max(0, _queueCounted - taken);
        CountWaits(batch);
        if (trim)
        {
            Interlocked.Increment(ref _open.TrimRecords);
        }

        _writing++;
        return batch;
    }

    /// <summary>Under the lock: what the batch's host writes waited in the queue, and how many records are in flight with it.</summary>
    private void CountWaits(RecordBatch batch)
    {
        long now = Stopwatch.GetTimestamp();
        foreach (PendingRecord record in batch.Records)
        {
            _queueTicks += record.IsTrim || record.Relocation ? 0 : now - record.Queued;
        }

        _depthSum += _writing + 1;
    }

    /// <summary>
    /// Under the lock: how many queued records from <paramref name="at"/> must share one record, and their data blocks:
    /// a re-pack's relocations (queued together) go as one group, so the chunk lands as one device run; anything else alone.
    /// </summary>
    private int GroupLength(int at, out int blocks)
    {
        PendingRecord first = _queue[at];
        blocks = first.IsTrim ? 0 : first.Count;
        int length = 1;
        while (first.Repack is not null && at + length < _queue.Count && _queue[at + length].Repack == first.Repack)
        {
            blocks += _queue[at + length].Count;
            length++;
        }

        return length;
    }

    /// <summary>Outside the lock: the header and the data of every record of the batch, one CRC per extent.</summary>
    private static void Pack(RecordBatch batch, Guid key)
    {
        Span<byte> buffer = batch.Buffer.GetSpan();
        RecordFormat.Begin(buffer, batch.Kind, batch.Segment.Stamp);
        int block = 0;
        for (int i = 0; i < batch.Records.Count; i++)
        {
            PendingRecord record = batch.Records[i];
            uint crc = 0;
            if (!record.IsTrim)
            {
                Span<byte> data = buffer.Slice(RecordFormat.HeaderSize + (block * GftlLayout.BlockSize), record.Count * GftlLayout.BlockSize);
                record.Source.Span.CopyTo(data);
                record.Source = default;
                crc = Crc32C.Compute(data);
                record.Location = batch.Location + 1 + block;
                block += record.Count;
            }

            RecordFormat.SetExtent(buffer, i, new Extent(record.Volume.Id, record.Lba, record.Count, record.Seq), crc);
        }

        RecordFormat.Seal(buffer, batch.Records.Count, block, key);
    }

    /// <summary><see cref="RoomMade"/> as delegates to post (cached: no allocation per answer).</summary>
    public Action RoomMadeAction => _roomMade ??= () => RoomMade(true);

    public Action NoRoomAction => _noRoom ??= () => RoomMade(false);

    /// <summary>Runs partition work on the partition's shard (registered when a channel opens there), else on the calling thread.</summary>
    public IWorkPoster? Poster
    {
        get => Volatile.Read(ref _poster);
        set => Volatile.Write(ref _poster, value);
    }

    /// <summary>
    /// The collector's answer to <see cref="GarbageCollector.RequestRoom"/> (on this partition's shard): the queue
    /// goes on, or fails as out of space.
    /// </summary>
    public void RoomMade(bool room)
    {
        PendingRecord[] failed = [];
        lock (_gate)
        {
            _awaitingRoom = false;
            if (!room)
            {
                failed = [.. _queue];
                _queue.Clear();
                foreach (PendingRecord record in failed)
                {
                    _inflight.Remove(record);
                    if (record.Relocation)
                    {
                        RelocationDone(record.Repack!);
                    }
                }

                _queueCounted = 0;
            }
        }

        FormBatches();
        StartRepackReads();
        foreach (PendingRecord record in failed)
        {
            Finish(record, StorageResult.OutOfSpace);
        }
    }

    /// <summary>Hands a record's outcome to its writer; a re-pack copy (nobody waits for it) goes back to the pool.</summary>
    private void Finish(PendingRecord record, StorageResult result)
    {
        record.Volume = null!;
        record.Chunk = null;
        record.Source = default;
        if (record.Relocation)
        {
            record.Repack = null;
            Recycle(record);
            return;
        }

        record.Complete(result);
    }

    /// <summary>
    /// Called by a read whose data a re-pack takes, once its data is in: queues a contiguous copy of the blocks the
    /// volume wrote itself (inherited ones belong to the parent's records), as relocations that keep each block's
    /// sequence number, so they pack with the host writes of the partition. When the copy is on the device each
    /// block moves to it only if the map still holds that same write there; otherwise the copy is just dead.
    /// </summary>
    public void Repack(ChunkRead read, bool readOk)
    {
        RepackSlot slot = read.Repack!;
        if (readOk && !read.Internal)
        {
            read.Destination.Span.CopyTo(slot.Buffer.GetSpan());
        }

        lock (_gate)
        {
            GftlVolume volume = slot.Volume;
            if (readOk && !volume.IsClosed && volume.Maps[Index].Chunks.TryGetValue(slot.Lba / GftlLayout.BlocksPerChunk, out ChunkBlocks? blocks) &&
                blocks == slot.Chunk)
            {
                QueueRelocations(slot);
            }

            if (slot.Pending == 0)
            {
                ReleaseRepack(slot);
            }
        }

        FormBatches();
        StartRepackReads();
    }

    /// <summary>Under the lock: one relocation per run of blocks that one write put contiguously.</summary>
    private void QueueRelocations(RepackSlot slot)
    {
        for (int i = 0; i < slot.Count;)
        {
            long seq = slot.Seqs[i], from = slot.Locations[i];
            int run = 1;
            while (i + run < slot.Count && slot.Seqs[i + run] == seq && slot.Locations[i + run] == from + run)
            {
                run++;
            }

            if (from != GftlLayout.Unmapped && seq >= slot.Volume.Entry.CreatedSeq)
            {
                PendingRecord record = Enqueue(slot.Volume, slot.Chunk, slot.Lba + i, run, seq,
                    slot.Buffer.Memory.Slice(i * GftlLayout.BlockSize, run * GftlLayout.BlockSize), relocation: true);
                record.From = from;
                record.Repack = slot;
                slot.Pending++;
            }

            i += run;
        }
    }

    /// <summary>Under the lock: a relocation is written (or failed); the last one of its re-pack frees the slot.</summary>
    private void RelocationDone(RepackSlot slot)
    {
        if (--slot.Pending == 0)
        {
            ReleaseRepack(slot);
        }
    }

    /// <summary>Under the lock: the slot takes the next waiting chunk, whose read is prepared for <see cref="StartRepackReads"/>.</summary>
    private void ReleaseRepack(RepackSlot slot)
    {
        if (_repacker.Release(slot) is not { } next)
        {
            return;
        }

        ChunkRead read = _reads.Count > 0 ? _reads.Pop() : new ChunkRead(this);
        read.Destination = next.Buffer.Memory;
        read.Repack = next;
        read.Internal = true;
        AddRuns(read, next.Chunk, 0, GftlLayout.BlocksPerChunk);
        Register(read);
        _repackReads.Push(read);
    }

    /// <summary>Outside the lock: starts the re-packs' own reads prepared under it.</summary>
    private void StartRepackReads()
    {
        while (true)
        {
            ChunkRead? read;
            lock (_gate)
            {
                if (!_repackReads.TryPop(out read))
                {
                    return;
                }
            }

            read.Start(core);
        }
    }

    /// <summary>Under the lock: a pooled record for a host write, trim or re-pack copy, in flight and queued for the next batch.</summary>
    private PendingRecord Enqueue(GftlVolume volume, ChunkBlocks? chunk, long lba, int count, long seq, ReadOnlyMemory<byte> source, bool relocation)
    {
        PendingRecord record = _spare.Count > 0 ? _spare.Pop() : new PendingRecord(this);
        record.Volume = volume;
        record.Relocation = relocation;
        record.Chunk = chunk;
        record.Lba = lba;
        record.Count = count;
        record.Seq = seq;
        record.Source = source;
        record.Queued = Stopwatch.GetTimestamp();
        _inflight.Add(record);
        _queue.Add(record);
        return record;
    }

    /// <summary>Moves the blocks of a re-pack copy that still hold the copied write; returns how many moved.</summary>
    private int Relocate(PendingRecord record, Segment segment)
    {
        int first = (int)(record.Lba % GftlLayout.BlocksPerChunk);
        int moved = 0;
        for (int i = 0; i < record.Count; i++)
        {
            ref MapEntry entry = ref record.Chunk!.Entries[first + i];
            if (entry.Location == record.From + i && entry.Seq == record.Seq)
            {
                Unreference(entry.Location);
                entry.Location = record.Location + i;
                moved++;
            }
        }

        Interlocked.Add(ref segment.Live, moved);
        return moved;
    }

    /// <summary>True while a record older than <paramref name="seq"/> is in flight here (a snapshot's cut waits for them).</summary>
    public bool HasInflightBelow(long seq)
    {
        lock (_gate)
        {
            foreach (PendingRecord record in _inflight)
            {
                if (record.Seq < seq)
                {
                    return true;
                }
            }

            return false;
        }
    }

    /// <summary>
    /// Unmaps the blocks of [lba, lba + count) that this partition owns, as of trim <paramref name="seq"/>. Returns how
    /// many mapped or in-flight blocks it touched: 0 means the range already reads as zeros here.
    /// </summary>
    public long Trim(GftlVolume volume, long lba, long count, long seq)
    {
        lock (_gate)
        {
            long touched = CountInflightOverlaps(volume, lba, count, seq) + TrimMap(volume.Maps[Index], lba, count, seq);
            TrimLaterSnapshots(volume, lba, count, seq);
            return touched;
        }
    }

    /// <summary>
    /// Reads blocks of one chunk: looks up all its runs at once (registering as a reader, see
    /// <see cref="FlipReadEpoch"/>), then reads every mapped run in parallel; unmapped blocks read as zeros.
    /// </summary>
    public ValueTask<StorageResult> ReadAsync(GftlVolume volume, long lba, Memory<byte> destination)
    {
        ChunkRead read;
        lock (_gate)
        {
            if (volume.IsClosed)
            {
                return new(StorageResult.MediaError);
            }

            if (!volume.Maps[Index].Chunks.TryGetValue(lba / GftlLayout.BlocksPerChunk, out ChunkBlocks? blocks))
            {
                destination.Span.Clear();
                return new(StorageResult.Ok);
            }

            read = _reads.Count > 0 ? _reads.Pop() : new ChunkRead(this);
            read.Destination = destination;
            int count = destination.Length >> GftlLayout.BlockShift;
            AddRuns(read, blocks, (int)(lba % GftlLayout.BlocksPerChunk), count);
            if (read.MappedRuns >= RepackMinRuns && !volume.Entry.ReadOnly)
            {
                read.Repack = _repacker.Request(volume, blocks, lba, count);
            }

            Register(read);
        }

        short token = read.Token;
        read.Start(core);
        return read.AsValueTask(token);
    }

    /// <summary>Under the lock: a read with mapped runs counts in the read epoch and gets a bounce buffer if its destination needs one.</summary>
    private void Register(ChunkRead read)
    {
        if (read.MappedRuns > 0)
        {
            _deviceReads += read.MappedRuns;
            read.Epoch = _readEpoch;
            Interlocked.Increment(ref _readers[read.Epoch]);
            if (_bounceReads && !ChunkRead.IsAligned(read.Destination))
            {
                read.Bounce = _buffers.Count > 0 ? _buffers.Pop() : new NativeBuffer(BufferBytes);
            }
        }
    }

    /// <summary>A read's device I/O is over: it no longer holds its epoch or its bounce buffer.</summary>
    public void EndRead(ChunkRead read)
    {
        if (read.MappedRuns == 0)
        {
            return;
        }

        Interlocked.Decrement(ref _readers[read.Epoch]);
        if (read.Bounce is { } bounce)
        {
            read.Bounce = null;
            lock (_gate)
            {
                _buffers.Push(bounce);
            }
        }
    }

    public void Recycle(ChunkRead read)
    {
        read.Clear();
        lock (_gate)
        {
            _reads.Push(read);
        }
    }

    /// <summary>
    /// Starts a read grace period: reads that looked up a location before now count in the returned epoch, and once
    /// <see cref="ReadersDrained"/> says so, none of them can still be reading a segment the collector just emptied.
    /// </summary>
    public int FlipReadEpoch()
    {
        lock (_gate)
        {
            int old = _readEpoch;
            _readEpoch ^= 1;
            return old;
        }
    }

    public bool ReadersDrained(int epoch) => Volatile.Read(ref _readers[epoch]) == 0;

    /// <summary>True when the volume's block <paramref name="lba"/> points at <paramref name="location"/>.</summary>
    public bool References(GftlVolume volume, long lba, long location)
    {
        lock (_gate)
        {
            return volume.Maps[Index].Find(lba).Location == location;
        }
    }

    /// <summary>Moves the volume's block from <paramref name="from"/> to <paramref name="to"/> if it still points there.</summary>
    public bool Relocate(GftlVolume volume, long lba, long from, long to)
    {
        lock (_gate)
        {
            if (!volume.Maps[Index].Chunks.TryGetValue(lba / GftlLayout.BlocksPerChunk, out ChunkBlocks? blocks))
            {
                return false;
            }

            ref MapEntry entry = ref blocks.Entries[lba % GftlLayout.BlocksPerChunk];
            if (entry.Location != from)
            {
                return false;
            }

            entry.Location = to;
            return true;
        }
    }

    /// <summary>True when some block of [lba, lba + count) within one chunk is unmapped.</summary>
    public bool HasUnmapped(GftlVolume volume, long lba, int count)
    {
        lock (_gate)
        {
            if (!volume.Maps[Index].Chunks.TryGetValue(lba / GftlLayout.BlocksPerChunk, out ChunkBlocks? blocks))
            {
                return true;
            }

            int first = (int)(lba % GftlLayout.BlocksPerChunk);
            for (int i = first; i < first + count; i++)
            {
                if (blocks.Entries[i].Location == GftlLayout.Unmapped)
                {
                    return true;
                }
            }

            return false;
        }
    }

    /// <summary>Drops every entry of the volume here (delete); the segments lose those references.</summary>
    public void DropVolume(GftlVolume volume)
    {
        lock (_gate)
        {
            PartitionMap map = volume.Maps[Index];
            foreach (ChunkBlocks blocks in map.Chunks.Values)
            {
                foreach (MapEntry entry in blocks.Entries)
                {
                    if (entry.Location != GftlLayout.Unmapped)
                    {
                        Unreference(entry.Location);
                    }
                }
            }

            map.Chunks.Clear();
            map.MappedBlocks = 0;
        }
    }

    /// <summary>The open segment is left as it is (closed) at shutdown; recovery never reopens it.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            while (_buffers.TryPop(out NativeBuffer? buffer))
            {
                buffer.Free();
            }

            while (_batches.TryPop(out RecordBatch? batch))
            {
                batch.Buffer.Free();
            }

            _repacker.Dispose();
        }
    }

    /// <summary>Makes sure the open segment has <paramref name="blocks"/> left, opening a new one if not; false when none is free.</summary>
    private bool EnsureOpen(int blocks)
    {
        if (_open is not null && _open.Blocks - _open.Cursor >= blocks)
        {
            return true;
        }

        if (_open is not null)
        {
            core.Allocator.Close(_open);
        }

        _open = core.Allocator.TryOpen(forCollector: false);
        core.Collector?.Nudge(this); // null only while the store is starting
        return _open is not null && _open.Blocks >= blocks;
    }

    /// <summary>The destination's runs: each all unmapped, or contiguous on one device (one device read).</summary>
    private static void AddRuns(ChunkRead read, ChunkBlocks blocks, int first, int count)
    {
        for (int done = 0; done < count;)
        {
            int run = RunLength(blocks, first + done, count - done);
            read.AddRun(done, run, blocks.Entries[first + done].Location);
            done += run;
        }
    }

    /// <summary>
    /// How many device reads the mapped blocks of [first, first + count) of the chunk take, counting only runs written
    /// at or after <paramref name="minSeq"/> (a clone's own writes: what a re-pack of it can move).
    /// </summary>
    public static int CountMappedRuns(ChunkBlocks blocks, int first, int count, long minSeq)
    {
        int runs = 0;
        for (int done = 0; done < count;)
        {
            MapEntry entry = blocks.Entries[first + done];
            runs += entry.Location != GftlLayout.Unmapped && entry.Seq >= minSeq ? 1 : 0;
            done += RunLength(blocks, first + done, count - done);
        }

        return runs;
    }

    /// <summary>Blocks from <paramref name="at"/> (at most <paramref name="max"/>) that are all unmapped, or contiguous on the device.</summary>
    private static int RunLength(ChunkBlocks blocks, int at, int max)
    {
        long location = blocks.Entries[at].Location;
        int run = 1;
        while (run < max && blocks.Entries[at + run].Location == (location == GftlLayout.Unmapped ? location : location + run))
        {
            run++;
        }

        return run;
    }

    private long TrimMap(PartitionMap map, long lba, long count, long seq)
    {
        long touched = 0;
        Chunking.ChunkSpans pieces = Chunking.ChunkMap.SplitBlocks(lba, count, GftlLayout.BlockShift);
        if (pieces.Count <= map.Chunks.Count)
        {
            foreach (Chunking.ChunkSpan piece in pieces)
            {
                if (map.Chunks.TryGetValue(piece.ChunkIndex, out ChunkBlocks? blocks))
                {
                    touched += TrimChunk(map, piece.ChunkIndex, blocks, lba, count, seq);
                }
            }
        }
        else
        {
            // A range wider than what is mapped (a whole-volume discard): walk the map instead.
            long firstChunk = lba / GftlLayout.BlocksPerChunk, lastChunk = (lba + count - 1) / GftlLayout.BlocksPerChunk;
            foreach ((long chunk, ChunkBlocks blocks) in map.Chunks)
            {
                if (chunk >= firstChunk && chunk <= lastChunk)
                {
                    touched += TrimChunk(map, chunk, blocks, lba, count, seq);
                }
            }
        }

        return touched;
    }

    // Snapshots without quiescing (see GftlStore.Derive): a snapshot or clone holds its parent's records older
    // than its base sequence number. A write or trim older than that which completes after the snapshot's cut
    // must reach the snapshot's map too (and its own snapshots'), as a scan of the log would resolve it.
    private void MapIntoLaterSnapshots(GftlVolume volume, PendingRecord record)
    {
        foreach (GftlVolume child in volume.Children)
        {
            if (child.Entry.BaseSeq > record.Seq)
            {
                if (!child.IsClosed)
                {
                    PartitionMap map = child.Maps[Index];
                    Map(map, map.GetOrAdd(record.Lba / GftlLayout.BlocksPerChunk), record);
                }

                MapIntoLaterSnapshots(child, record);
            }
        }
    }

    private void TrimLaterSnapshots(GftlVolume volume, long lba, long count, long seq)
    {
        foreach (GftlVolume child in volume.Children)
        {
            if (child.Entry.BaseSeq > seq)
            {
                TrimMap(child.Maps[Index], lba, count, seq);
                TrimLaterSnapshots(child, lba, count, seq);
            }
        }
    }

    private int TrimChunk(PartitionMap map, long chunk, ChunkBlocks blocks, long lba, long count, long seq)
    {
        long chunkStart = chunk * GftlLayout.BlocksPerChunk;
        int first = (int)(Math.Max(lba, chunkStart) - chunkStart);
        int end = (int)(Math.Min(lba + count, chunkStart + GftlLayout.BlocksPerChunk) - chunkStart);
        int touched = 0;
        for (int i = first; i < end; i++)
        {
            ref MapEntry entry = ref blocks.Entries[i];
            if (entry.Seq >= seq)
            {
                continue;
            }

            if (entry.Location != GftlLayout.Unmapped)
            {
                Unreference(entry.Location);
                blocks.Mapped--;
                map.MappedBlocks--;
                touched++;
            }

            entry.Location = GftlLayout.Unmapped;
            entry.Seq = seq;
        }

        // Without writes in flight nobody needs the trim's sequence number kept in the entries.
        if (blocks.Mapped == 0 && _inflight.Count == 0)
        {
            map.Chunks.Remove(chunk);
        }

        return touched;
    }

    /// <summary>
    /// Writes older than the trim still in flight here. Their records may already be on disk, so the trim must be
    /// logged even if nothing is mapped yet; in memory the entries' trim sequence number keeps them from mapping.
    /// </summary>
    private long CountInflightOverlaps(GftlVolume volume, long lba, long count, long seq)
    {
        long overlaps = 0;
        foreach (PendingRecord record in _inflight)
        {
            if (record.Volume == volume && !record.IsTrim && record.Seq < seq &&
                record.Lba < lba + count && lba < record.Lba + record.Count)
            {
                overlaps++;
            }
        }

        return overlaps;
    }

    /// <summary>
    /// Under the lock: points the record's blocks at its new location. The segments' live counts change afterwards,
    /// once per batch (<see cref="SettleLiveCounts"/>): an interlocked operation waits for the loads before it, so
    /// one per overwritten block here would serialise the cache misses of a batch's map entries (a 4K random
    /// write's entry is one), which otherwise overlap.
    /// </summary>
    private void Map(PartitionMap map, ChunkBlocks blocks, PendingRecord record)
    {
        int first = (int)(record.Lba % GftlLayout.BlocksPerChunk);
        for (int i = 0; i < record.Count; i++)
        {
            ref MapEntry entry = ref blocks.Entries[first + i];
            if (entry.Seq > record.Seq)
            {
                continue;
            }

            if (entry.Location != GftlLayout.Unmapped)
            {
                _unreferenced.Add(entry.Location);
            }
            else
            {
                blocks.Mapped++;
                map.MappedBlocks++;
            }

            entry.Location = record.Location + i;
            entry.Seq = record.Seq;
            _referenced++;
        }
    }

    /// <summary>Under the lock, before the batch's segment stops being pending: applies the live counts <see cref="Map"/> changed.</summary>
    private void SettleLiveCounts(Segment segment)
    {
        Interlocked.Add(ref segment.Live, _referenced);
        _referenced = 0;
        foreach (long location in _unreferenced)
        {
            Unreference(location);
        }

        _unreferenced.Clear();
    }

    private void Unreference(long location) => Interlocked.Decrement(ref core.Allocator.SegmentOf(location).Live);
}
