using System.Runtime.CompilerServices;
using Duroslight.Storage.Devices;
using Duroslight.Core.Interop;
using Microsoft.Win32.SafeHandles;

namespace Duroslight.Storage.Volumes;

/// <summary>
/// A volume stored as one sparse file: unwritten and deallocated ranges are holes that read as zeros
/// and take no space. Owned by <see cref="SparseFileVolumeStore"/>, which closes it; a caller's
/// <see cref="Dispose"/> is a no-op so a namespace going away cannot close a volume others still use.
/// </summary>
public sealed class SparseFileVolume : IBlockVolume
{
    // Fallback for filesystems that can neither punch holes nor zero ranges: zeros are written from here
    // (aligned native memory, so it also works with O_DIRECT). Lives as long as the process.
    private static readonly NativeBuffer s_zeros = new(1024 * 1024);

    private readonly SafeFileHandle _handle;
    private long _sizeBytes;
    private volatile bool _closed;

    private SparseFileVolume(VolumeDescriptor descriptor, string path, SafeFileHandle handle)
    {
        Id = descriptor.Id;
        BlockSize = descriptor.BlockSize;
        FilePath = path;
        _sizeBytes = descriptor.SizeBytes;
        _handle = handle;
        Health = DeviceHealth.Register(handle, path, "sparse");
    }

    /// <summary>The file as a device: its errors and stalls are counted under every I/O (<see cref="HealthCheckedBlockIo"/>).</summary>
    public DeviceHealth Health { get; }

    public Guid Id { get; }

    public int BlockSize { get; }

    public long SizeBytes => Volatile.Read(ref _sizeBytes);

    /// <summary>The backing file.</summary>
    public string FilePath { get; }

    /// <summary>The file is open with O_DIRECT: I/O bypasses the page cache and needs 4 KiB-aligned buffers.</summary>
    public bool DirectIo { get; private set; }

    /// <summary>
    /// st_blocks * 512 from statx on the open handle: one syscall, counts delayed allocations, ignores holes.
    /// Reports the full size (NUSE = NSZE, "no thin provisioning information") when statx is unavailable.
    /// </summary>
    public long AllocatedBytes
    {
        get
        {
            if (_closed)
            {
                return 0;
            }

            return LibC.TryGetAllocatedBytes(_handle, out long allocated) ? allocated : SizeBytes;
        }
    }

    public ValueTask<StorageResult> ReadAsync(long offset, Memory<byte> destination) => ReadAsync(BlockIo.Current, offset, destination);

    public ValueTask<StorageResult> WriteAsync(long offset, ReadOnlyMemory<byte> source) => WriteAsync(BlockIo.Current, offset, source);

    /// <summary>Punches a hole, so zeroed ranges stay sparse.</summary>
    public ValueTask<StorageResult> WriteZeroesAsync(long offset, long length) => ZeroRangeAsync(BlockIo.Current, offset, length);

    /// <summary>Punches a hole; the range reads as zeros afterwards.</summary>
    public ValueTask<StorageResult> DeallocateAsync(long offset, long length) => ZeroRangeAsync(BlockIo.Current, offset, length);

    public ValueTask<StorageResult> FlushAsync() => FlushAsync(BlockIo.Current);

    /// <summary>The shard's I/O is its ring: reads, writes and fdatasync go through it explicitly.</summary>
    public IVolumeChannel OpenChannel(StorageShard shard) => new Channel(this, shard.Io);

    /// <summary>No-op: the store owns the volume and closes it on Delete or with itself.</summary>
    public void Dispose()
    {
    }

