using System.Buffers.Binary;
using Duroslight.Core;
using Duroslight.Storage.Gftl;
using Duroslight.Storage.Volumes;
using Duroslight.Tests.Shared;

namespace Duroslight.Storage.Tests.Gftl;

/// <summary>
/// The catalog and the checkpoint live on the devices: a node's volumes travel with its devices, a wiped data
/// directory loses nothing, a torn metadata write falls back to the previous generation, one mirror is enough,
/// and formats this build does not know are refused with a clear message.
/// </summary>
public sealed class GftlDeviceMetadataTests : IDisposable
{
    private const int Block = 4096;
    private const long MiB = GftlScratch.MiB;
    private readonly GftlScratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_wiped_data_directory_with_intact_devices_loses_nothing(bool powerFails)
    {
        GftlOptions options = _scratch.Options(devices: 2, deviceBytes: 32 * MiB, shards: 3) with { DirectIo = !powerFails };
        var expected = new Dictionary<string, byte[]>();
        var power = new PowerLossBlockIo(new Random(1), long.MaxValue);
        if (powerFails)
        {
            BlockIo.InstallForCurrentThread(power);
        }

        try
        {
            var store = new GftlStore(options);
            VolumeDescriptor a = store.Create("a", 2 * MiB);
            await WriteAsync(store, a.Id, 0, Pattern(64 * Block, 1));
            VolumeDescriptor snapshot = store.Snapshot(a.Id, "a-snap");
            await WriteAsync(store, a.Id, 16 * Block, Pattern(8 * Block, 2));
            VolumeDescriptor b = store.Create("b", MiB);
            await WriteAsync(store, b.Id, 4 * Block, Pattern(4 * Block, 3));
            VolumeDescriptor clone = store.Clone(b.Id, "b-clone");
            Assert.Equal(StorageResult.Ok, await store.Open(clone.Id).DeallocateAsync(4 * Block, Block));
            foreach (VolumeDescriptor v in store.List())
            {
                expected[v.Name] = await ReadAsync(store, v.Id, (int)v.SizeBytes);
            }

            if (powerFails)
            {
                Assert.Equal(StorageResult.Ok, await store.Open(a.Id).FlushAsync());
                power.FailNow(); // nothing unflushed to lose, but no graceful stop either: no checkpoint
            }

            store.Dispose();
        }
        finally
        {
            BlockIo.InstallForCurrentThread(null);
        }

        Directory.Delete(_scratch.DataDirectory, recursive: true);
        using var reopened = new GftlStore(options);
        Assert.Equal(powerFails ? GftlStartKind.Scan : GftlStartKind.Checkpoint, reopened.Recovery.Kind);
        Assert.Equal(expected.Keys.Order(), reopened.List().Select(v => v.Name).Order());
        foreach (VolumeDescriptor v in reopened.List())
        {
            Assert.Equal(expected[v.Name], await ReadAsync(reopened, v.Id, (int)v.SizeBytes));
        }

        Assert.True(reopened.List().Single(v => v.Name == "a-snap").ReadOnly);
    }

    /// <summary>Power lost at each write or sync of a first start (format, metadata): the next start formats again or opens what completed.</summary>
    [Fact]
    public void A_power_failure_during_the_first_format_never_leaves_an_unusable_set()
    {
        long operations;
        using (var clean = new GftlScratch())
        {
            var counter = new PowerLossBlockIo(new Random(0), long.MaxValue);
            BlockIo.InstallForCurrentThread(counter);
            try
            {
                new GftlStore(clean.Options(devices: 2, deviceBytes: 16 * MiB) with { DirectIo = false }).Dispose();
            }
            finally
            {
                BlockIo.InstallForCurrentThread(null);
            }

            operations = counter.Operations;
        }

        Assert.True(operations >= 8, $"a first start took only {operations} writes and syncs");
        for (long failAt = 1; failAt <= operations; failAt++)
        {
            using var scratch = new GftlScratch();
            GftlOptions options = scratch.Options(devices: 2, deviceBytes: 16 * MiB) with { DirectIo = false };
            BlockIo.InstallForCurrentThread(new PowerLossBlockIo(new Random((int)failAt), failAt));
            try
            {
                new GftlStore(options).Dispose();
            }
            catch (VolumeStoreException)
            {
            }
            finally
            {
                BlockIo.InstallForCurrentThread(null);
            }

            using var store = new GftlStore(options);
            store.Create("v", MiB);
            Assert.Single(store.List());
        }
    }

