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
    private readonly string _catalogPath;
    private readonly string _checkpointPath;
    private readonly SafeFileHandle _lockFile;
    private readonly GftlCore _core;
    private readonly Guid _clusterId;
    private readonly RecoveryTracker _recovery;
    private bool _disposed;

    public GftlStore(GftlOptions options)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.ShardCount);
        _options = options;
        DataDirectory = Path.GetFullPath(options.DataDirectory);
        Directory.CreateDirectory(DataDirectory);
        _catalogPath = Path.Combine(DataDirectory, GftlCatalog.FileName);
        _checkpointPath = Path.Combine(DataDirectory, Checkpoint.FileName);
        _lockFile = DataDirectoryLock.Acquire(DataDirectory);
        try
        {
            GftlCatalog.Document? catalog = GftlCatalog.Load(_catalogPath);
            _clusterId = catalog?.ClusterId ?? Guid.NewGuid();
            DeviceSet devices = catalog is null
                ? DeviceSet.Format(options.Devices, _clusterId, options.NodeIndex, options.SegmentBytes, options.DirectIo)
                : DeviceSet.Open(options.Devices, _clusterId, options.DirectIo);
            _core = new GftlCore(devices, options.ShardCount);
            if (catalog is null)
            {
                GftlCatalog.Save(_catalogPath, new GftlCatalog.Document(1, _clusterId, []));
            }

            LoadVolumes(catalog?.Volumes ?? []);
            _recovery = Recover(catalog is null);
            _core.Collector = new GarbageCollector(_core);
            if (options.BackgroundGc)
            {
                _core.Collector.Start(options.GcSegmentsPerPass);
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

    public long PhysicalCapacityBytes => (long)_core.Allocator.Segments.Length * _core.Devices.SegmentBytes;

    /// <summary>Live data of all volumes (blocks shared by snapshots count once).</summary>
    public long PhysicalUsedBytes => SumLive(-1) * GftlLayout.BlockSize;

    public long DeviceUsedBytes(int device) => SumLive(device) * GftlLayout.BlockSize;

    public int FreeSegments => _core.Allocator.FreeCount;

    /// <summary>All blocks written to the devices (records of writes, trims and the collector) per block of user data.</summary>
    public double WriteAmplification => UserBytesWritten == 0 ? 1.0 : (double)DeviceBytesWritten / UserBytesWritten;

    /// <summary>Data bytes of completed user writes since start.</summary>
    public long UserBytesWritten
    {
        get
        {
            long blocks = 0;
            foreach (Partition partition in _core.Partitions)
            {
                blocks += partition.UserBlocks;
            }

            return blocks * GftlLayout.BlockSize;
        }
    }

    /// <summary>Bytes written to the devices since start: user records (headers included), trims and the collector's copies.</summary>
    public long DeviceBytesWritten
    {
        get
        {
            long blocks = _core.Collector.RecordBlocks;
            foreach (Partition partition in _core.Partitions)
            {
                blocks += partition.RecordBlocks;
            }

            return blocks * GftlLayout.BlockSize;
        }
    }

    /// <summary>The last sequence number handed out (tests: recovery must never move it back).</summary>
    internal long LastSeq => _core.LastSeq;

    public long GcRelocatedBytes => _core.Collector.RelocatedBlocks * GftlLayout.BlockSize;

    /// <summary>Bytes rewritten contiguously because reads found them fragmented (part of the device bytes written).</summary>
    public long RepackedBytes
    {
        get
        {
            long blocks = 0;
            foreach (Partition partition in _core.Partitions)
            {
                blocks += partition.RepackedBlocks;
            }

            return blocks * GftlLayout.BlockSize;
        }
    }

    public long GcSegmentsCleaned => _core.Collector.SegmentsCleaned;

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

    public VolumeDescriptor Create(string name, long sizeBytes, Guid? id = null)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            VolumeDescriptor descriptor = VolumeRequests.ValidateCreate([.. List()], name, sizeBytes, id, GftlLayout.BlockSize);
            if (_core.Find(descriptor.Id) is not null)
            {
                throw new VolumeStoreException($"Id {descriptor.Id} belongs to a deleted volume that snapshots or clones still read from.");
            }

            long seq = _core.NextSeq();
            var entry = new GftlCatalog.Entry(descriptor.Id, name, sizeBytes, false, null, 0, seq, false);
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
                    Checkpoint.Save(_checkpointPath, _clusterId, _core);
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

            if (!_core.TryQuiesce(TimeSpan.FromSeconds(5)))
            {
                throw new VolumeStoreException($"Volume {sourceId} stayed busy: could not find a moment without writes in flight to snapshot it.");
            }

            try
            {
                long seq = _core.NextSeq();
                var entry = new GftlCatalog.Entry(Guid.NewGuid(), name, source.SizeBytes, readOnly, source.Id, seq, seq, false);
                var child = new GftlVolume(_core, entry, source);
                SaveCatalog([.. _core.Volumes, child]);
                CopyMaps(source, child);
                source.Children = [.. source.Children, child];
                _core.SetVolumes([.. _core.Volumes, child]);
                return entry.Descriptor;
            }
            finally
            {
                _core.EndQuiesce();
            }
        }
    }

    /// <summary>
    /// The child gets its own map entries pointing at the same blocks (the data is shared, copy-on-write: the next
    /// write to either side goes to a new location). Runs with every partition locked and nothing in flight.
    /// </summary>
    private void CopyMaps(GftlVolume source, GftlVolume child)
    {
        foreach (ShardMap map in source.Maps)
        {
            foreach ((long chunk, ChunkBlocks blocks) in map.Chunks)
            {
                for (int i = 0; i < blocks.Entries.Length; i++)
                {
                    MapEntry entry = blocks.Entries[i];
                    if (entry.Location != GftlLayout.Unmapped)
                    {
                        _core.Install(child, (chunk * GftlLayout.BlocksPerChunk) + i, entry.Location, entry.Seq);
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
        var entries = new List<GftlCatalog.Entry>(volumes.Length);
        foreach (GftlVolume volume in volumes)
        {
            entries.Add(volume.Entry);
        }

        GftlCatalog.Save(_catalogPath, new GftlCatalog.Document(1, _clusterId, entries));
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
                throw new VolumeStoreException($"GFTL catalog '{_catalogPath}': volume {entry.Id} names parent {entry.ParentId}, which is not listed before it.");
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

    private RecoveryTracker Recover(bool formatted)
    {
        long deviceBytes = (long)_core.Allocator.Segments.Length * _core.Devices.SegmentBytes;
        RecoveryTracker tracker;
        if (formatted)
        {
            tracker = new RecoveryTracker(GftlStartKind.Formatted, 0, _options);
            _options.Log?.Invoke($"GFTL formatted {_core.Devices.Count} device(s), cluster {_clusterId}");
        }
        else if (Checkpoint.TryLoad(_checkpointPath, _clusterId, _core, out string problem))
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
        Checkpoint.Invalidate(_checkpointPath);
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
