using System.Buffers.Binary;
using Duroslight.Core;
using Duroslight.Storage.Gftl;
using Duroslight.Storage.Volumes;

namespace Duroslight.Fuzz;

/// <summary>
/// The second fuzz target: what a GFTL start reads from its devices (superblock, metadata slots with the catalog
/// JSON and the checkpoint, and the log's self-describing records that the scan parses). A pristine two-device image
/// (two volumes, a snapshot, writes, trims; a graceful stop left a checkpoint) is made once per process; an input
/// patches it and the store is started from the patched copy, then every volume is read whole and written once.
///
/// Everything on the devices is checksummed, so random bytes would only ever test the checksums. The input's first
/// byte therefore says which checksums the harness recomputes after patching, so the parsers behind them are reached
/// as a device (or a host's data that looks like a header) could present them:
/// bit 0 record headers (every block starting with the record magic, keyed with the set's log key as the store does), bit 1 also each extent's data CRC,
/// bit 2 the metadata slot headers (catalog and checkpoint CRCs, then the header's), bit 3 the superblocks,
/// bit 4 tear the checkpoint instead (the start scans the log rather than loading it).
/// The rest is patches of [region (1 byte), offset in region (2 bytes LE), length (1 byte), bytes]; regions are the
/// places worth hitting (<see cref="Regions"/>). The harness mirrors the on-device offsets of RecordFormat,
/// DeviceMetadata and Superblock on purpose: it is the adversary, and must not trust the code under test to seal.
///
/// A start may refuse the devices (<see cref="VolumeStoreException"/>, or the scan's InvalidDataException for a
/// record format it does not know): that is a clean outcome. Any other exception, a start that succeeded but cannot
/// read or write a volume, or a hang, is a finding.
/// </summary>
public static class GftlImage
{
    private const int Block = 4096;
    private const long MiB = 1 << 20;
    private const long DeviceBytes = 8 * MiB;
    private const ulong RecordMagic = 0x3143_4552_474C_5344; // "DSLGREC1"
    private const ulong SlotMagic = 0x3154_454D_474C_5344;   // "DSLGMET1"
    private const ulong SuperMagic = 0x314C_5446_474C_5344;  // "DSLGFTL1"

    private static readonly Lazy<Pristine> Image = new(Pristine.Make);

    /// <summary>The regions inputs address: (device, byte offset, length). Listed by <c>regions</c> for seed making.</summary>
    public static IReadOnlyList<Region> Regions => Image.Value.Regions;

    public static void Run(ReadOnlySpan<byte> input)
    {
        if (input.IsEmpty) return;
        Pristine pristine = Image.Value;
        byte flags = input[0];
        byte[][] devices = [(byte[])pristine.Devices[0].Clone(), (byte[])pristine.Devices[1].Clone()];
        ApplyPatches(devices, input[1..], pristine.Regions);
        if ((flags & 1) != 0) ResealRecords(devices, (flags & 2) != 0, pristine.SegmentBytes);
        if ((flags & 4) != 0) ResealSlots(devices, pristine.MetadataOffset, pristine.SlotBytes);
        if ((flags & 8) != 0) ResealSuperblocks(devices);
        if ((flags & 16) != 0) TearCheckpoints(devices, pristine.MetadataOffset, pristine.SlotBytes);
        StartAndUse(devices);
    }

    private static void ApplyPatches(byte[][] devices, ReadOnlySpan<byte> patches, IReadOnlyList<Region> regions)
    {
        while (patches.Length >= 4)
        {
            (int device, long offset, int length, _) = regions[patches[0] % regions.Count];
            int at = BinaryPrimitives.ReadUInt16LittleEndian(patches[1..]) % length;
            int count = Math.Min(Math.Min(patches[3], patches.Length - 4), length - at);
            patches.Slice(4, count).CopyTo(devices[device].AsSpan((int)(offset + at), count));
            patches = patches[(4 + count)..];
        }
    }

    /// <summary>Recomputes the header CRC (and optionally each data extent's CRC) of every block that starts like a record.</summary>
    private static void ResealRecords(byte[][] devices, bool extents, int segmentBytes)
    {
        foreach (byte[] device in devices)
        {
            // The header CRC is keyed with the set's log key (superblock bytes 72..88): the key sits in the header's
            // last 16 bytes (zeros on disk) while the CRC is computed with its own field zeroed.
            ReadOnlySpan<byte> key = device.AsSpan(72, 16);
            byte[] copy = new byte[Block];
            for (long at = MiB; at + Block <= device.Length; at += Block)
            {
                Span<byte> header = device.AsSpan((int)at, Block);
                if (BinaryPrimitives.ReadUInt64LittleEndian(header) != RecordMagic) continue;
                if (extents) ResealExtents(device, at, segmentBytes);
                header[(Block - 16)..].Clear();
                header.CopyTo(copy);
                BinaryPrimitives.WriteUInt32LittleEndian(copy.AsSpan(24), 0);
                key.CopyTo(copy.AsSpan(Block - 16));
                BinaryPrimitives.WriteUInt32LittleEndian(header[24..], Crc32C.Compute(copy));
            }
        }
    }