    [Fact]
    public async Task A_torn_catalog_write_falls_back_to_the_previous_generation()
    {
        GftlOptions options = _scratch.Options(devices: 2, deviceBytes: 16 * MiB);
        Guid id;
        using (var store = new GftlStore(options))
        {
            id = store.Create("kept", MiB).Id;
            await WriteAsync(store, id, 0, Pattern(8 * Block, 5));
        }

        // The graceful stop's generation (catalog + checkpoint) is torn: the one before it (same catalog, no checkpoint) is used.
        _scratch.TearNewestCatalogForTest();
        using var reopened = new GftlStore(options);
        Assert.Equal(GftlStartKind.Scan, reopened.Recovery.Kind);
        Assert.Equal(["kept"], reopened.List().Select(v => v.Name));
        Assert.Equal(Pattern(8 * Block, 5), await ReadAsync(reopened, id, 8 * Block));
    }

    [Fact]
    public async Task One_intact_mirror_is_enough()
    {
        GftlOptions options = _scratch.Options(devices: 3, deviceBytes: 16 * MiB);
        Guid id;
        using (var store = new GftlStore(options))
        {
            id = store.Create("v", MiB).Id;
            await WriteAsync(store, id, 0, Pattern(4 * Block, 9));
        }

        ZeroMetadata(_scratch.DevicePath(0));
        using var reopened = new GftlStore(options);
        Assert.Equal(GftlStartKind.Checkpoint, reopened.Recovery.Kind);
        Assert.Equal(Pattern(4 * Block, 9), await ReadAsync(reopened, id, 4 * Block));
    }

    [Fact]
    public void Unknown_formats_are_refused_with_a_clear_message()
    {
        GftlOptions options = _scratch.Options(devices: 2, deviceBytes: 16 * MiB);
        new GftlStore(options).Dispose();

        long metadata = SuperblockField(_scratch.DevicePath(0), 56);
        PatchInt32(_scratch.DevicePath(0), metadata + 8, 7);
        PatchInt32(_scratch.DevicePath(0), metadata + (SuperblockField(_scratch.DevicePath(0), 64)) + 8, 7);
        var metadataVersion = Assert.Throws<VolumeStoreException>(() => new GftlStore(options));
        Assert.Contains("metadata of format version 7; this build reads version 1", metadataVersion.Message);

        PatchInt32(_scratch.DevicePath(1), 8, 1);
        var superblockVersion = Assert.Throws<VolumeStoreException>(() => new GftlStore(options));
        Assert.Contains("format version 1, this build reads only version 3", superblockVersion.Message);
        Assert.Contains("no in-place upgrade", superblockVersion.Message);

        using var other = new GftlScratch();
        Directory.CreateDirectory(other.DataDirectory);
        File.WriteAllText(Path.Combine(other.DataDirectory, "gftl.json"), "{}");
        var legacy = Assert.Throws<VolumeStoreException>(() => new GftlStore(other.Options()));
        Assert.Contains("format version 1 (catalog in the data directory)", legacy.Message);
    }

    [Fact]
    public void A_blank_or_extra_device_beside_formatted_ones_is_refused_not_formatted()
    {
        new GftlStore(_scratch.Options(devices: 1, deviceBytes: 16 * MiB)).Dispose();
        var extra = Assert.Throws<VolumeStoreException>(() => new GftlStore(_scratch.Options(devices: 2, deviceBytes: 16 * MiB)));
        Assert.Contains("a device is missing or extra", extra.Message);

        using var other = new GftlScratch();
        GftlOptions options = other.Options(devices: 2, deviceBytes: 16 * MiB);
        new GftlStore(options).Dispose();
        PatchInt32(other.DevicePath(1), 0, 0); // device 1 replaced by a blank one
        var blank = Assert.Throws<VolumeStoreException>(() => new GftlStore(options));
        Assert.Contains("device 1", blank.Message);
        Assert.Contains("carries no superblock", blank.Message);
    }

    private static long SuperblockField(string device, int at)
    {
        using var file = File.OpenRead(device);
        var bytes = new byte[8];
        file.Position = at;
        file.ReadExactly(bytes);
        return BinaryPrimitives.ReadInt64LittleEndian(bytes);
    }

    private static void PatchInt32(string device, long at, int value)
    {
        using var file = new FileStream(device, FileMode.Open, FileAccess.ReadWrite);
        var bytes = new byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(bytes, value);
        file.Position = at;
        file.Write(bytes);
    }

    private static void ZeroMetadata(string device)
    {
        long metadata = SuperblockField(device, 56), slotBytes = SuperblockField(device, 64);
        using var file = new FileStream(device, FileMode.Open, FileAccess.ReadWrite);
        file.Position = metadata;
        file.Write(new byte[2 * slotBytes]);
    }

    private static async Task WriteAsync(GftlStore store, Guid id, long offset, byte[] data) =>
        Assert.Equal(StorageResult.Ok, await store.Open(id).WriteAsync(offset, data));

    private static async Task<byte[]> ReadAsync(GftlStore store, Guid id, int length)
    {
        var data = new byte[length];
        Assert.Equal(StorageResult.Ok, await store.Open(id).ReadAsync(0, data));
        return data;
    }

    private static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }
}
