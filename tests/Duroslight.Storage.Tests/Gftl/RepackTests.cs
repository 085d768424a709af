using Duroslight.Core;
using Duroslight.Storage.Gftl;
using Duroslight.Storage.Volumes;

namespace Duroslight.Storage.Tests.Gftl;

/// <summary>
/// A read that finds its chunk fragmented has the partition rewrite it contiguously (relocations that keep each
/// block's sequence number); a block overwritten meanwhile keeps the newer write; the data is the same before and
/// after a scan.
/// </summary>
public sealed class RepackTests : HeldIoTests
{
    [Fact]
    public async Task A_fragmented_chunk_is_repacked_and_a_racing_overwrite_wins()
    {
        SynchronizationContext.SetSynchronizationContext(null);
        // Created before the held I/O goes in: the catalog is written to the devices synchronously.
        var store = new GftlStore(Scratch.Options(shards: 1));
        IBlockVolume volume = store.Open(store.Create("v", 4 * GftlScratch.MiB).Id);
        var io = new HeldBlockIo();
        BlockIo.InstallForCurrentThread(io);
        var model = new byte[32 * Block];
        Write(volume, io, model, 0, 32, 1);
        foreach (int lba in new[] { 3, 9, 15, 21, 27 })
        {
            Write(volume, io, model, lba, 1, 2 + lba);
        }

        var read = new byte[32 * Block];
        Assert.True(volume.ReadAsync(0, read).IsCompletedSuccessfully); // reads are not held
        Assert.Equal(model, read);
        Assert.Equal(1, io.Held); // the re-pack copy

        // Newer than the copy of blocks 9-24; a group's worth, so it goes out beside the copy without waiting for it.
        ValueTask<StorageResult> racing = Start(volume, model, 9, Partition.GroupBlocks, 99);
        Assert.Equal(2, io.Held);
        io.ReleaseNewest();
        io.ReleaseAll();
        Assert.True(racing.IsCompletedSuccessfully);
        Assert.Equal((32L - Partition.GroupBlocks) * Block, store.RepackedBytes);

        Assert.True(volume.ReadAsync(0, read).IsCompletedSuccessfully);
        Assert.Equal(model, read);
        Assert.Equal(0, io.Held); // three runs now (0-8, 9-24, 25-31): not fragmented enough to re-pack again

        io.ReleaseAll(); // re-packs the reads above queued
        BlockIo.InstallForCurrentThread(null); // the graceful stop writes metadata synchronously
        store.Dispose();
        Scratch.TearCheckpoint();
        using var scanned = new GftlStore(Scratch.Options(shards: 1));
        Assert.Equal(GftlStartKind.Scan, scanned.Recovery.Kind);
        Assert.Equal(StorageResult.Ok, await scanned.Open(scanned.List()[0].Id).ReadAsync(0, read));
        Assert.Equal(model, read);
    }

    private static void Write(IBlockVolume volume, HeldBlockIo io, byte[] model, int lba, int count, int value)
    {
        ValueTask<StorageResult> write = Start(volume, model, lba, count, value);
        io.ReleaseAll();
        Assert.True(write.IsCompletedSuccessfully);
    }

    private static ValueTask<StorageResult> Start(IBlockVolume volume, byte[] model, int lba, int count, int value)
    {
        byte[] data = new byte[count * Block];
        new Random(value).NextBytes(data);
        data.CopyTo(model, lba * Block);
        return volume.WriteAsync((long)lba * Block, data);
    }
}
