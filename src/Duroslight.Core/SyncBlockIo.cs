using Microsoft.Win32.SafeHandles;

namespace Duroslight.Core;

/// <summary>pread/pwrite/fdatasync on the calling thread: the fallback off the reactor's shards.</summary>
public sealed class SyncBlockIo : IBlockIo
{
    public static readonly SyncBlockIo Instance = new();

    private SyncBlockIo()
    {
    }

    public ValueTask<int> ReadAsync(SafeFileHandle file, Memory<byte> buffer, long offset)
    {
        try
        {
            return new(RandomAccess.Read(file, buffer.Span, offset));
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            return new(Errno(e));
        }
    }

    public ValueTask<int> WriteAsync(SafeFileHandle file, ReadOnlyMemory<byte> buffer, long offset)
    {
        try
        {
            RandomAccess.Write(file, buffer.Span, offset);
            return new(buffer.Length);
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException)
        {
            return new(Errno(e));
        }
    }

    public ValueTask<int> SyncAsync(SafeFileHandle file) => new(-Interop.LibC.DataSync(file));

    /// <summary>A negative errno: .NET puts the raw errno in HResult on Unix; a closed handle is EBADF.</summary>
    private static int Errno(Exception e) => e switch
    {
        ObjectDisposedException => -Interop.LibC.EBADF,
        _ when e.HResult > 0 => -e.HResult,
        _ => -Interop.LibC.EIO,
    };
}
