using Duroslight.Storage.Volumes;
using Microsoft.Win32.SafeHandles;

namespace Duroslight.Storage.Tests.Volumes;

public sealed class StorageErrorsTests
{
    /// <summary>/dev/full fails every write with ENOSPC: this checks .NET really reports the errno in HResult.</summary>
    [Fact]
    public void A_full_device_maps_to_out_of_space()
    {
        using SafeFileHandle full = File.OpenHandle("/dev/full", FileMode.Open, FileAccess.Write);

        var error = Assert.ThrowsAny<IOException>(() => RandomAccess.Write(full, new byte[4096], 0));

        Assert.Equal(StorageResult.OutOfSpace, StorageErrors.FromException(error));
    }

    [Fact]
    public void Other_failures_map_to_media_error()
    {
        Assert.Equal(StorageResult.MediaError, StorageErrors.FromException(new IOException("EIO", 5)));
        Assert.Equal(StorageResult.MediaError, StorageErrors.FromException(new ObjectDisposedException("volume")));
        Assert.Equal(StorageResult.OutOfSpace, StorageErrors.FromErrno(122));
    }
}
