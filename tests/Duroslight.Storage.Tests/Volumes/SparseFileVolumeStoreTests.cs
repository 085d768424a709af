using Duroslight.Storage.Volumes;

namespace Duroslight.Storage.Tests.Volumes;

public sealed class SparseFileVolumeStoreTests : VolumeStoreContractTests
{
    private readonly string _dataDirectory = Directory.CreateTempSubdirectory("duroslight-store-").FullName;

    protected override IVolumeStore CreateStore() => new SparseFileVolumeStore(_dataDirectory);

    public override void Dispose()
    {
        base.Dispose();
        Directory.Delete(_dataDirectory, recursive: true);
    }

    [Fact]
    public async Task Volumes_and_their_bytes_survive_reopening_the_store()
    {
        VolumeDescriptor first = Store.Create("first", 4 * MiB);
        VolumeDescriptor second = Store.Create("second", 2 * MiB);
        byte[] data = Pattern(3 * Block, 1);
        await WriteAsync(Store.Open(first.Id), MiB + Block, data);
        Store.Resize(second.Id, 6 * MiB);
        Assert.Equal(StorageResult.Ok, await Store.Open(first.Id).FlushAsync());

        ReopenStore();

        Assert.Equal(new[] { first, second with { SizeBytes = 6 * MiB } }, Store.List());
        IBlockVolume reopened = Store.Open(first.Id);
        Assert.Equal(data, await ReadAsync(reopened, MiB + Block, 3 * Block));
        Assert.True(IsZero(await ReadAsync(reopened, 0, (int)MiB)));
        Assert.Equal(6 * MiB, Store.Open(second.Id).SizeBytes);
    }

    [Fact]
    public void The_layout_is_one_sparse_file_per_volume_plus_the_catalog()
    {
        VolumeDescriptor created = Store.Create("v", 64 * MiB);
        string volumeFile = Path.Combine(_dataDirectory, "volumes", $"{created.Id}.vol");

        Assert.Equal(64 * MiB, new FileInfo(volumeFile).Length);
        Assert.Equal(0, Store.Open(created.Id).AllocatedBytes);
        Assert.Contains(created.Id.ToString(), File.ReadAllText(Path.Combine(_dataDirectory, "volumes.json")));
        Assert.False(File.Exists(Path.Combine(_dataDirectory, "volumes.json.tmp")));

        Store.Delete(created.Id);

        Assert.False(File.Exists(volumeFile));
        Assert.DoesNotContain(created.Id.ToString(), File.ReadAllText(Path.Combine(_dataDirectory, "volumes.json")));
    }

    [Fact]
    public void A_second_store_on_the_same_directory_is_refused()
    {
        _ = Store.List();

        var refused = Assert.Throws<VolumeStoreException>(() => new SparseFileVolumeStore(_dataDirectory));
        Assert.Contains("in use", refused.Message);
    }

    [Fact]
    public void A_corrupt_catalog_is_reported_clearly()
    {
        File.WriteAllText(Path.Combine(_dataDirectory, "volumes.json"), "{ not json");

        var refused = Assert.Throws<VolumeStoreException>(() => new SparseFileVolumeStore(_dataDirectory));
        Assert.Contains("volumes.json", refused.Message);
    }

    [Fact]
    public void A_catalog_entry_that_makes_no_sense_is_reported_clearly()
    {
        File.WriteAllText(
            Path.Combine(_dataDirectory, "volumes.json"),
            """{ "formatVersion": 1, "volumes": [ { "id": "6f9619ff-8b86-d011-b42d-00c04fc964ff", "name": "v", "sizeBytes": 1000, "blockSize": 4096 } ] }""");

        var refused = Assert.Throws<VolumeStoreException>(() => new SparseFileVolumeStore(_dataDirectory));
        Assert.Contains("invalid entry", refused.Message);
    }

    [Fact]
    public void A_missing_volume_file_is_reported_on_open()
    {
        Guid id = Store.Create("v", MiB).Id;
        ReopenStore();
        File.Delete(Path.Combine(_dataDirectory, "volumes", $"{id}.vol"));

        var refused = Assert.Throws<VolumeStoreException>(() => Store.Open(id));
        Assert.Contains("missing", refused.Message);
    }

    [Fact]
    public void The_store_block_size_applies_to_new_volumes()
    {
        using var store = new SparseFileVolumeStore(Path.Combine(_dataDirectory, "small-blocks"), blockSize: 512);

        VolumeDescriptor created = store.Create("v", 512 * 3);

        Assert.Equal(512, created.BlockSize);
        Assert.Equal(512, store.Open(created.Id).BlockSize);
        Assert.Throws<ArgumentOutOfRangeException>(() => new SparseFileVolumeStore(_dataDirectory, blockSize: 3000));
    }
}
