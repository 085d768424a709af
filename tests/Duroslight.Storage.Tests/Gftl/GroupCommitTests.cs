using Duroslight.Core;
using Duroslight.Storage.Gftl;
using Duroslight.Storage.Volumes;
using FsCheck;
using FsCheck.Fluent;
using Duroslight.Tests.Shared;

namespace Duroslight.Storage.Tests.Gftl;

/// <summary>
/// Group commit: with a partition's write slots busy, arriving writes queue and go out together as one record;
/// each completes only when its record is on the device; what reads back (now and after a scan) is the last write.
/// Device writes are held by <see cref="HeldBlockIo"/> on the test thread, so the test decides what is in flight.
/// </summary>
public sealed class GroupCommitTests : HeldIoTests
{
    [Fact]
    public void Writes_queued_behind_in_flight_records_go_out_as_one_record()
    {
        // Created before the held I/O goes in: the catalog is written to the devices synchronously.
        var store = new GftlStore(Scratch.Options(shards: 1));
        IBlockVolume volume = store.Open(store.Create("v", 4 * GftlScratch.MiB).Id);
        HeldBlockIo io = Install();
        io.RecordSizes = true;
        var model = new byte[1 << 20];

        ValueTask<StorageResult> first = Write(volume, model, 0, 1, 1);
        Assert.Equal(Partition.EagerWrites, io.Held); // a lone write never waits for company
        var queued = new List<ValueTask<StorageResult>>();
        int[] lbas = [0, 3, 40, 64, 100, 200, 1, 0, 33, 250];
        for (int i = 0; i < lbas.Length; i++)
        {
            queued.Add(Write(volume, model, lbas[i], 1 + (i % 2), 10 + i)); // 15 blocks in all: less than a group
        }

        Assert.Equal(1, io.Held);
        Assert.DoesNotContain(queued, q => q.IsCompleted);
        io.ReleaseOne();
        Assert.Equal(StorageResult.Ok, Done(first));
        Assert.Equal(1, io.Held); // every queued write in one record
        Assert.DoesNotContain(queued, q => q.IsCompleted);
        io.ReleaseOne();
        Assert.All(queued, q => Assert.Equal(StorageResult.Ok, Done(q)));
        int queuedBlocks = lbas.Select((_, i) => 1 + (i % 2)).Sum();
        Assert.Equal([2 * Block, (1 + queuedBlocks) * Block], io.WriteSizes);

        AssertReads(volume, model);
        io.ReleaseAll(); // re-packs the reads above queued
        BlockIo.InstallForCurrentThread(null); // the graceful stop writes metadata synchronously
        store.Dispose();
        Scratch.TearCheckpoint();
        using var scanned = new GftlStore(Scratch.Options(shards: 1));
        Assert.Equal(GftlStartKind.Scan, scanned.Recovery.Kind);
        AssertReads(scanned.Open(scanned.List()[0].Id), model);
    }

    [Fact]
    public void Past_the_eager_slots_a_record_goes_out_once_it_carries_a_group_and_up_to_the_limit()
    {
        // 4 MiB segments: every record below fits in the first one (a new segment would split the last batch).
        var store = new GftlStore(Scratch.Options(shards: 1, segmentBytes: 4 << 20));
        IBlockVolume volume = store.Open(store.Create("v", 4 * GftlScratch.MiB).Id);
        HeldBlockIo io = Install();
        io.RecordSizes = true;
        var model = new byte[4 << 20];
        var writes = new List<ValueTask<StorageResult>>();
        for (int i = 0; i < Partition.EagerWrites; i++)
        {
            writes.Add(Write(volume, model, i, 1, 1 + i));
        }

        // Small writes wait for company until a group's worth has queued, which then goes out as one record.
        for (int i = 0; i < Partition.GroupBlocks - 1; i++)
        {
            writes.Add(Write(volume, model, 100 + i, 1, 10 + i));
        }

        Assert.Equal(Partition.EagerWrites, io.Held);
        writes.Add(Write(volume, model, 200, 1, 50));
        Assert.Equal(Partition.EagerWrites + 1, io.Held);

        // Large writes stream: each goes out at once while a slot of the limit is free, then they queue.
        int large = Partition.MaxWritesInFlight - io.Held;
        for (int i = 0; i < large + 2; i++)
        {
            writes.Add(Write(volume, model, 256 + (i * 32), 32, 60 + i));
        }

        Assert.Equal(Partition.MaxWritesInFlight, io.Held);
        io.ReleaseAll();
        Assert.All(writes, w => Assert.Equal(StorageResult.Ok, Done(w)));
        Assert.Equal((1 + Partition.GroupBlocks) * Block, io.WriteSizes[Partition.EagerWrites]);
        Assert.Equal((1 + 64) * Block, io.WriteSizes[^1]); // the two that queued behind the limit, as one record
        AssertReads(volume, model);
        io.ReleaseAll();
        BlockIo.InstallForCurrentThread(null); // the graceful stop writes metadata synchronously
        store.Dispose();
    }

