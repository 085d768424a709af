using System.Buffers.Binary;
using Duroslight.Core;
using Duroslight.Core.Interop;
using Duroslight.Storage.Gftl;
using Duroslight.Storage.Volumes;
using static Duroslight.Storage.Tests.Volumes.VolumeStoreContractTests;

namespace Duroslight.Storage.Tests.Gftl;

/// <summary>What is particular to the GFTL: recovery, thin provisioning and GC, striping, snapshots and clones, device checks.</summary>
public sealed class GftlStoreTests : IDisposable
{
    private const int Block = 4096;
    private const long MiB = GftlScratch.MiB;
    private readonly GftlScratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Theory]
    [InlineData("graceful", GftlStartKind.Checkpoint)]
    [InlineData("abrupt", GftlStartKind.Scan)]
    [InlineData("torn", GftlStartKind.Scan)]
    public async Task Data_survives_a_restart_from_checkpoint_or_scan(string stop, GftlStartKind expected)
    {
        Guid id;
        byte[] data = Pattern(300 * Block, 1);
        using (GftlStore store = _scratch.Open())
        {
            Assert.Equal(GftlStartKind.Formatted, store.Recovery.Kind);
            id = store.Create("v", 8 * MiB).Id;
            IBlockVolume volume = store.Open(id);
            await WriteAsync(volume, 0, data);
            await WriteAsync(volume, 5 * Block, Pattern(2 * Block, 2)); // overwrite
            Assert.Equal(StorageResult.Ok, await volume.DeallocateAsync(100 * Block, 10 * Block));
            data.AsSpan(5 * Block, 2 * Block).Clear();
            Pattern(2 * Block, 2).CopyTo(data, 5 * Block);
            data.AsSpan(100 * Block, 10 * Block).Clear();
        }

        Damage(stop);
        using (GftlStore store = _scratch.Open())
        {
            Assert.Equal(expected, store.Recovery.Kind);
            Assert.True(store.Recovery.Done);
            Assert.Equal(data, await ReadAsync(store.Open(id), 0, data.Length));
            Assert.Equal((300 - 10) * Block, store.Open(id).AllocatedBytes);
            Assert.Equal(["store.lock"], Directory.GetFiles(_scratch.DataDirectory).Select(Path.GetFileName)); // all state is on the devices
        }
    }

    [Fact]
    public async Task A_snapshot_stays_stable_and_a_clone_is_independent_across_restarts()
    {
        using var store = _scratch.Open();
        VolumeDescriptor source = store.Create("src", 4 * MiB);
        IBlockVolume volume = store.Open(source.Id);
        await WriteAsync(volume, 0, Pattern(64 * Block, 1));
        VolumeDescriptor snapshot = store.Snapshot(source.Id, "snap");
        VolumeDescriptor clone = store.Clone(source.Id, "clone");
        Assert.True(snapshot.ReadOnly);
        Assert.Equal(source.Id, clone.ParentId);

        await WriteAsync(volume, 0, Pattern(32 * Block, 2));
        Assert.Equal(StorageResult.Ok, await volume.DeallocateAsync(32 * Block, 32 * Block));
        await WriteAsync(store.Open(clone.Id), 16 * Block, Pattern(8 * Block, 3));
        Assert.Equal(StorageResult.WriteProtected, await store.Open(snapshot.Id).WriteAsync(0, new byte[Block]));

        byte[] expectedSource = [.. Pattern(32 * Block, 2), .. new byte[32 * Block]];
        byte[] expectedSnapshot = Pattern(64 * Block, 1);
        byte[] expectedClone = Pattern(64 * Block, 1);
        Pattern(8 * Block, 3).CopyTo(expectedClone, 16 * Block);
        await AssertContents(store, source.Id, snapshot.Id, clone.Id, expectedSource, expectedSnapshot, expectedClone);
        store.Dispose();

        using (var graceful = _scratch.Open())
        {
            await AssertContents(graceful, source.Id, snapshot.Id, clone.Id, expectedSource, expectedSnapshot, expectedClone);
        }

        _scratch.TearCheckpoint();
        using var abrupt = _scratch.Open();
        Assert.Equal(GftlStartKind.Scan, abrupt.Recovery.Kind);
        await AssertContents(abrupt, source.Id, snapshot.Id, clone.Id, expectedSource, expectedSnapshot, expectedClone);
    }

    [Fact]
    public async Task Deleting_the_source_keeps_its_snapshot_readable_through_gc_and_a_scan()
    {
        var store = _scratch.Open(deviceBytes: 24 * MiB);
        VolumeDescriptor source = store.Create("src", 4 * MiB);
        await WriteAsync(store.Open(source.Id), 0, Pattern((int)(2 * MiB), 7));
        VolumeDescriptor snapshot = store.Snapshot(source.Id, "snap");
        await WriteAsync(store.Open(source.Id), 0, Pattern((int)(2 * MiB), 8));
        store.Delete(source.Id);
        Assert.Equal([snapshot.Id], store.List().Select(v => v.Id));
        Assert.Throws<VolumeStoreException>(() => store.Open(source.Id));

        Assert.True(await store.CollectGarbageAsync() > 0);
        Assert.Equal(Pattern((int)(2 * MiB), 7), await ReadAsync(store.Open(snapshot.Id), 0, (int)(2 * MiB)));
        store.Dispose();
        _scratch.TearCheckpoint();

        using (var reopened = _scratch.Open(deviceBytes: 24 * MiB))
        {
            Assert.Equal(Pattern((int)(2 * MiB), 7), await ReadAsync(reopened.Open(snapshot.Id), 0, (int)(2 * MiB)));
            reopened.Delete(snapshot.Id);
            Assert.Empty(reopened.List());
            Assert.Equal(0, reopened.PhysicalUsedBytes);
        }
    }

    [Fact]
    public async Task Running_out_of_physical_space_is_out_of_space_not_corruption()
    {
        using var store = _scratch.Open(deviceBytes: 17 * MiB);
        IBlockVolume volume = store.Open(store.Create("thin", 64 * MiB).Id);
        Assert.True(store.PhysicalCapacityBytes < volume.SizeBytes);
        int written = 0;
        StorageResult result;
        while ((result = await volume.WriteAsync((long)written * 32 * Block, Pattern(32 * Block, written))) == StorageResult.Ok)
        {
            written++;
        }

        Assert.Equal(StorageResult.OutOfSpace, result);
        Assert.True(written > 8);
        for (int i = 0; i < written; i++)
        {
            Assert.Equal(Pattern(32 * Block, i), await ReadAsync(volume, (long)i * 32 * Block, 32 * Block));
        }

        // Freeing space lets writes succeed again (the collector reclaims what the deallocate released).
        Assert.Equal(StorageResult.Ok, await volume.DeallocateAsync(0, (long)written / 2 * 32 * Block));
        Assert.Equal(StorageResult.Ok, await volume.WriteAsync((long)written * 32 * Block, Pattern(32 * Block, 99)));
    }

    [Fact]
    public async Task Random_overwrites_do_not_fill_the_devices()
    {
        using var store = new GftlStore(_scratch.Options(deviceBytes: 24 * MiB, backgroundGc: true));
        const int blocks = 2048; // 8 MiB volume on ~23 MiB of segments
        IBlockVolume volume = store.Open(store.Create("hot", blocks * Block).Id);
        var model = new byte[blocks * Block];
        var random = new Random(5);
        for (int i = 0; i < blocks * 8; i++)
        {
            int block = random.Next(blocks);
            byte[] data = Pattern(Block, i);
            data.CopyTo(model, block * Block);
            Assert.Equal(StorageResult.Ok, await volume.WriteAsync((long)block * Block, data));
        }

        Assert.Equal(model, await ReadAsync(volume, 0, model.Length));
        Assert.True(store.GcSegmentsCleaned > 0);
        Assert.True(store.WriteAmplification > 1.0);
        Assert.True(store.PhysicalUsedBytes <= blocks * Block);
    }

    /// <summary>
    /// A scan must bring the sequence counter back to at least where it was, stamps of segments and erase markers
    /// included: else a segment freed just before a crash is reopened with a lower stamp, and its new records look
    /// older than what they overwrote (the model test found this).
    /// </summary>
    [Fact]
    public async Task A_scan_restores_the_sequence_counter_past_every_stamp()
    {
        GftlOptions options = _scratch.Options(deviceBytes: 16 * MiB, shards: 1, segmentBytes: 256 * 1024);
        Guid id;
        long before;
        using (var store = new GftlStore(options))
        {
            id = store.Create("v", 2 * MiB).Id;
            for (int round = 0; round < 4; round++)
            {
                await WriteAsync(store.Open(id), round * 4 * Block, Pattern((int)MiB, round));
            }

            Assert.True(await store.CollectGarbageAsync() > 0); // stamps a segment and erases others after the last write
            before = store.LastSeq;
        }

        _scratch.TearCheckpoint();
        using var reopened = new GftlStore(options);
        Assert.Equal(GftlStartKind.Scan, reopened.Recovery.Kind);
        Assert.True(reopened.LastSeq >= before, $"sequence counter went back from {before} to {reopened.LastSeq}");
    }

    /// <summary>Freed segments carry an erase marker, so a scan does not mistake their old trim records for live ones.</summary>
    [Fact]
    public async Task Repeated_abrupt_restarts_under_writes_and_trims_keep_space_reclaimable()
    {
        GftlOptions options = _scratch.Options(devices: 2, deviceBytes: 64 * MiB, shards: 1, segmentBytes: 4 << 20, backgroundGc: true);
        Guid id;
        using (var first = new GftlStore(options))
        {
            id = first.Create("v", 8 * MiB).Id;
        }

        var random = new Random(1);
        for (int cycle = 0; cycle < 5; cycle++)
        {
            _scratch.TearCheckpoint();
            using var store = new GftlStore(options);
            IBlockVolume volume = store.Open(id);
            for (int i = 0; i < 2000; i++)
            {
                int count = random.Next(1, 49);
                long offset = (long)random.Next(2048 - count) * Block;
                StorageResult result = random.Next(10) < 7
                    ? await volume.WriteAsync(offset, new byte[count * Block])
                    : await volume.DeallocateAsync(offset, (long)count * Block);
                Assert.True(result == StorageResult.Ok, $"cycle {cycle} op {i}: {result}, {store.FreeSegments} free segments");
            }
        }
    }

    [Fact]
    public async Task Data_is_striped_over_every_device()
    {
        using var store = _scratch.Open(devices: 3, deviceBytes: 16 * MiB);
        IBlockVolume volume = store.Open(store.Create("wide", 16 * MiB).Id);
        for (int i = 0; i < 48; i++)
        {
            await WriteAsync(volume, (long)i * 32 * Block, Pattern(32 * Block, i));
        }

        var firstBlocks = new HashSet<string>();
        for (int i = 0; i < 48; i++)
        {
            firstBlocks.Add(Convert.ToHexString(Pattern(32 * Block, i), 0, 64));
        }

        for (int device = 0; device < 3; device++)
        {
            Assert.True(store.DeviceUsedBytes(device) > MiB, $"device {device} holds {store.DeviceUsedBytes(device)} bytes");
        }

        store.Dispose();
        for (int device = 0; device < 3; device++)
        {
            // The bytes themselves are there, on every device.
            Assert.Contains(BlockPrefixes(File.ReadAllBytes(_scratch.DevicePath(device))), firstBlocks.Contains);
        }
    }

    [Fact]
    public void A_missing_extra_reordered_or_foreign_device_is_refused_with_a_clear_message()
    {
        _scratch.Open(devices: 2, deviceBytes: 8 * MiB).Dispose();
        GftlOptions options = _scratch.Options(devices: 2, deviceBytes: 8 * MiB);

        var missing = Assert.Throws<VolumeStoreException>(() => new GftlStore(options with { Devices = [options.Devices[0]] }));
        Assert.Contains("missing", missing.Message);

        var reordered = Assert.Throws<VolumeStoreException>(() => new GftlStore(options with { Devices = [options.Devices[1], options.Devices[0]] }));
        Assert.Contains("reordered", reordered.Message);

        using (var other = new GftlScratch())
        {
            other.Open(deviceBytes: 8 * MiB).Dispose();
            var foreign = Assert.Throws<VolumeStoreException>(() => new GftlStore(options with { Devices = [options.Devices[0], new GftlDeviceSpec(other.DevicePath(0))] }));
            Assert.Contains("wrong device", foreign.Message);
        }

        var absent = Assert.Throws<VolumeStoreException>(() => new GftlStore(options with { Devices = [options.Devices[0], new GftlDeviceSpec(_scratch.DevicePath(7))] }));
        Assert.Contains("does not exist", absent.Message);

        using var ok = new GftlStore(options);
        Assert.Equal(GftlStartKind.Checkpoint, ok.Recovery.Kind);
    }

    [Fact]
    public void Devices_are_opened_with_O_DIRECT()
    {
        using (var store = _scratch.Open())
        {
            Assert.True(store.DirectIo);
        }

        using var device = GftlDevice.Open(0, new GftlDeviceSpec(_scratch.DevicePath(0)));
        Assert.True(device.IsDirect);
        string flags = File.ReadAllLines($"/proc/self/fdinfo/{device.Handle.DangerousGetHandle()}").First(l => l.StartsWith("flags:"));
        const int ODirect = 0x4000; // 040000 octal on x86-64 and arm64
        Assert.NotEqual(0, Convert.ToInt32(flags["flags:".Length..].Trim(), 8) & ODirect);
    }

    /// <summary>
    /// A device file the store creates has its blocks allocated up front (the log's first write of each block then
    /// costs the filesystem no allocation); the data directory's default device stays thin.
    /// </summary>
    [Fact]
    public void A_created_device_file_is_allocated_unless_thin()
    {
        const long size = 16 * MiB;
        using (var device = GftlDevice.Open(0, new GftlDeviceSpec(_scratch.DevicePath(0), size)))
        {
            Assert.True(LibC.TryGetAllocatedBytes(device.Handle, out long allocated));
            Assert.True(allocated >= size, $"allocated {allocated} of {size}");
        }

        using var thin = GftlDevice.Open(1, new GftlDeviceSpec(_scratch.DevicePath(1), size, Thin: true));
        Assert.True(LibC.TryGetAllocatedBytes(thin.Handle, out long thinAllocated));
        Assert.True(thinAllocated < size / 2, $"thin device allocated {thinAllocated} of {size}");
        Assert.Equal(size, new FileInfo(_scratch.DevicePath(1)).Length);
    }

    [Fact]
    public async Task Resize_grows_and_snapshots_cannot_be_resized()
    {
        using var store = _scratch.Open();
        VolumeDescriptor volume = store.Create("v", MiB);
        await WriteAsync(store.Open(volume.Id), MiB - Block, Pattern(Block, 1));
        Assert.Equal(3 * MiB, store.Resize(volume.Id, 3 * MiB).SizeBytes);
        await WriteAsync(store.Open(volume.Id), 3 * MiB - Block, Pattern(Block, 2));
        VolumeDescriptor snapshot = store.Snapshot(volume.Id, "s");
        Assert.Throws<VolumeStoreException>(() => store.Resize(snapshot.Id, 4 * MiB));
        Assert.Equal(Pattern(Block, 1), await ReadAsync(store.Open(snapshot.Id), MiB - Block, Block));
    }

    /// <summary>
    /// A host writes blocks that imitate records (a header naming another block of its volume with a newer sequence
    /// number and a huge segment stamp, and the data it describes, CRCs right) and the header of the record that
    /// carries them is lost, as when power fails with only the data sectors of a write on the disk. The scan then
    /// reads those blocks as candidate headers: sealed without the set's log key, they are not records, so the
    /// other block keeps its data and the rest of the segment survives.
    /// </summary>
    [Fact]
    public async Task Host_data_that_imitates_a_record_header_is_not_taken_for_one_by_the_scan()
    {
        Guid id;
        byte[] real = Pattern(Block, 1);
        byte[] forged = new byte[4 * Block];
        using (GftlStore store = _scratch.Open(shards: 1))
        {
            id = store.Create("v", 8 * MiB).Id;
            IBlockVolume volume = store.Open(id);
            await WriteAsync(volume, 40 * Block, real);
            Pattern(Block, 2).CopyTo(forged, Block);
            Pattern(Block, 3).CopyTo(forged, 3 * Block);
            Extent[] claim = [new Extent(id, 40, 1, long.MaxValue / 2)];
            RecordFormat.WriteHeader(forged, RecordKind.Data, long.MaxValue / 2, claim, forged.AsSpan(Block, Block), Guid.Empty);
            RecordFormat.WriteHeader(forged.AsSpan(2 * Block), RecordKind.Data, long.MaxValue / 2, claim, forged.AsSpan(3 * Block, Block), Guid.Empty);
            BinaryPrimitives.WriteUInt16LittleEndian(forged.AsSpan((2 * Block) + 8), 2); // version 2: the plain CRC
            BinaryPrimitives.WriteUInt32LittleEndian(forged.AsSpan((2 * Block) + 24), 0);
            BinaryPrimitives.WriteUInt32LittleEndian(forged.AsSpan((2 * Block) + 24), Crc32C.Compute(forged.AsSpan(2 * Block, Block)));
            await WriteAsync(volume, 0, forged);
        }

        // The record holding the forged blocks loses its header (the block before them on the device).
        string device = _scratch.DevicePath(0);
        byte[] image = File.ReadAllBytes(device);
        int at = -1;
        for (int b = 0; b + (4 * Block) <= image.Length && at < 0; b += Block)
        {
            at = image.AsSpan(b, 4 * Block).SequenceEqual(forged) ? b : -1;
        }

        Assert.True(at >= Block, "the forged blocks are on the device");
        using (FileStream file = File.OpenWrite(device))
        {
            file.Position = at - Block;
            file.Write(new byte[Block]);
        }

        _scratch.TearCheckpoint();
        using (GftlStore store = _scratch.Open(shards: 1))
        {
            Assert.Equal(GftlStartKind.Scan, store.Recovery.Kind);
            Assert.Equal(real, await ReadAsync(store.Open(id), 40 * Block, Block));
            Assert.Equal(new byte[4 * Block], await ReadAsync(store.Open(id), 0, 4 * Block)); // its record is gone, as torn
        }
    }

    private void Damage(string stop)
    {
        if (stop is "abrupt" or "torn")
        {
            _scratch.TearCheckpoint();
        }
    }

    private static async Task AssertContents(GftlStore store, Guid source, Guid snapshot, Guid clone, byte[] s, byte[] snap, byte[] c)
    {
        Assert.Equal(s, await ReadAsync(store.Open(source), 0, s.Length));
        Assert.Equal(snap, await ReadAsync(store.Open(snapshot), 0, snap.Length));
        Assert.Equal(c, await ReadAsync(store.Open(clone), 0, c.Length));
    }

    private static IEnumerable<string> BlockPrefixes(byte[] device)
    {
        for (int offset = 0; offset + 64 <= device.Length; offset += Block)
        {
            yield return Convert.ToHexString(device, offset, 64);
        }
    }
}
