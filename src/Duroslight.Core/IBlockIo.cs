using Microsoft.Win32.SafeHandles;

namespace Duroslight.Core;

/// <summary>
/// Positional I/O on an open file or block device. Results are bytes transferred, or a negative errno: device
/// errors are values on the I/O path, not exceptions. Buffers handed to a ring-backed implementation stay pinned
/// until the operation completes, so they should be native or pinned (<see cref="NativeBuffer"/>); files opened
/// with O_DIRECT also need them 4 KiB aligned.
/// </summary>
public interface IBlockIo
{
    ValueTask<int> ReadAsync(SafeFileHandle file, Memory<byte> buffer, long offset);

    ValueTask<int> WriteAsync(SafeFileHandle file, ReadOnlyMemory<byte> buffer, long offset);

    /// <summary>fdatasync: every completed write to <paramref name="file"/> is durable. 0 or a negative errno.</summary>
    ValueTask<int> SyncAsync(SafeFileHandle file);
}

/// <summary>
/// The <see cref="IBlockIo"/> of the calling thread. Each reactor shard installs its ring-backed implementation on
/// its own thread, so storage code running a chunk on its owning shard submits to that shard's ring without knowing
/// about shards. Any other thread (control plane, start-up, tests) gets the synchronous fallback.
/// </summary>
public static class BlockIo
{
    [ThreadStatic]
    private static IBlockIo? t_current;

    private static IBlockIo s_fallback = new HealthCheckedBlockIo(SyncBlockIo.Instance);
    private static Func<IBlockIo, IBlockIo>? s_wrap;

    public static IBlockIo Current => t_current ?? s_fallback;

    /// <summary>The calling thread has no I/O of its own (not a reactor shard): <see cref="Current"/> is the fallback.</summary>
    public static bool IsFallback => t_current is null;

    /// <summary>Installs <paramref name="io"/> for the calling thread (null restores the fallback).</summary>
    public static void InstallForCurrentThread(IBlockIo? io) => t_current = io is null ? null : Instrumented(io);

    /// <summary>
    /// <paramref name="io"/> as the process uses it: under the device-health check (<see cref="HealthCheckedBlockIo"/>,
    /// the one place device errors and stalls are counted), and wrapped when <see cref="WrapAll"/> asked for it.
    /// </summary>
    public static IBlockIo Instrumented(IBlockIo io) => new HealthCheckedBlockIo(s_wrap is null ? io : s_wrap(io));

    /// <summary>
    /// Test instrumentation (Storage's PowerLossShadowBlockIo): wraps the fallback, every implementation installed
    /// from now on and every <see cref="Instrumented"/> one. Call before any thread installs its own.
    /// </summary>
    public static void WrapAll(Func<IBlockIo, IBlockIo> wrap)
    {
        s_wrap = wrap;
        s_fallback = new HealthCheckedBlockIo(wrap(SyncBlockIo.Instance));
    }

    /// <summary>
    /// Turns on O_DIRECT for an open file or device (.NET's File.OpenHandle cannot). 0, or the errno: EINVAL where
    /// the filesystem cannot do direct I/O (tmpfs).
    /// </summary>
    public static int EnableDirectIo(SafeFileHandle file) => Interop.LibC.EnableDirectIo(file);
}