    /// <summary>
    /// On its shard a partition forms records at the end of the reactor iteration: every write the iteration received
    /// shares one record, the first one included (formed at once, it went out alone with a header of its own), and
    /// nothing reaches the device before the iteration ends. Off the shard (no reactor) a lone write still goes at once.
    /// </summary>
    [Fact]
    public void On_the_shard_the_writes_of_one_iteration_go_out_as_one_record()
    {
        var (store, volume, io, iteration, channel) = OnIterationShard(Scratch.Options(shards: 1));
        var model = new byte[1 << 20];
        int[] lbas = [7, 0, 40, 64, 100, 7];
        var writes = lbas.Select((lba, i) => Write(channel, model, lba, 1, 1 + i)).ToList();

        Assert.Equal(0, io.Held);
        Assert.Equal(1, iteration.Scheduled); // once per iteration, not per write
        iteration.End();
        Assert.Equal(1, io.Held);
        io.ReleaseAll();
        Assert.All(writes, w => Assert.Equal(StorageResult.Ok, Done(w)));
        Assert.Equal([(1 + lbas.Length) * Block], io.WriteSizes);

        iteration.OnThread = false; // the control path, a test: formed at once
        ValueTask<StorageResult> alone = Write(channel, model, 200, 1, 50);
        Assert.Equal(1, io.Held);
        io.ReleaseAll();
        Assert.Equal(StorageResult.Ok, Done(alone));
        Assert.Equal(0, iteration.Scheduled);
        AssertReads(volume, model);
        io.ReleaseAll();
        BlockIo.InstallForCurrentThread(null); // the graceful stop writes metadata synchronously
        store.Dispose();
    }

    /// <summary>
    /// Formed at the end of an iteration, large writes still stream: while another write slot stays free a write of a
    /// group's worth (16 blocks) or more gets a record of its own, so 128K writes go one record each, several deep (as
    /// the disk needs), while the small writes of the iteration pack into one record.
    /// </summary>
    [Fact]
    public void At_the_end_of_an_iteration_small_writes_pack_and_large_ones_stream_while_slots_are_free()
    {
        var (store, volume, io, iteration, channel) = OnIterationShard(Scratch.Options(shards: 1, segmentBytes: 4 << 20));
        var model = new byte[4 << 20];
        var writes = new List<ValueTask<StorageResult>>();
        for (int i = 0; i < 4; i++)
        {
            writes.Add(Write(channel, model, 200 + (i * 2), 1, 10 + i)); // small ones before and between the large
            writes.Add(Write(channel, model, i * 32, 32, 1 + i));
        }

        writes.Add(Write(channel, model, 300, 2, 20));
        iteration.End();
        Assert.Equal(Partition.MaxWritesInFlight, io.Held);
        io.ReleaseAll();
        Assert.All(writes, w => Assert.Equal(StorageResult.Ok, Done(w)));
        Assert.Equal([2 * Block, 33 * Block, 2 * Block, 33 * Block, 2 * Block, 33 * Block, 2 * Block, 35 * Block], io.WriteSizes);
        AssertReads(volume, model);
        io.ReleaseAll();
        BlockIo.InstallForCurrentThread(null); // the graceful stop writes metadata synchronously
        store.Dispose();
    }

