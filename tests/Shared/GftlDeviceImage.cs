using System.Buffers.Binary;

namespace Duroslight.Tests.Shared;

/// <summary>
/// Damages the graceful-stop checkpoint in a GFTL's device metadata, as a crash in the middle of writing it would.
/// Reads the on-device layout from the raw bytes (superblock: metadata offset at 56, slot size at 64; slot header:
/// generation at 16, catalog length at 40, checkpoint length at 56; catalog and checkpoint 4 KiB-aligned after the
/// header), so it needs no access to the store's internals. Shared by the storage and the process tests.
/// </summary>
internal static class GftlDeviceImage
{
    private const int Block = 4096;
    private const ulong SlotMagic = 0x3154_454D_474C_5344; // "DSLGMET1"

    /// <summary>Flips a byte in the middle of the newest slot's checkpoint on every mirror (devices 0 and 1).</summary>
    public static void TearCheckpoint(params string[] devicePaths) => Damage(devicePaths, catalog: false);

    /// <summary>Flips a byte of the newest slot's catalog on every mirror: as if the last metadata write was torn.</summary>
    public static void TearNewestCatalog(params string[] devicePaths) => Damage(devicePaths, catalog: true);

    private static void Damage(string[] devicePaths, bool catalog)
    {
        foreach (string path in devicePaths.Take(2))
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
            long newest = NewestSlot(file);
            byte[] newestHeader = ReadAt(file, newest, Block);
            long catalogLength = BinaryPrimitives.ReadInt64LittleEndian(newestHeader.AsSpan(40));
            long checkpointLength = BinaryPrimitives.ReadInt64LittleEndian(newestHeader.AsSpan(56));
            if (!catalog && checkpointLength == 0)
            {
                throw new InvalidOperationException($"{path}: the newest metadata generation has no checkpoint to tear");
            }

            long at = catalog
                ? newest + Block + (catalogLength / 2)
                : newest + Block + ((catalogLength + Block - 1) & ~(long)(Block - 1)) + (checkpointLength / 2);
            byte[] one = ReadAt(file, at, 1);
            one[0] ^= 0x5A;
            file.Position = at;
            file.Write(one);
            file.Flush(flushToDisk: true);
        }
    }

    /// <summary>The byte offset of the slot holding the newest generation.</summary>
    private static long NewestSlot(FileStream file)
    {
        byte[] superblock = ReadAt(file, 0, Block);
        long metadata = BinaryPrimitives.ReadInt64LittleEndian(superblock.AsSpan(56));
        long slotBytes = BinaryPrimitives.ReadInt64LittleEndian(superblock.AsSpan(64));
        long newest = -1, newestGeneration = -1;
        for (int slot = 0; slot < 2; slot++)
        {
            byte[] header = ReadAt(file, metadata + (slot * slotBytes), Block);
            long generation = BinaryPrimitives.ReadInt64LittleEndian(header.AsSpan(16));
            if (BinaryPrimitives.ReadUInt64LittleEndian(header) == SlotMagic && generation > newestGeneration)
            {
                (newest, newestGeneration) = (metadata + (slot * slotBytes), generation);
            }
        }

        return newest >= 0 ? newest : throw new InvalidOperationException($"{file.Name}: no metadata slot");
    }

    private static byte[] ReadAt(FileStream file, long offset, int length)
    {
        var bytes = new byte[length];
        file.Position = offset;
        file.ReadExactly(bytes);
        return bytes;
    }
}
