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
    private const int Chunk = 32 * Block;

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

    /// <summary>
    /// More fragmented chunks read at once than a partition has re-pack slots: the ones that find every slot busy
    /// wait and are re-packed by the slots as they free (each reading its chunk itself), so every chunk ends up as
    /// one device run. Before, a read that found the partition's one re-pack busy dropped the request.
    /// </summary>
    [Fact]
    public void Fragmented_chunks_that_find_every_repack_slot_busy_are_repacked_later_into_one_device_run_each()
    {
        SynchronizationContext.SetSynchronizationContext(null);
        int chunks = (2 * Repacker.MaxInFlight) + 1;
        var store = new GftlStore(Scratch.Options(shards: 1));
        IBlockVolume volume = store.Open(store.Create("v", (long)chunks * Chunk).Id);
        var io = new HeldBlockIo();
        BlockIo.InstallForCurrentThread(io);
        var model = new byte[chunks * Chunk];
        Write(volume, io, model, 0, chunks * 32, 1);
        for (int c = 0; c < chunks; c++)
        {
            Fragment(volume, io, model, c);
        }

        using var buffer = new NativeBuffer(Chunk);
        Assert.Equal(11, DeviceRuns(volume, io, buffer, 0)); // also re-packs chunk 0 (its copy completes at once)
        Assert.Equal(0, store.RepacksBusy);
        Assert.Equal(1, DeviceRuns(volume, io, buffer, 0));

        // Copies held: the first reads take every slot, the rest of the chunks wait for one.
        for (int c = 1; c < chunks; c++)
        {
            AssertOk(volume.ReadAsync((long)c * Chunk, buffer.Memory));
            Assert.Equal(model.AsSpan(c * Chunk, Chunk).ToArray(), buffer.GetSpan().ToArray());
        }

        Assert.Equal(chunks - 1, store.RepacksBusy);
        io.ReleaseAll(); // each copy written frees its slot for a waiting chunk, whose copy is then released too
        Assert.Equal(0, store.RepacksBusy);
        Assert.Equal((long)chunks * 32 * Block, store.RepackedBytes);
        for (int c = 0; c < chunks; c++)
        {
            Assert.Equal(1, DeviceRuns(volume, io, buffer, c));
            Assert.Equal(model.AsSpan(c * Chunk, Chunk).ToArray(), buffer.GetSpan().ToArray());
        }

        BlockIo.InstallForCurrentThread(null);
        store.Dispose();
    }

    /// <summary>
    /// A clone's blocks inherited from its parent cannot be re-packed (they belong to the parent's records), so a
    /// fragmented chunk holding any is not queued for a slot (whose read and copy of it would change nothing); one
    /// the clone wrote itself and fragmented is, and ends as one device run.
    /// </summary>
    [Fact]
    public void A_clone_queues_only_chunks_it_wrote_itself()
    {
        SynchronizationContext.SetSynchronizationContext(null);
        int chunks = Repacker.MaxInFlight + 2; // the parent fragments all but the last chunk, the clone rewrites and fragments that one
        var store = new GftlStore(Scratch.Options(shards: 1));
        IBlockVolume parent = store.Open(store.Create("v", (long)chunks * Chunk).Id);
        var io = new HeldBlockIo();
        BlockIo.InstallForCurrentThread(io);
        var model = new byte[chunks * Chunk];
        Write(parent, io, model, 0, chunks * 32, 1);
        for (int c = 0; c < chunks - 1; c++)
        {
            Fragment(parent, io, model, c);
        }

        BlockIo.InstallForCurrentThread(null); // the catalog is written synchronously
        IBlockVolume clone = store.Open(store.Clone(store.List()[0].Id, "c").Id);
        BlockIo.InstallForCurrentThread(io);
        Write(clone, io, model, (chunks - 1) * 32, 32, 50);
        Fragment(clone, io, model, chunks - 1);
        using var buffer = new NativeBuffer(Chunk);
        for (int c = 0; c < Repacker.MaxInFlight; c++)
        {
            AssertOk(parent.ReadAsync((long)c * Chunk, buffer.Memory)); // every slot busy (copies held)
        }

        Assert.Equal(Repacker.MaxInFlight, store.RepacksBusy);
        AssertOk(clone.ReadAsync((long)(chunks - 2) * Chunk, buffer.Memory)); // fragmented by the parent's writes only: not queued
        Assert.Equal(Repacker.MaxInFlight, store.RepacksBusy);
        AssertOk(clone.ReadAsync((long)(chunks - 1) * Chunk, buffer.Memory)); // by its own: queued
        Assert.Equal(Repacker.MaxInFlight + 1, store.RepacksBusy);
        io.ReleaseAll();
        Assert.Equal(0, store.RepacksBusy);
        Assert.Equal(1, DeviceRuns(clone, io, buffer, chunks - 1));
        BlockIo.InstallForCurrentThread(null);
        store.Dispose();
    }

    /// <summary>Overwrites 5 single blocks of the chunk: 11 device runs where there was one.</summary>
    private static void Fragment(IBlockVolume volume, HeldBlockIo io, byte[] model, int chunk)
    {
        foreach (int block in new[] { 3, 9, 15, 21, 27 })
        {
            Write(volume, io, model, (chunk * 32) + block, 1, 2 + (chunk * 32) + block);
        }
    }

    /// <summary>Reads chunk <paramref name="chunk"/> with its device reads held: how many it issued (then completes them).</summary>
    private static int DeviceRuns(IBlockVolume volume, HeldBlockIo io, NativeBuffer buffer, int chunk)
    {
        io.HoldReads = true;
        ValueTask<StorageResult> read = volume.ReadAsync((long)chunk * Chunk, buffer.Memory);
        int runs = io.Held;
        io.HoldReads = false;
        io.ReleaseAll();
        AssertOk(read);
        return runs;
    }
}
