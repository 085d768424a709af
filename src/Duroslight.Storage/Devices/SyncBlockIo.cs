using Microsoft.Win32.SafeHandles;

namespace Duroslight.Storage.Devices;

/// <summary>pread/pwrite/fdatasync on the calling thread: the fallback off the reactor's shards.</summary>
public sealed class SyncBlockIo : IBlockIo
{
    public static readonly SyncBlockIo Instance = new();

    private SyncBlockIo()
    {
    }

    public ValueTask<int> ReadAsync(SafeFileHandle file, Memory<byte> buffer, long offset) =>
        new(Run(() => RandomAccess.Read(file, buffer.Span, offset)));

    public ValueTask<int> WriteAsync(SafeFileHandle file, ReadOnlyMemory<byte> buffer, long offset) =>
        new(Run(() =>
        {
            RandomAccess.Write(file, buffer.Span, offset);
            return buffer.Length;
        }));

    public ValueTask<int> SyncAsync(SafeFileHandle file) => new(-Interop.LibC.DataSync(file));

    private static int Run(Func<int> io)
    {
        try
        {
            return io();
        }
        catch (IOException e)
        {
            // .NET puts the raw errno in HResult on Unix.
            return e.HResult > 0 ? -e.HResult : -Interop.LibC.EIO;
        }
        catch (ObjectDisposedException)
        {
            return -Interop.LibC.EBADF;
        }
    }
}
