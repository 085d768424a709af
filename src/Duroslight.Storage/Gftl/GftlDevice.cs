using Duroslight.Storage.Interop;
using Duroslight.Storage.Volumes;
using Microsoft.Win32.SafeHandles;

namespace Duroslight.Storage.Gftl;

/// <summary>One open device of the set. Opened with O_DIRECT where the filesystem allows it.</summary>
internal sealed class GftlDevice : IDisposable
{
    /// <summary>.NET maps this undocumented FileOptions bit (Windows' FILE_FLAG_NO_BUFFERING) to O_DIRECT on Linux.</summary>
    internal const FileOptions DirectIo = (FileOptions)0x20000000;

    private GftlDevice(int index, string path, SafeFileHandle handle, long bytes, bool direct)
    {
        Index = index;
        Path = path;
        Handle = handle;
        Bytes = bytes;
        IsDirect = direct;
    }

    public int Index { get; }
    public string Path { get; }
    public SafeFileHandle Handle { get; }
    public long Bytes { get; }

    /// <summary>False where the filesystem refuses O_DIRECT (tmpfs): the page cache then sits in between.</summary>
    public bool IsDirect { get; }

    public static GftlDevice Open(int index, GftlDeviceSpec spec)
    {
        string path = System.IO.Path.GetFullPath(spec.Path);
        if (!File.Exists(path))
        {
            if (spec.SizeBytes is not { } size)
            {
                throw new VolumeStoreException($"Device {index} '{path}' does not exist (give a size, PATH:SIZE, to create it as a file).");
            }

            CreateFile(path, size);
        }

        SafeFileHandle handle;
        bool direct = true;
        try
        {
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None, DirectIo);
        }
        catch (IOException) when (IsRegularFile(path))
        {
            // EINVAL from a filesystem without O_DIRECT; a busy device (flock) fails again below with a clear message.
            direct = false;
            handle = OpenBuffered(index, path);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new VolumeStoreException($"Device {index} '{path}' cannot be opened: {e.Message}");
        }

        return new GftlDevice(index, path, handle, LibC.SizeOf(handle), direct);
    }

    public void Dispose() => Handle.Dispose();

    private static SafeFileHandle OpenBuffered(int index, string path)
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

    private static void CreateFile(string path, long size)
    {
        using SafeFileHandle created = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None);
        RandomAccess.SetLength(created, size);
        LibC.SyncOrThrow(created, path);
    }

    private static bool IsRegularFile(string path) => (File.GetAttributes(path) & FileAttributes.Device) == 0;
}