    /// <summary>Creates (or truncates an orphan of) the backing file at full size, all hole, and makes it durable.</summary>
    internal static SparseFileVolume Create(string path, VolumeDescriptor descriptor, bool directIo)
    {
        SafeFileHandle handle = File.OpenHandle(path, FileMode.Create, FileAccess.ReadWrite, FileShare.None);
        try
        {
            RandomAccess.SetLength(handle, descriptor.SizeBytes);
            LibC.SyncOrThrow(handle, path);
            return new SparseFileVolume(descriptor, path, handle) { DirectIo = directIo && LibC.EnableDirectIo(handle) == 0 };
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>Opens an existing backing file; a file shorter than the catalog says (crash mid-grow) is extended.</summary>
    internal static SparseFileVolume OpenExisting(string path, VolumeDescriptor descriptor, bool directIo)
    {
        if (!File.Exists(path))
        {
            throw new VolumeStoreException($"Data file '{path}' of volume {descriptor.Id} is missing.");
        }

        SafeFileHandle handle = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None);
        try
        {
            if (RandomAccess.GetLength(handle) < descriptor.SizeBytes)
            {
                RandomAccess.SetLength(handle, descriptor.SizeBytes);
                LibC.SyncOrThrow(handle, path);
            }

            return new SparseFileVolume(descriptor, path, handle) { DirectIo = directIo && LibC.EnableDirectIo(handle) == 0 };
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>Extends the file (as a hole) before publishing the new size, so no I/O can land past its end.</summary>
    internal void Grow(long newSizeBytes)
    {
        RandomAccess.SetLength(_handle, newSizeBytes);
        LibC.SyncOrThrow(_handle, FilePath);
        Volatile.Write(ref _sizeBytes, newSizeBytes);
    }

    /// <summary>Closes the file; in-flight I/O finishes (the handle is ref-counted), later I/O gets MediaError.</summary>
    internal void Close()
    {
        _closed = true;
        DeviceHealth.Unregister(_handle);
        _handle.Dispose();
    }

    private ValueTask<StorageResult> ReadAsync(IBlockIo io, long offset, Memory<byte> destination)
    {
        StorageResult check = CheckRange(offset, destination.Length);
        return check == StorageResult.Ok ? BlockTransfer.ReadAsync(io, _handle, destination, offset) : new(check);
    }

    private ValueTask<StorageResult> WriteAsync(IBlockIo io, long offset, ReadOnlyMemory<byte> source)
    {
        StorageResult check = CheckRange(offset, source.Length);
        return check == StorageResult.Ok ? BlockTransfer.WriteAsync(io, _handle, source, offset) : new(check);
    }

    /// <summary>fdatasync (through a shard's ring it can take milliseconds; the shard keeps serving meanwhile).</summary>
    private ValueTask<StorageResult> FlushAsync(IBlockIo io) =>
        _closed ? new(StorageResult.MediaError) : Health.Failed ? new(StorageResult.DeviceFailed) : FlushCoreAsync(io);

    private StorageResult CheckRange(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset > SizeBytes - length)
        {
            return StorageResult.OutOfRange;
        }

        if (Health.Failed) return StorageResult.DeviceFailed;
        return _closed ? StorageResult.MediaError : StorageResult.Ok;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<StorageResult> FlushCoreAsync(IBlockIo io)
    {
        int result = await io.SyncAsync(_handle).ConfigureAwait(false);
        return result == 0 ? StorageResult.Ok : StorageErrors.FromErrno(-result);
    }

    private ValueTask<StorageResult> ZeroRangeAsync(IBlockIo io, long offset, long length)
    {
        StorageResult check = CheckRange(offset, length);
        if (check != StorageResult.Ok || length == 0)
        {
            return new(check);
        }

        int errno = Fallocate(LibC.FALLOC_FL_PUNCH_HOLE | LibC.FALLOC_FL_KEEP_SIZE, offset, length);
        if (errno == LibC.EOPNOTSUPP)
        {
            // No hole punching here (e.g. some network filesystems): zero the range in place instead.
            errno = Fallocate(LibC.FALLOC_FL_ZERO_RANGE | LibC.FALLOC_FL_KEEP_SIZE, offset, length);
        }

        if (errno == LibC.EOPNOTSUPP)
        {
            return WriteZeroBuffersAsync(io, offset, length);
        }

        return new(errno == 0 ? StorageResult.Ok : StorageErrors.FromErrno(errno));
    }

    private int Fallocate(int mode, long offset, long length)
    {
        try
        {
            return LibC.Fallocate(_handle, mode, offset, length);
        }
        catch (ObjectDisposedException)
        {
            // Closed by Delete between the range check and the call.
            return -1;
        }
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<StorageResult> WriteZeroBuffersAsync(IBlockIo io, long offset, long length)
    {
        long end = offset + length;
        for (long position = offset; position < end; position += s_zeros.Length)
        {
            int count = (int)Math.Min(s_zeros.Length, end - position);
            StorageResult result = await BlockTransfer.WriteAsync(io, _handle, s_zeros.Memory[..count], position).ConfigureAwait(false);
            if (result != StorageResult.Ok)
            {
                return result;
            }
        }

        return StorageResult.Ok;
    }

    /// <summary>The volume on one shard: the same operations, through that shard's device I/O.</summary>
    private sealed class Channel(SparseFileVolume volume, IBlockIo io) : IVolumeChannel
    {
        public ValueTask<StorageResult> ReadAsync(long offset, Memory<byte> destination) => volume.ReadAsync(io, offset, destination);

        public ValueTask<StorageResult> WriteAsync(long offset, ReadOnlyMemory<byte> source) => volume.WriteAsync(io, offset, source);

        public ValueTask<StorageResult> WriteZeroesAsync(long offset, long length) => volume.ZeroRangeAsync(io, offset, length);

        public ValueTask<StorageResult> DeallocateAsync(long offset, long length) => volume.ZeroRangeAsync(io, offset, length);

        public ValueTask<StorageResult> FlushAsync() => volume.FlushAsync(io);
    }
}
