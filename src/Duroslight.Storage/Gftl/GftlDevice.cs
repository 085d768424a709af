using Duroslight.Core.Interop;
using Duroslight.Storage.Volumes;
using Microsoft.Win32.SafeHandles;

namespace Duroslight.Storage.Gftl;

/// <summary>One open device of the set, opened with O_DIRECT (where the filesystem allows it) and an exclusive lock.</summary>
internal sealed class GftlDevice(int index, string path, SafeFileHandle handle, long bytes, bool direct) : IDisposable
{
    /// <summary>Errors and stalls of this device, counted under every I/O (<see cref="HealthCheckedBlockIo"/>).</summary>
    public DeviceHealth Health { get; } = DeviceHealth.Register(handle, path, "gftl");

    public int Index => index;
    public string Path => path;
    public SafeFileHandle Handle => handle;
    public long Bytes => bytes;

    /// <summary>False where the filesystem refuses O_DIRECT (tmpfs) or it was turned off: the page cache sits in between.</summary>
    public bool IsDirect => direct;

    public static GftlDevice Open(int index, GftlDeviceSpec spec, bool direct = true)
    {
        string path = System.IO.Path.GetFullPath(spec.Path);
        if (!File.Exists(path))
        {
            if (spec.SizeBytes is not { } size)
            {
                throw new VolumeStoreException($"Device {index} '{path}' does not exist (give a size, PATH:SIZE, to create it as a file).");
            }

            CreateFile(path, size, spec.Thin);
        }

        // FileShare.None takes an exclusive flock, so a second store cannot open the device. A filesystem without
        // O_DIRECT (tmpfs) refuses it with EINVAL: the device then goes through the page cache rather than be refused.
        SafeFileHandle handle = OpenLocked(index, path);
        direct = direct && LibC.EnableDirectIo(handle) == 0;
        return new GftlDevice(index, path, handle, LibC.SizeOf(handle), direct);
    }

    public void Dispose()
    {
        DeviceHealth.Unregister(Handle);
        Handle.Dispose();
    }

    private static SafeFileHandle OpenLocked(int index, string path)
    {
        try
        {
            return File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e)
        {
            throw new VolumeStoreException($"Device {index} '{path}' cannot be opened (in use by another store?): {e.Message}");
        }
    }

    /// <summary>
    /// Creates the device file. Unless <paramref name="thin"/>, its blocks are allocated up front (fallocate): in a
    /// sparse file every first write of a block makes the filesystem allocate it, and the log writes each block of a
    /// new segment for the first time (128 KiB O_DIRECT writes at QD 8 on this machine's ext4: sparse 650-1000 MiB/s,
    /// allocated 840-1300, overwriting 1130-2300; bench/README.md). A filesystem that refuses gets a sparse file.
    /// </summary>
    private static void CreateFile(string path, long size, bool thin)
    {
        using SafeFileHandle created = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None);
        if (thin || LibC.Fallocate(created, 0, 0, size) != 0)
        {
            RandomAccess.SetLength(created, size);
        }

        LibC.SyncOrThrow(created, path);
    }
}
