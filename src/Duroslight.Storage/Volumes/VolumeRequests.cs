namespace Duroslight.Storage.Volumes;

/// <summary>Validation of control-plane requests, shared by every <see cref="IVolumeStore"/> so they refuse alike.</summary>
internal static class VolumeRequests
{
    public const int DefaultBlockSize = 4096;

    /// <summary>Checks a store-wide block size: a power of two NVMe can express (LBADS 9..).</summary>
    public static void ValidateBlockSize(int blockSize)
    {
        if (blockSize < 512 || !int.IsPow2(blockSize))
        {
            throw new ArgumentOutOfRangeException(nameof(blockSize), blockSize, "Block size must be a power of two of at least 512 bytes.");
        }
    }

    /// <summary>The descriptor a valid create request yields; throws <see cref="VolumeStoreException"/> otherwise.</summary>
    public static VolumeDescriptor ValidateCreate(List<VolumeDescriptor> volumes, string name, long sizeBytes, Guid? id, int blockSize, IReadOnlyList<string>? hosts)
    {
        if (string.IsNullOrWhiteSpace(name))
        {
            throw new VolumeStoreException("Volume name must not be empty.");
        }

        ValidateSize(sizeBytes, blockSize);
        Guid volumeId = id ?? Guid.NewGuid();
        if (volumeId == Guid.Empty)
        {
            // An all-zero NGUID/UUID means "none" to NVMe hosts.
            throw new VolumeStoreException("Volume id must not be the empty GUID.");
        }

        if (IndexOf(volumes, volumeId) >= 0)
        {
            throw new VolumeStoreException($"A volume with id {volumeId} already exists.");
        }

        return new VolumeDescriptor(volumeId, name, sizeBytes, blockSize) { Hosts = NormalizeHosts(hosts), Incarnation = Guid.NewGuid() };
    }

    /// <summary>The grown descriptor; refuses shrinking and unaligned sizes.</summary>
    public static VolumeDescriptor ValidateResize(VolumeDescriptor current, long newSizeBytes)
    {
        ValidateSize(newSizeBytes, current.BlockSize);
        if (newSizeBytes < current.SizeBytes)
        {
            throw new VolumeStoreException(
                $"Volume {current.Id} is {current.SizeBytes} bytes; shrinking it to {newSizeBytes} bytes is not supported (volumes only grow).");
        }

        return current with { SizeBytes = newSizeBytes };
    }

    /// <summary>
    /// A host list as stores keep it: null stays null (any host), otherwise sorted, distinct and free of empty names,
    /// so equal lists persist alike.
    /// </summary>
    public static string[]? NormalizeHosts(IReadOnlyList<string>? hosts)
    {
        if (hosts is null)
        {
            return null;
        }

        var set = new SortedSet<string>(StringComparer.Ordinal);
        foreach (string host in hosts)
        {
            if (string.IsNullOrWhiteSpace(host) || host.Length > 223)
            {
                throw new VolumeStoreException($"'{host}' is not a host NQN (1..223 characters).");
            }

            set.Add(host);
        }

        return [.. set];
    }

    /// <summary>The index of the volume, or throws the "no such volume" refusal.</summary>
    public static int IndexOfExisting(List<VolumeDescriptor> volumes, Guid id)
    {
        int index = IndexOf(volumes, id);
        if (index < 0)
        {
            throw new VolumeStoreException($"No volume with id {id}.");
        }

        return index;
    }

    private static int IndexOf(List<VolumeDescriptor> volumes, Guid id)
    {
        for (int i = 0; i < volumes.Count; i++)
        {
            if (volumes[i].Id == id)
            {
                return i;
            }
        }

        return -1;
    }

    private static void ValidateSize(long sizeBytes, int blockSize)
    {
        if (sizeBytes <= 0 || sizeBytes % blockSize != 0)
        {
            throw new VolumeStoreException($"Volume size must be a positive multiple of the {blockSize}-byte block size (got {sizeBytes}).");
        }
    }
}