    private static void ResealExtents(byte[] device, long headerAt, int segmentBytes)
    {
        Span<byte> header = device.AsSpan((int)headerAt, Block);
        int count = Math.Clamp(BinaryPrimitives.ReadInt32LittleEndian(header[16..]), 0, (Block - 40) / 40);
        long segmentEnd = MiB + ((headerAt - MiB) / segmentBytes * segmentBytes) + segmentBytes;
        long data = headerAt + Block;
        for (int i = 0; i < count; i++)
        {
            Span<byte> extent = header.Slice(40 + (i * 40), 40);
            long bytes = (long)BinaryPrimitives.ReadInt32LittleEndian(extent[24..]) * Block;
            if (bytes <= 0 || data + bytes > Math.Min(segmentEnd, device.Length)) return;
            BinaryPrimitives.WriteUInt32LittleEndian(extent[28..], Crc32C.Compute(device.AsSpan((int)data, (int)bytes)));
            data += bytes;
        }
    }

    /// <summary>Slot header: lengths at 40 (catalog) and 56 (checkpoint), their CRCs at 48 and 64, the header CRC in its last 4 bytes.</summary>
    private static void ResealSlots(byte[][] devices, long metadataOffset, long slotBytes)
    {
        foreach (byte[] device in devices)
        {
            for (int slot = 0; slot < 2; slot++)
            {
                long at = metadataOffset + (slot * slotBytes);
                Span<byte> header = device.AsSpan((int)at, Block);
                if (BinaryPrimitives.ReadUInt64LittleEndian(header) != SlotMagic) continue;
                long catalog = Math.Clamp(BinaryPrimitives.ReadInt64LittleEndian(header[40..]), 0, slotBytes - Block);
                long checkpointAt = Block + Align(catalog);
                long checkpoint = Math.Clamp(BinaryPrimitives.ReadInt64LittleEndian(header[56..]), 0, Math.Max(0, slotBytes - checkpointAt));
                BinaryPrimitives.WriteUInt32LittleEndian(header[48..], Crc32C.Compute(device.AsSpan((int)(at + Block), (int)catalog)));
                BinaryPrimitives.WriteUInt32LittleEndian(header[64..], Crc32C.Compute(device.AsSpan((int)(at + checkpointAt), (int)checkpoint)));
                BinaryPrimitives.WriteUInt32LittleEndian(header[(Block - 4)..], Crc32C.Compute(header[..(Block - 4)]));
            }
        }
    }

