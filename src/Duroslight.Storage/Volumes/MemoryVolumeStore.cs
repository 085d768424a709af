namespace Duroslight.Storage.Volumes;

/// <summary>
/// Volumes in memory, for tests and benchmarks. Thin: space is taken per 128 KiB page on first write,
/// and an optional capacity limit (shared by all volumes) turns writes needing more into OutOfSpace.
/// Nothing survives the process.
/// </summary>
public sealed class MemoryVolumeStore : IVolumeStore
{
    public const int DefaultBlockSize = VolumeRequests.DefaultBlockSize;

    private readonly object _gate = new();
    private readonly SpaceBudget _budget;
    private readonly MemoryPages _memory = new();
    private readonly List<VolumeDescriptor> _volumes = [];
    private readonly Dictionary<Guid, MemoryVolume> _instances = [];
    private bool _disposed;

    /// <param name="capacityBytes">Bytes all volumes together may allocate; null for no limit.</param>
    /// <param name="blockSize">Block size of created volumes.</param>
    public MemoryVolumeStore(long? capacityBytes = null, int blockSize = DefaultBlockSize)
    {
        VolumeRequests.ValidateBlockSize(blockSize);
        if (capacityBytes < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(capacityBytes), capacityBytes, "Capacity must not be negative.");
        }

        _budget = new SpaceBudget(capacityBytes ?? long.MaxValue);
        BlockSize = blockSize;
    }

    public int BlockSize { get; }

    /// <summary>Bytes allocated by all volumes together.</summary>
    public long AllocatedBytes => _budget.UsedBytes;

    public IReadOnlyList<VolumeDescriptor> List()
    {
        lock (_gate)
        {
            return _volumes.ToArray();
        }
    }

    public VolumeDescriptor Create(string name, long sizeBytes, Guid? id = null, IReadOnlyList<string>? hosts = null)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            VolumeDescriptor descriptor = VolumeRequests.ValidateCreate(_volumes, name, sizeBytes, id, BlockSize, hosts);
            _instances.Add(descriptor.Id, new MemoryVolume(descriptor, _budget, _memory));
            _volumes.Add(descriptor);
            return descriptor;
        }
    }

    public void Delete(Guid id)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            _volumes.RemoveAt(VolumeRequests.IndexOfExisting(_volumes, id));
            _instances.Remove(id, out MemoryVolume? volume);
            volume!.Close();
        }
    }

    public VolumeDescriptor Resize(Guid id, long newSizeBytes)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            int index = VolumeRequests.IndexOfExisting(_volumes, id);
            VolumeDescriptor resized = VolumeRequests.ValidateResize(_volumes[index], newSizeBytes);
            _instances[id].Grow(resized.SizeBytes);
            _volumes[index] = resized;
            return resized;
        }
    }

    public VolumeDescriptor SetHosts(Guid id, IReadOnlyList<string>? hosts) =>
        Update(id, d => d with { Hosts = VolumeRequests.NormalizeHosts(hosts) });

    public VolumeDescriptor SetReservation(Guid id, byte[]? record) => Update(id, d => d with { Reservation = record });

    private VolumeDescriptor Update(Guid id, Func<VolumeDescriptor, VolumeDescriptor> change)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            int index = VolumeRequests.IndexOfExisting(_volumes, id);
            _volumes[index] = change(_volumes[index]);
            return _volumes[index];
        }
    }

    public IBlockVolume Open(Guid id)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            VolumeRequests.IndexOfExisting(_volumes, id);
            return _instances[id];
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            foreach (MemoryVolume volume in _instances.Values)
            {
                volume.Close();
            }

            _instances.Clear();
            _memory.Dispose();
        }
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);
}
