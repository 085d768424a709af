using Duroslight.Core.Interop;
using Microsoft.Win32.SafeHandles;

namespace Duroslight.Storage.Volumes;

/// <summary>
/// Volumes as sparse files under a data directory: <c>volumes/&lt;uuid&gt;.vol</c> holds the bytes,
/// <c>volumes.json</c> the catalog. One store per directory (enforced by an exclusive lock file).
/// Control-plane methods serialize on one lock; I/O goes straight to the volumes.
/// </summary>
public sealed class SparseFileVolumeStore : IVolumeStore
{
    public const int DefaultBlockSize = VolumeRequests.DefaultBlockSize;

    private readonly object _gate = new();
    private readonly string _volumesDirectory;
    private readonly string _catalogPath;
    private readonly SafeFileHandle _lockFile;
    private readonly List<VolumeDescriptor> _volumes;
    private readonly Dictionary<Guid, SparseFileVolume> _open = [];
    private readonly bool _directIo;
    private bool _disposed;

    /// <param name="dataDirectory">Created if missing.</param>
    /// <param name="blockSize">Block size of volumes created from now on; existing volumes keep theirs.</param>
    /// <param name="directIo">Open volume files with O_DIRECT where the filesystem allows it (callers then pass 4 KiB-aligned buffers).</param>
    public SparseFileVolumeStore(string dataDirectory, int blockSize = DefaultBlockSize, bool directIo = false)
    {
        _directIo = directIo;
        VolumeRequests.ValidateBlockSize(blockSize);
        DataDirectory = Path.GetFullPath(dataDirectory);
        BlockSize = blockSize;
        _volumesDirectory = Path.Combine(DataDirectory, "volumes");
        _catalogPath = Path.Combine(DataDirectory, "volumes.json");
        Directory.CreateDirectory(_volumesDirectory);
        _lockFile = DataDirectoryLock.Acquire(DataDirectory);
        try
        {
            VolumeCatalog.DeleteLeftovers(_catalogPath);
            _volumes = VolumeCatalog.Load(_catalogPath);
        }
        catch
        {
            _lockFile.Dispose();
            throw;
        }
    }

    public string DataDirectory { get; }

    public int BlockSize { get; }

    /// <summary>Each open volume's file is a device of its own: one volume's failure leaves the others in service.</summary>
    public IReadOnlyList<DeviceHealth> Devices
    {
        get
        {
            lock (_gate)
            {
                var list = new List<DeviceHealth>(_open.Count);
                foreach (SparseFileVolume volume in _open.Values) list.Add(volume.Health);
                return list;
            }
        }
    }

    public IReadOnlyList<VolumeDescriptor> List()
    {
        lock (_gate)
        {
            return _volumes.ToArray();
        }
    }

    /// <summary>Creates the file first, then records it: a crash in between leaves only an orphan file.</summary>
    public VolumeDescriptor Create(string name, long sizeBytes, Guid? id = null, IReadOnlyList<string>? hosts = null)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            VolumeDescriptor descriptor = VolumeRequests.ValidateCreate(_volumes, name, sizeBytes, id, BlockSize, hosts);
            string path = VolumePath(descriptor.Id);
            SparseFileVolume volume = SparseFileVolume.Create(path, descriptor, _directIo);
            try
            {
                LibC.SyncDirectoryOrThrow(_volumesDirectory);
                _volumes.Add(descriptor);
                VolumeCatalog.Save(_catalogPath, _volumes);
            }
            catch
            {
                _volumes.Remove(descriptor);
                volume.Close();
                File.Delete(path);
                throw;
            }

            _open.Add(descriptor.Id, volume);
            return descriptor;
        }
    }

    /// <summary>Forgets the volume first, then removes its file: a crash in between leaves only an orphan file.</summary>
    public void Delete(Guid id)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            int index = VolumeRequests.IndexOfExisting(_volumes, id);
            VolumeDescriptor removed = _volumes[index];
            _volumes.RemoveAt(index);
            try
            {
                VolumeCatalog.Save(_catalogPath, _volumes);
            }
            catch
            {
                _volumes.Insert(index, removed);
                throw;
            }

            if (_open.Remove(id, out SparseFileVolume? volume))
            {
                volume.Close();
            }

            File.Delete(VolumePath(id));
            LibC.SyncDirectoryOrThrow(_volumesDirectory);
        }
    }

    /// <summary>Grows the file first, then records the size: a crash in between leaves a longer file, which is harmless.</summary>
    public VolumeDescriptor Resize(Guid id, long newSizeBytes)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            int index = VolumeRequests.IndexOfExisting(_volumes, id);
            VolumeDescriptor resized = VolumeRequests.ValidateResize(_volumes[index], newSizeBytes);
            if (resized.SizeBytes == _volumes[index].SizeBytes)
            {
                return resized;
            }

            OpenLocked(index).Grow(resized.SizeBytes);
            VolumeDescriptor previous = _volumes[index];
            _volumes[index] = resized;
            try
            {
                VolumeCatalog.Save(_catalogPath, _volumes);
            }
            catch
            {
                _volumes[index] = previous;
                throw;
            }

            return resized;
        }
    }

    public VolumeDescriptor SetHosts(Guid id, IReadOnlyList<string>? hosts) =>
        Update(id, d => d with { Hosts = VolumeRequests.NormalizeHosts(hosts) });

    public VolumeDescriptor SetReservation(Guid id, byte[]? record) => Update(id, d => d with { Reservation = record });

    /// <summary>Changes a descriptor and saves the catalog; a failed save leaves the descriptor as it was.</summary>
    private VolumeDescriptor Update(Guid id, Func<VolumeDescriptor, VolumeDescriptor> change)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            int index = VolumeRequests.IndexOfExisting(_volumes, id);
            VolumeDescriptor previous = _volumes[index];
            _volumes[index] = change(previous);
            try
            {
                VolumeCatalog.Save(_catalogPath, _volumes);
            }
            catch
            {
                _volumes[index] = previous;
                throw;
            }

            return _volumes[index];
        }
    }

    public IBlockVolume Open(Guid id)
    {
        lock (_gate)
        {
            ThrowIfDisposed();
            return OpenLocked(VolumeRequests.IndexOfExisting(_volumes, id));
        }
    }

    /// <summary>Closes every volume and releases the data directory.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            foreach (SparseFileVolume volume in _open.Values)
            {
                volume.Close();
            }

            _open.Clear();
            _lockFile.Dispose();
        }
    }

    private SparseFileVolume OpenLocked(int index)
    {
        VolumeDescriptor descriptor = _volumes[index];
        if (!_open.TryGetValue(descriptor.Id, out SparseFileVolume? volume))
        {
            volume = SparseFileVolume.OpenExisting(VolumePath(descriptor.Id), descriptor, _directIo);
            _open.Add(descriptor.Id, volume);
        }

        return volume;
    }

    private string VolumePath(Guid id) => Path.Combine(_volumesDirectory, id.ToString("D") + ".vol");

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);
}