    private static void ResealSuperblocks(byte[][] devices)
    {
        foreach (byte[] device in devices)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(device.AsSpan(88), Crc32C.Compute(device.AsSpan(0, 88)));
        }
    }

    /// <summary>Flips a byte of each slot's checkpoint (its CRC no longer matches): the start must scan.</summary>
    private static void TearCheckpoints(byte[][] devices, long metadataOffset, long slotBytes)
    {
        foreach (byte[] device in devices)
        {
            for (int slot = 0; slot < 2; slot++)
            {
                long at = metadataOffset + (slot * slotBytes);
                long catalog = Math.Clamp(BinaryPrimitives.ReadInt64LittleEndian(device.AsSpan((int)at + 40)), 0, slotBytes - Block);
                device[at + Block + Align(catalog)] ^= 0x5A;
            }
        }
    }

    private static void StartAndUse(byte[][] images)
    {
        string root = Path.Combine(ScratchRoot(), "run");
        Directory.CreateDirectory(root);
        try
        {
            StartAndUse(images, root);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    private static void StartAndUse(byte[][] images, string root)
    {
        for (int i = 0; i < images.Length; i++)
        {
            File.WriteAllBytes(Path.Combine(root, $"device{i}.img"), images[i]);
        }

        GftlStore store;
        try
        {
            store = new GftlStore(Options(root));
        }
        catch (Exception e) when (e is VolumeStoreException or InvalidDataException)
        {
            return; // the devices were refused with a reason: a clean outcome
        }

        using (store)
        {
            byte[] buffer = new byte[256 << 10];
            foreach (VolumeDescriptor descriptor in store.List())
            {
                using IBlockVolume volume = store.Open(descriptor.Id);
                for (long offset = 0; offset < volume.SizeBytes; offset += buffer.Length)
                {
                    int length = (int)Math.Min(buffer.Length, volume.SizeBytes - offset);
                    Expect(volume.ReadAsync(offset, buffer.AsMemory(0, length)), "read", descriptor, offset);
                }

                if (!descriptor.ReadOnly && volume.SizeBytes >= Block)
                {
                    Expect(volume.WriteAsync(0, buffer.AsMemory(0, Block)), "write", descriptor, 0);
                }
            }
        }
    }

    private static void Expect(ValueTask<StorageResult> task, string what, VolumeDescriptor volume, long offset)
    {
        StorageResult result = task.AsTask().GetAwaiter().GetResult();
        if (result != StorageResult.Ok)
        {
            throw new InvalidOperationException($"{what} of volume {volume.Name} at {offset} after a successful start: {result}");
        }
    }

    private static GftlOptions Options(string root) => new()
    {
        DataDirectory = Path.Combine(root, "data"),
        Devices = [new GftlDeviceSpec(Path.Combine(root, "device0.img"), DeviceBytes), new GftlDeviceSpec(Path.Combine(root, "device1.img"), DeviceBytes)],
        ShardCount = 2,
        SegmentBytes = (int)MiB,
        DirectIo = false,
        BackgroundGc = false,
    };

    /// <summary>Per process (AFL may run several), on tmpfs where there is one.</summary>
    private static string ScratchRoot()
    {
        string parent = Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath();
        return Path.Combine(parent, $"duroslight-fuzz-gftl-{Environment.ProcessId}");
    }

    /// <summary>A place inputs can patch: <paramref name="Length"/> bytes at <paramref name="Offset"/> of a device.</summary>
    public readonly record struct Region(int Device, long Offset, int Length, string Kind);

    private static long Align(long bytes) => (bytes + Block - 1) & ~(long)(Block - 1);

    /// <summary>The image every input patches, and the regions worth hitting in it.</summary>
    private sealed record Pristine(byte[][] Devices, List<Region> Regions, long MetadataOffset, long SlotBytes, int SegmentBytes)
    {
        public static Pristine Make()
        {
            string root = Path.Combine(ScratchRoot(), "pristine");
            if (Directory.Exists(root)) Directory.Delete(root, recursive: true);
            Directory.CreateDirectory(root);
            using (var store = new GftlStore(Options(root)))
            {
                Fill(store);
            }

            byte[][] devices = [File.ReadAllBytes(Path.Combine(root, "device0.img")), File.ReadAllBytes(Path.Combine(root, "device1.img"))];
            Directory.Delete(root, recursive: true);
            long metadataOffset = BinaryPrimitives.ReadInt64LittleEndian(devices[0].AsSpan(56));
            long slotBytes = BinaryPrimitives.ReadInt64LittleEndian(devices[0].AsSpan(64));
            return new Pristine(devices, FindRegions(devices, metadataOffset, slotBytes), metadataOffset, slotBytes, (int)MiB);
        }

        /// <summary>Two volumes on both partitions, a snapshot taken between writes, overwrites and a trim.</summary>
        private static void Fill(GftlStore store)
        {
            // Fixed ids: chunk placement (and so every record's position) is the same in every process.
            VolumeDescriptor a = store.Create("a", 2 * MiB, Guid.Parse("0f0e0d0c-0000-4000-8000-00000000000a"));
            VolumeDescriptor b = store.Create("b", MiB, Guid.Parse("0f0e0d0c-0000-4000-8000-00000000000b"));
            byte[] data = new byte[64 << 10];
            using (IBlockVolume va = store.Open(a.Id))
            using (IBlockVolume vb = store.Open(b.Id))
            {
                for (int i = 0; i < 8; i++)
                {
                    data.AsSpan().Fill((byte)(i + 1));
                    Expect(va.WriteAsync(i * (256L << 10), data), "write", a, i);
                    Expect(vb.WriteAsync(i * (64L << 10) % MiB, data.AsMemory(0, Block)), "write", b, i);
                }

                store.Snapshot(a.Id, "a-snap");
                Expect(va.WriteAsync(Block, data.AsMemory(0, 2 * Block)), "write", a, Block);
                Expect(va.DeallocateAsync(256 << 10, 128 << 10), "deallocate", a, 0);
                Expect(vb.WriteZeroesAsync(0, 8 * Block), "write zeroes", b, 0);
                Expect(va.FlushAsync(), "flush", a, 0);
            }
        }

        private static List<Region> FindRegions(byte[][] devices, long metadataOffset, long slotBytes)
        {
            var regions = new List<Region>();
            for (int d = 0; d < devices.Length; d++)
            {
                regions.Add(new(d, 0, Block, "superblock"));
                for (int slot = 0; slot < 2; slot++)
                {
                    long at = metadataOffset + (slot * slotBytes);
                    long catalog = BinaryPrimitives.ReadInt64LittleEndian(devices[d].AsSpan((int)at + 40));
                    regions.Add(new(d, at, Block, "slot-header"));
                    regions.Add(new(d, at + Block, (int)Math.Clamp(catalog, Block, 256 << 10), "catalog"));
                    regions.Add(new(d, at + Block + Align(catalog), (int)Math.Min(64 << 10, slotBytes - Block - Align(catalog)), "checkpoint"));
                }

                for (long at = MiB; at < metadataOffset; at += Block)
                {
                    if (BinaryPrimitives.ReadUInt64LittleEndian(devices[d].AsSpan((int)at)) == RecordMagic)
                    {
                        regions.Add(new(d, at, Block, "record"));
                    }
                    else if ((at - MiB) % MiB == 0)
                    {
                        regions.Add(new(d, at, Block, "segment"));
                    }
                }
            }

            return regions;
        }
    }
}
