using Duroslight.Storage.Volumes;
using Microsoft.Win32.SafeHandles;

namespace Duroslight.Storage.Gftl;

/// <summary>
/// The GFTL as a volume store: one log-structured, thin layer over N devices that all volumes share, with
/// snapshots and clones. Start-up formats blank devices, or checks the superblocks and recovers: from the
/// checkpoint of a graceful shutdown, else by scanning every device. Control-plane calls serialize on one lock;
/// I/O goes to the volumes (see <see cref="Partition"/>).
/// </summary>
public sealed class GftlStore : IVolumeStore
{
    private readonly object _gate = new();
    private readonly GftlOptions _options;
    private readonly SafeFileHandle _lockFile;
    private readonly GftlLog _core;
    private readonly DeviceMetadata _metadata;
    private readonly Guid _clusterId;
    private readonly RecoveryTracker _recovery;
    private bool _disposed;

    public GftlStore(GftlOptions options)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.ShardCount);
        _options = options;
        DataDirectory = Path.GetFullPath(options.DataDirectory);
        Directory.CreateDirectory(DataDirectory);
        _lockFile = DataDirectoryLock.Acquire(DataDirectory);
        try
        {
            RefuseLegacyCatalog();
            DeviceSet devices = DeviceSet.OpenOrFormat(options.Devices, options.NodeIndex, options.SegmentBytes, options.DirectIo, out bool formatted);
            _clusterId = devices.ClusterId;
            _core = new GftlLog(devices, options.ShardCount);
            _metadata = devices.Metadata;
            DeviceMetadata.Loaded? state = formatted ? null : _metadata.Load(out string problem) ??
                throw new VolumeStoreException($"GFTL devices of cluster {_clusterId}: {problem}; the catalog is lost.");
            LoadVolumes(state is null ? [] : GftlCatalog.Parse(state.Catalog, _clusterId).Volumes);
            _core.RaiseSeq(state?.LastSeq ?? 0);
            _recovery = Recover(state);
            _core.Collector = new GarbageCollector(_core);
            if (options.BackgroundGc)
            {
                _core.Collector.Start();
            }
        }
        catch
        {
            _core?.Dispose();
            _lockFile.Dispose();
            throw;
        }
    }

    public string DataDirectory { get; }

    public int BlockSize => GftlLayout.BlockSize;

    /// <summary>How the store started and, during start, how far recovery has got.</summary>
    public GftlRecoveryProgress Recovery => _recovery.Current;

    /// <summary>False where a filesystem refused O_DIRECT for some device (then the page cache sits in between).</summary>
    public bool DirectIo => _core.Devices.AllDirect;

    public int DeviceCount => _core.Devices.Count;

    public IReadOnlyList<DeviceHealth> Devices => Array.ConvertAll(_core.Devices.Devices, static d => d.Health);

    public long PhysicalCapacityBytes => (long)_core.Allocator.Segments.Length * _core.Devices.SegmentBytes;

    /// <summary>Live data of all volumes (blocks shared by snapshots count once).</summary>
    public long PhysicalUsedBytes => SumLive(-1) * GftlLayout.BlockSize;

    public long DeviceUsedBytes(int device) => SumLive(device) * GftlLayout.BlockSize;

    public int FreeSegments => _core.Allocator.FreeCount;

    /// <summary>All blocks written to the devices (records of writes, trims and the collector) per block of user data.</summary>
    public double WriteAmplification => UserBytesWritten == 0 ? 1.0 : (double)DeviceBytesWritten / UserBytesWritten;

    /// <summary>Data bytes of completed user writes since start.</summary>
    public long UserBytesWritten => SumOverPartitions(static p => p.UserBlocks) * GftlLayout.BlockSize;

    /// <summary>Bytes written to the devices since start: user records (headers included), trims and the collector's copies.</summary>
    public long DeviceBytesWritten =>
        (_core.Collector.RecordBlocks + SumOverPartitions(static p => p.RecordBlocks)) * GftlLayout.BlockSize;

    /// <summary>Records the partitions wrote since start (one header each; the collector's not counted).</summary>
    public long RecordsWritten => SumOverPartitions(static p => p.Records);

    /// <summary>The write path's counters, summed over the partitions.</summary>
    public GftlWriteStats WriteStats
    {
        get
        {
            GftlWriteStats sum = default;
            foreach (Partition partition in _core.Partitions)
            {
                sum += partition.WriteStats;
            }

            return sum;
        }
    }

    /// <summary>Segment size of the devices (chosen at format time).</summary>
    public int SegmentBytes => _core.Devices.SegmentBytes;

    /// <summary>One partition counter summed over the partitions (statistics, read off the I/O path).</summary>
    private long SumOverPartitions(Func<Partition, long> counter)
    {
        long sum = 0;
        foreach (Partition partition in _core.Partitions)
        {
            sum += counter(partition);
        }

        return sum;
    }

    /// <summary>The last sequence number handed out (tests: recovery must never move it back).</summary>
    internal long LastSeq => _core.LastSeq;

    public long GcRelocatedBytes => _core.Collector.RelocatedBlocks * GftlLayout.BlockSize;

    /// <summary>Bytes rewritten contiguously because reads found them fragmented (part of the device bytes written).</summary>
    public long RepackedBytes => SumOverPartitions(static p => p.RepackedBlocks) * GftlLayout.BlockSize;

    /// <summary>Device reads issued by chunk reads, one per mapped run (a 128 KiB read of contiguous data: 1).</summary>
    public long DeviceReads => SumOverPartitions(static p => p.DeviceReads);

    /// <summary>Re-packs asked for and dropped (every slot busy, the queue full): a later read of the chunk asks again.</summary>
    public long RepacksDropped => SumOverPartitions(static p => p.RepacksDropped);

    /// <summary>Fragmented chunks queued for a re-pack or being re-packed (0: every re-pack asked for is done).</summary>
    public int RepacksBusy => (int)SumOverPartitions(static p => p.RepacksBusy);

    public long GcSegmentsCleaned => _core.Collector.SegmentsCleaned;

    /// <summary>Segments opened for writing that had never been written (a file-backed device allocates as they fill).</summary>
    public long FreshSegmentsOpened => _core.Allocator.FreshOpened;

    /// <summary>Segments opened for writing that had been written and freed before.</summary>
    public long ReusedSegmentsOpened => _core.Allocator.ReusedOpened;

    /// <summary>Collector slices run (each bounded to about one victim segment's work).</summary>
    public long GcSlices => _core.Collector.Slices;

    /// <summary>Collector slices run on a thread without a shard's I/O (the thread-pool path, used without a reactor).</summary>
    public long GcSlicesOffShard => _core.Collector.SlicesOffShard;

    /// <summary>Runs the collector now (tests, benchmarks); returns the segments it freed.</summary>
    public Task<int> CollectGarbageAsync(int maxSegments = int.MaxValue) => _core.Collector.CollectAsync(maxSegments);

    public IReadOnlyList<VolumeDescriptor> List()
    {
        lock (_gate)
        {
            var visible = new List<VolumeDescriptor>();
            foreach (GftlVolume volume in _core.Volumes)
            {
                if (!volume.Entry.Hidden)
                {
                    visible.Add(volume.Entry.Descriptor);
                }
            }

            return visible;
        }
    }

    public VolumeDescriptor Create(string name, long sizeBytes, Guid? id = null, IReadOnlyList<string>? hosts = null)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            VolumeDescriptor descriptor = VolumeRequests.ValidateCreate([.. List()], name, sizeBytes, id, GftlLayout.BlockSize, hosts);
            if (_core.Find(descriptor.Id) is not null)
            {
                throw new VolumeStoreException($"Id {descriptor.Id} belongs to a deleted volume that snapshots or clones still read from.");
            }

            long seq = _core.NextSeq();
            var entry = new GftlCatalog.Entry(descriptor.Id, name, sizeBytes, false, null, 0, seq, false) { Hosts = descriptor.Hosts, Incarnation = descriptor.Incarnation };
            Publish([.. _core.Volumes, new GftlVolume(_core, entry, null)]);
            return descriptor;
        }
    }

    /// <summary>A volume that snapshots or clones still read from is hidden rather than removed, until they go too.</summary>
    public void Delete(Guid id)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            GftlVolume volume = Visible(id);
            List<GftlVolume> volumes = [.. _core.Volumes];
            GftlCatalog.Entry entry = volume.Entry;
            GftlVolume[] children = volume.Parent?.Children ?? [];
            if (volume.Children.Length > 0)
            {
                volume.Entry = entry with { Hidden = true };
            }
            else
            {
                Remove(volumes, volume);
            }

            try
            {
                Publish([.. volumes]);
            }
            catch
            {
                volume.Entry = entry;
                if (volume.Parent is not null)
                {
                    volume.Parent.Children = children;
                }

                throw;
            }

            volume.Close();
            foreach (Partition partition in _core.Partitions)
            {
                partition.DropVolume(volume);
            }
        }
    }

    public VolumeDescriptor Resize(Guid id, long newSizeBytes)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            GftlVolume volume = Visible(id);
            VolumeDescriptor resized = VolumeRequests.ValidateResize(volume.Entry.Descriptor, newSizeBytes);
            if (volume.Entry.ReadOnly && resized.SizeBytes != volume.SizeBytes)
            {
                throw new VolumeStoreException($"Volume {id} is a snapshot: snapshots cannot be resized.");
            }

            GftlCatalog.Entry previous = volume.Entry;
            volume.Entry = previous with { SizeBytes = resized.SizeBytes };
            try
            {
                SaveCatalog(_core.Volumes);
            }
            catch
            {
                volume.Entry = previous;
                throw;
            }

            volume.Grow(resized.SizeBytes);
            return resized;
        }
    }

    public VolumeDescriptor SetHosts(Guid id, IReadOnlyList<string>? hosts) =>
        UpdateEntry(id, e => e with { Hosts = VolumeRequests.NormalizeHosts(hosts) });

    public VolumeDescriptor SetReservation(Guid id, byte[]? record) => UpdateEntry(id, e => e with { Reservation = record });

    /// <summary>Changes a volume's catalog entry and saves the catalog; a failed save leaves the entry as it was.</summary>
    private VolumeDescriptor UpdateEntry(Guid id, Func<GftlCatalog.Entry, GftlCatalog.Entry> change)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            GftlVolume volume = Visible(id);
            GftlCatalog.Entry previous = volume.Entry;
            volume.Entry = change(previous);
            try
            {
                SaveCatalog(_core.Volumes);
            }
            catch
            {
                volume.Entry = previous;
                throw;
            }

            return volume.Entry.Descriptor;
        }
    }

    public VolumeDescriptor Snapshot(Guid sourceId, string name) => Derive(sourceId, name, readOnly: true);

    public VolumeDescriptor Clone(Guid sourceId, string name) => Derive(sourceId, name, readOnly: false);

    public IBlockVolume Open(Guid id)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            return Visible(id);
        }
    }

    /// <summary>
    /// Stops the collector, whose slices run on the reactor's shards: the host calls this before it stops the
    /// shards (<see cref="Dispose"/> does it too, for stores used without a reactor).
    /// </summary>
    public void StopCollector() => _core.Collector.StopAsync().AsTask().GetAwaiter().GetResult();

    /// <summary>Graceful stop: stops the collector, makes everything durable and writes the checkpoint.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            _core.Collector.DisposeAsync().AsTask().GetAwaiter().GetResult();

            // Close the volumes with nothing in flight, so every acknowledged write is in the maps the checkpoint saves.
            bool quiet = _core.TryQuiesce(TimeSpan.FromSeconds(10));
            foreach (GftlVolume volume in _core.Volumes)
            {
                volume.Close();
            }

            if (quiet)
            {
                _core.EndQuiesce();
                if (_core.FlushAsync().AsTask().GetAwaiter().GetResult() == StorageResult.Ok)
                {
                    SaveCheckpoint();
                }
            }

            _core.Dispose();
            _lockFile.Dispose();
        }
    }

    private VolumeDescriptor Derive(Guid sourceId, string name, bool readOnly)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            GftlVolume source = Visible(sourceId);
            if (string.IsNullOrWhiteSpace(name))
            {
                throw new VolumeStoreException("Volume name must not be empty.");
            }

            // The cut: with every partition locked, no record can be reserved or completed and no trim applied, so
            // every record reserved so far has a lower sequence number than the base taken now. The child shares
            // the source's placement (same partitions) and starts as a copy of its maps; records and trims below
            // the base that complete later reach it in their partition (Partition.MapIntoLaterSnapshots), which is
            // what a scan of the log resolves too. Only those records are waited for before returning, so the
            // snapshot no longer changes once the caller has it; new writes go on all along.
            GftlVolume child;
            long seq;
            _core.LockPartitions();
            try
            {
                seq = _core.NextSeq();
                child = new GftlVolume(_core, new GftlCatalog.Entry(Guid.NewGuid(), name, source.SizeBytes, readOnly, source.Id, seq, seq, false)
                {
                    Hosts = source.Entry.Hosts, // a copy of a masked volume stays masked
                }, source);
                CopyMaps(source, child);
                source.Children = [.. source.Children, child];
                _core.SetVolumes([.. _core.Volumes, child]);
            }
            finally
            {
                _core.UnlockPartitions();
            }

            try
            {
                SaveCatalog(_core.Volumes);
            }
            catch
            {
                source.Children = Array.FindAll(source.Children, c => c != child);
                _core.SetVolumes(Array.FindAll(_core.Volumes, v => v != child));
                child.Close();
                foreach (Partition partition in _core.Partitions)
                {
                    partition.DropVolume(child);
                }

                throw;
            }

            _core.WaitForRecordsBelow(seq);
            return child.Entry.Descriptor;
        }
    }

    /// <summary>
    /// The child gets its own map entries pointing at the same blocks (the data is shared, copy-on-write: the next
    /// write to either side goes to a new location), and the trims' sequence numbers kept in unmapped entries.
    /// Runs with every partition locked.
    /// </summary>
    private void CopyMaps(GftlVolume source, GftlVolume child)
    {
        for (int p = 0; p < source.Maps.Length; p++)
        {
            PartitionMap to = child.Maps[p];
            foreach ((long chunk, ChunkBlocks blocks) in source.Maps[p].Chunks)
            {
                ChunkBlocks copy = to.GetOrAdd(chunk);
                blocks.Entries.CopyTo(copy.Entries, 0);
                copy.Mapped = blocks.Mapped;
                to.MappedBlocks += blocks.Mapped;
                foreach (MapEntry entry in blocks.Entries)
                {
                    if (entry.Location != GftlLayout.Unmapped)
                    {
                        Interlocked.Increment(ref _core.Allocator.SegmentOf(entry.Location).Live);
                    }
                }
            }
        }
    }

    /// <summary>Removes the volume, and then any hidden ancestor nobody reads through any more.</summary>
    private static void Remove(List<GftlVolume> volumes, GftlVolume volume)
    {
        volumes.Remove(volume);
        GftlVolume? parent = volume.Parent;
        if (parent is null)
        {
            return;
        }

        parent.Children = Array.FindAll(parent.Children, c => c != volume);
        if (parent.Entry.Hidden && parent.Children.Length == 0)
        {
            Remove(volumes, parent);
        }
    }

    private void Publish(GftlVolume[] volumes)
    {
        SaveCatalog(volumes);
        _core.SetVolumes(volumes);
    }

    private void SaveCatalog(GftlVolume[] volumes)
    {
        List<GftlCatalog.Entry> entries = Entries(volumes);
        _metadata.Save(GftlCatalog.Serialize(_clusterId, entries), [], _core.LastSeq);
    }

    private List<GftlCatalog.Entry> Entries(GftlVolume[] volumes)
    {
        var entries = new List<GftlCatalog.Entry>(volumes.Length);
        foreach (GftlVolume volume in volumes)
        {
            entries.Add(volume.Entry);
        }

        return entries;
    }

    /// <summary>
    /// The catalog with the checkpoint, after a graceful stop's flush. A checkpoint too large for the metadata slot
    /// (many snapshots of full volumes) is left out: the next start scans instead.
    /// </summary>
    private void SaveCheckpoint()
    {
        byte[] catalog = GftlCatalog.Serialize(_clusterId, Entries(_core.Volumes));
        byte[] checkpoint = Checkpoint.Encode(_core);
        try
        {
            _metadata.Save(catalog, checkpoint, _core.LastSeq);
        }
        catch (VolumeStoreException e)
        {
            _options.Log?.Invoke($"GFTL checkpoint not saved ({e.Message}): the next start scans the devices");
        }
    }

    /// <summary>Format 1 kept the catalog in the data directory: such a store cannot be opened by this build.</summary>
    private void RefuseLegacyCatalog()
    {
        string legacy = Path.Combine(DataDirectory, GftlCatalog.LegacyFileName);
        if (File.Exists(legacy))
        {
            throw new VolumeStoreException(
                $"'{legacy}' is the catalog of a GFTL of format version 1 (catalog in the data directory); this build keeps it on the devices (format version {Superblock.FormatVersion}) and cannot upgrade in place.");
        }
    }

    private GftlVolume Visible(Guid id) =>
        _core.Find(id) is { Entry.Hidden: false } volume ? volume : throw new VolumeStoreException($"No volume with id {id}.");

    /// <summary>Catalog order has parents before their snapshots and clones (they were created first).</summary>
    private void LoadVolumes(List<GftlCatalog.Entry> entries)
    {
        var volumes = new List<GftlVolume>(entries.Count);
        foreach (GftlCatalog.Entry entry in entries)
        {
            GftlVolume? parent = entry.ParentId is { } parentId ? volumes.Find(v => v.Id == parentId) : null;
            if (entry.ParentId is not null && parent is null)
            {
                throw new VolumeStoreException($"GFTL catalog: volume {entry.Id} names parent {entry.ParentId}, which is not listed before it.");
            }

            var volume = new GftlVolume(_core, entry, parent);
            if (parent is not null)
            {
                parent.Children = [.. parent.Children, volume];
            }

            volumes.Add(volume);
            _core.RaiseSeq(Math.Max(entry.CreatedSeq, entry.BaseSeq));
        }

        _core.SetVolumes([.. volumes]);
    }

    private RecoveryTracker Recover(DeviceMetadata.Loaded? state)
    {
        long deviceBytes = (long)_core.Allocator.Segments.Length * _core.Devices.SegmentBytes;
        RecoveryTracker tracker;
        string problem = state?.CheckpointProblem ?? "";
        if (state is null)
        {
            tracker = new RecoveryTracker(GftlStartKind.Formatted, 0, _options);
            _options.Log?.Invoke($"GFTL formatted {_core.Devices.Count} device(s), cluster {_clusterId}");
        }
        else if (state.Checkpoint is { } checkpoint && Checkpoint.TryLoad(checkpoint, state.LastSeq, _core, out problem))
        {
            tracker = new RecoveryTracker(GftlStartKind.Checkpoint, 0, _options);
            _options.Log?.Invoke("GFTL graceful start from the checkpoint");
        }
        else
        {
            _options.Log?.Invoke($"GFTL abrupt start: {problem}; scanning {deviceBytes >> 20} MiB on {_core.Devices.Count} device(s)");
            tracker = new RecoveryTracker(GftlStartKind.Scan, deviceBytes, _options);
            LogScanner.Rebuild(_core, tracker);
        }

        _core.Allocator.Rebuild();

        // A new generation without the checkpoint: from now on the devices change, so a crash must scan.
        SaveCatalog(_core.Volumes);
        GftlRecoveryProgress done = tracker.Finish();
        _options.Log?.Invoke($"GFTL ready in {done.Elapsed.TotalMilliseconds:F0} ms: {_core.Allocator.FreeCount} of {_core.Allocator.Segments.Length} segments free");
        if (_options.DirectIo && !_core.Devices.AllDirect)
        {
            _options.Log?.Invoke("GFTL warning: a device refused O_DIRECT; writes go through the page cache");
        }

        return tracker;
    }

    private long SumLive(int device)
    {
        long live = 0;
        foreach (Segment segment in _core.Allocator.Segments)
        {
            if (device < 0 || segment.Device == device)
            {
                live += Volatile.Read(ref segment.Live);
            }
        }

        return live;
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);
}