    /// <summary>A reactor shard as the partition sees it, on the test thread: work for the end of the iteration waits for <see cref="End"/>.</summary>
    private sealed class IterationPoster : IWorkPoster
    {
        private readonly List<Action> _atEnd = [];

        public bool OnThread { get; set; } = true;
        public int Scheduled => _atEnd.Count;
        public bool IsCurrent => OnThread;

        public void Post(Action work) => work();

        public void AtIterationEnd(Action work) => _atEnd.Add(work);

        public void End()
        {
            Action[] work = [.. _atEnd];
            _atEnd.Clear();
            foreach (Action w in work)
            {
                w();
            }
        }
    }

    /// <summary>
    /// Property: any mix of writes and trims, with device writes completing in between at random, reads back as the
    /// last operation on each block, before and after a scan; no record is larger than a batch allows.
    /// </summary>
    [Fact]
    public void Any_interleaving_of_queued_writes_and_completions_reads_back_the_last_write()
    {
        Gen<(int Lba, int Count, int Release, bool Trim)> op =
            from lba in Gen.Choose(0, 255)
            from count in Gen.Choose(1, 32)
            from release in Gen.Choose(0, 3)
            from trim in Gen.Choose(0, 9)
            select (lba, Math.Min(count, 32 - (lba % 32)), release, trim == 0);
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(60), Prop.ForAll(Arb.From(op.ListOf()), ops =>
        {
            using var scratch = new GftlScratch();
            GftlOptions options = scratch.Options(shards: 2, segmentBytes: 256 * 1024);
            var store = new GftlStore(options);
            IBlockVolume volume = store.Open(store.Create("v", 1 * GftlScratch.MiB).Id);
            HeldBlockIo io = Install();
            io.RecordSizes = true;
            var model = new byte[1 << 20];
            var pending = new List<ValueTask<StorageResult>>();
            int value = 1;
            foreach ((int lba, int count, int release, bool trim) in ops)
            {
                if (trim)
                {
                    Array.Clear(model, lba * Block, count * Block);
                    pending.Add(volume.DeallocateAsync((long)lba * Block, count * Block));
                }
                else
                {
                    pending.Add(Write(volume, model, lba, count, value++));
                }

                for (int i = 0; i < release && io.Held > 0; i++)
                {
                    io.ReleaseOne();
                }
            }

            io.ReleaseAll();
            Assert.All(pending, p => Assert.Equal(StorageResult.Ok, Done(p)));
            Assert.All(io.WriteSizes, size => Assert.True(size <= (1 + Partition.BatchDataBlocks) * Block));
            AssertReads(volume, model);
            io.ReleaseAll(); // re-packs the reads above queued
            BlockIo.InstallForCurrentThread(null); // the graceful stop writes metadata synchronously
            store.Dispose();
            scratch.TearCheckpoint();
            using var scanned = new GftlStore(options);
            AssertReads(scanned.Open(scanned.List()[0].Id), model);
        }));
    }

    /// <summary>
    /// Reads, writes, trims and flushes whose device I/O completes later (as on the reactor) allocate nothing per operation.
    /// Measured over a long warmed loop; the bound (8 B per operation) separates "allocates per call" (24 B or
    /// more for the smallest object) from runtime noise. The device is large enough that the collector never has
    /// to run in the foreground (its allocations per cleaned segment are not part of this check).
    /// </summary>
    [Fact]
    public void Writes_reads_trims_and_flushes_completing_later_do_not_allocate_per_operation()
    {
        var store = new GftlStore(Scratch.Options(shards: 2, deviceBytes: 1024 * GftlScratch.MiB));
        try
        {
            IBlockVolume volume = store.Open(store.Create("v", 8 * GftlScratch.MiB).Id);
            HeldBlockIo io = Install();
            io.HoldReads = true;
            io.HoldSyncs = true;
            byte[] data = new byte[8 * Block];
            using var native = new NativeBuffer(8 * Block);
            var pending = new ValueTask<StorageResult>[18];
            const int rounds = 500;
            AllocationProbe.AssertNoAllocationPerOp(() => RunDepth8(volume, io, data, native, pending, rounds),
                opsPerRound: rounds * pending.Length, what: "GFTL writes, reads, trims and flushes completing later");
        }
        finally
        {
            BlockIo.InstallForCurrentThread(null); // the graceful stop writes metadata and syncs synchronously (held: it would hang)
            store.Dispose();
        }
    }

    /// <summary>Each round: 8 writes, 8 reads (half into an aligned native buffer, read without a bounce), 1 trim, 1 flush, all in flight together.</summary>
    private static void RunDepth8(IBlockVolume volume, HeldBlockIo io, byte[] data, NativeBuffer native, ValueTask<StorageResult>[] pending, int rounds)
    {
        for (int round = 0; round < rounds; round++)
        {
            for (int i = 0; i < 8; i++)
            {
                long offset = ((round * 7919L) + (i * 104729L)) % 2000 * Block;
                pending[i] = volume.WriteAsync(offset, data.AsMemory(0, Block));
                pending[8 + i] = i % 2 == 0
                    ? volume.ReadAsync(offset / (8 * Block) * (8 * Block), native.Memory)
                    : volume.ReadAsync(offset, data.AsMemory(Block, Block));
            }

            pending[16] = volume.DeallocateAsync(((round * 31L) % 2000) * Block, Block);
            pending[17] = volume.FlushAsync();
            io.ReleaseAll();
            foreach (ValueTask<StorageResult> p in pending)
            {
                if (!p.IsCompleted || p.Result != StorageResult.Ok)
                {
                    throw new InvalidOperationException("an operation did not complete with Ok");
                }
            }
        }
    }

    /// <summary>The result of an operation that must have completed by now.</summary>
    private static StorageResult Done(ValueTask<StorageResult> operation)
    {
        Assert.True(operation.IsCompleted);
        return operation.Result;
    }

    /// <summary>
    /// A one-shard store with a 4 MiB volume, device writes held on this thread (sizes recorded), and a channel of the
    /// volume on a shard whose loop iteration the test ends (<see cref="IterationPoster.End"/>).
    /// </summary>
    private (GftlStore Store, IBlockVolume Volume, HeldBlockIo Io, IterationPoster Iteration, IVolumeChannel Channel) OnIterationShard(GftlOptions options)
    {
        var store = new GftlStore(options);
        IBlockVolume volume = store.Open(store.Create("v", 4 * GftlScratch.MiB).Id);
        HeldBlockIo io = Install();
        io.RecordSizes = true;
        var iteration = new IterationPoster();
        return (store, volume, io, iteration, volume.OpenChannel(new StorageShard(0, 1, io, iteration)));
    }

    private HeldBlockIo Install()
    {
        SynchronizationContext.SetSynchronizationContext(null);
        var io = new HeldBlockIo();
        BlockIo.InstallForCurrentThread(io);
        return io;
    }

    private static ValueTask<StorageResult> Write(IBlockVolume volume, byte[] model, int lba, int count, int value) =>
        volume.WriteAsync((long)lba * Block, Data(model, lba, count, value));

    private static ValueTask<StorageResult> Write(IVolumeChannel channel, byte[] model, int lba, int count, int value) =>
        channel.WriteAsync((long)lba * Block, Data(model, lba, count, value));

    /// <summary>A write's data (each block tagged with its value), copied into the model.</summary>
    private static byte[] Data(byte[] model, int lba, int count, int value)
    {
        byte[] data = new byte[count * Block];
        for (int b = 0; b < count; b++)
        {
            BitConverter.TryWriteBytes(data.AsSpan(b * Block), value * 1000 + b);
            data[(b * Block) + 100] = (byte)value;
        }

        data.CopyTo(model, lba * Block);
        return data;
    }

    private static void AssertReads(IBlockVolume volume, byte[] model)
    {
        var read = new byte[model.Length];
        for (int offset = 0; offset < model.Length; offset += 128 * 1024)
        {
            ValueTask<StorageResult> result = volume.ReadAsync(offset, read.AsMemory(offset, 128 * 1024));
            Assert.Equal(StorageResult.Ok, result.AsTask().GetAwaiter().GetResult());
        }

        for (int block = 0; block < model.Length / Block; block++)
        {
            Assert.True(model.AsSpan(block * Block, Block).SequenceEqual(read.AsSpan(block * Block, Block)), $"block {block} differs");
        }
    }
}
