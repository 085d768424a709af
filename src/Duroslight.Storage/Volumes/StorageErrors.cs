using Duroslight.Core.Interop;

namespace Duroslight.Storage.Volumes;

/// <summary>Maps operating-system failures on the I/O path to <see cref="StorageResult"/> values.</summary>
internal static class StorageErrors
{
    /// <summary>Thin provisioning ran dry (disk or quota full); a failed device; anything else is a media error.</summary>
    public static StorageResult FromErrno(int errno) => errno switch
    {
        LibC.ENOSPC or LibC.EDQUOT => StorageResult.OutOfSpace,
        LibC.ENODEV => StorageResult.DeviceFailed, // HealthCheckedBlockIo's refusal: the device is out of service
        _ => StorageResult.MediaError,
    };

    /// <summary>
    /// On Unix, .NET puts the raw errno in <see cref="Exception.HResult"/> of the IOException it throws.
    /// A closed handle (volume deleted under in-flight I/O) shows up as ObjectDisposedException.
    /// </summary>
    public static StorageResult FromException(Exception exception) =>
        exception is IOException io ? FromErrno(io.HResult) : StorageResult.MediaError;

    /// <summary>The exceptions the I/O path turns into results; anything else is a bug and propagates.</summary>
    public static bool IsIoFailure(Exception exception) =>
        exception is IOException or ObjectDisposedException or UnauthorizedAccessException;
}
