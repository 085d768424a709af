using Microsoft.Win32.SafeHandles;

namespace Duroslight.Storage.Volumes;

/// <summary>One store per data directory: two would each rewrite the catalog and lose the other's volumes.</summary>
internal static class DataDirectoryLock
{
    /// <summary>.NET takes an exclusive flock for FileShare.None, so a second opener fails here.</summary>
    public static SafeFileHandle Acquire(string dataDirectory)
    {
        string path = Path.Combine(dataDirectory, "store.lock");
        try
        {
            return File.OpenHandle(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e)
        {
            throw new VolumeStoreException($"Data directory '{dataDirectory}' is in use by another volume store ({e.Message}).");
        }
    }
}
