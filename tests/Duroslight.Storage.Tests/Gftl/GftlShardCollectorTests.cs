using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Duroslight.Core;
using Duroslight.Storage.Gftl;
using Duroslight.Storage.Volumes;
using Microsoft.Win32.SafeHandles;
using static Duroslight.Storage.Tests.Volumes.VolumeStoreContractTests;

namespace Duroslight.Storage.Tests.Gftl;

/// <summary>
/// With one shard (<c>--cores 1</c>), the collector runs on the shard's thread in slices between host writes: it cleans
/// segments while the writes keep completing, and none of its work (or any device I/O) runs anywhere else.
/// </summary>
public sealed class GftlShardCollectorTests : IDisposable
{
    private const int Block = 4096;
    private const int WriteBlocks = 8;
    private const int Writes = 4000;
    private const long VolumeBytes = 32 * GftlScratch.MiB;
    private readonly GftlScratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public async Task The_collector_cleans_on_the_one_shard_between_host_writes_that_keep_completing()
    {
        var io = new ShardOnlyBlockIo(SyncBlockIo.Instance, (int)GftlScratch.MiB);
        using var shard = new TestShard(io);
        io.Owner = shard.ThreadId;
        GftlOptions options = _scratch.Options(shards: 1, backgroundGc: true);
        var store = new GftlStore(options);
        byte[] model = new byte[VolumeBytes];
        var writer = new Writer(store, store.Open(store.Create("v", VolumeBytes).Id), shard, io, model, Writes, WriteBlocks, RandomOffset);
        try
        {
            shard.Post(writer.Start);
            await writer.Done.Task.WaitAsync(TimeSpan.FromMinutes(10));

            Assert.Null(shard.Failure);
            Assert.Equal(0, writer.Failed);
            Assert.Equal(Writes, writer.Completed);
            Assert.True(writer.CleanedBeforeLastWrite > 0, "the collector freed no segment while the host was writing");
            Assert.True(writer.CompletedAfterCollectorStarted > 0, "no host write completed after the collector's first victim read");
            Assert.True(io.VictimReads > 0, "the collector did not read its victims through the shard's I/O");
            Assert.Equal(0, io.OffShardCalls);
            Assert.Equal(0, store.GcSlicesOffShard);
            Assert.True(store.GcSlices >= 2 * store.GcSegmentsCleaned, $"{store.GcSlices} slices for {store.GcSegmentsCleaned} segments");
            Assert.Equal(model, await ReadAsync(store.Open(writer.VolumeId), 0, model.Length));
        }
        finally
        {
            store.Dispose(); // while the shard runs: a slice in progress finishes there
        }

        Assert.Equal(0, io.OffShardCalls);
    }

    /// <summary>
    /// A sequential overwrite (128 KiB writes, front to back, over and over) leaves every segment it filled dead once
    /// the next pass has rewritten it: the collector frees such segments without reading them, several under one sync,
    /// so it keeps up with a stream of large writes.
    /// </summary>
    [Fact]
    public async Task Segments_a_sequential_overwrite_left_dead_are_freed_without_a_read_and_several_per_sync()
    {
        const int chunkBlocks = 32, writes = 3000;
        var io = new ShardOnlyBlockIo(SyncBlockIo.Instance, (int)GftlScratch.MiB);
        using var shard = new TestShard(io);
        io.Owner = shard.ThreadId;
        var store = new GftlStore(_scratch.Options(shards: 1, backgroundGc: true));
        byte[] model = new byte[VolumeBytes];
        long next = 0;
        long Sequential(Random _) => next++ * chunkBlocks * Block % VolumeBytes;
        var writer = new Writer(store, store.Open(store.Create("v", VolumeBytes).Id), shard, io, model, writes, chunkBlocks, Sequential);
        try
        {
            shard.Post(writer.Start);
            await writer.Done.Task.WaitAsync(TimeSpan.FromMinutes(10));

            Assert.Null(shard.Failure);
            Assert.Equal(writes, writer.Completed);
            Assert.Equal(0, writer.Failed);
            long cleaned = store.GcSegmentsCleaned;
            Assert.True(cleaned > 64, $"the collector freed {cleaned} segments: the 64 MiB device was not rewritten several times over");
            Assert.Equal(0, io.VictimReads);
            Assert.True(io.Syncs * 4 <= cleaned, $"{io.Syncs} syncs for {cleaned} segments freed");
            Assert.Equal(model, await ReadAsync(store.Open(writer.VolumeId), 0, model.Length));
        }
        finally
        {
            store.Dispose();
        }
    }

    /// <summary>
    /// A sync makes the device write back everything written since the previous one, so a sequential overwrite
    /// (128 KiB writes, front to back) on a 512 MiB device of 1 MiB segments gets its dead segments freed 1/8 of the
    /// device at a time: at least 32 segments per sync (with a fixed batch of 8 to 16 dead segments, one sync per
    /// 8-16 MiB written).
    /// </summary>
    [Fact]
    public async Task Dead_segments_are_freed_an_eighth_of_the_device_per_sync()
    {
        const int chunkBlocks = 32, writes = 6000;
        var io = new ShardOnlyBlockIo(SyncBlockIo.Instance, (int)GftlScratch.MiB);
        using var shard = new TestShard(io);
        io.Owner = shard.ThreadId;
        var store = new GftlStore(_scratch.Options(deviceBytes: 512 * GftlScratch.MiB, shards: 1, backgroundGc: true));
        byte[] model = new byte[VolumeBytes];
        long next = 0;
        long Sequential(Random _) => next++ * chunkBlocks * Block % VolumeBytes;
        var writer = new Writer(store, store.Open(store.Create("v", VolumeBytes).Id), shard, io, model, writes, chunkBlocks, Sequential);
        try
        {
            shard.Post(writer.Start);
            await writer.Done.Task.WaitAsync(TimeSpan.FromMinutes(10));

            Assert.Null(shard.Failure);
            Assert.Equal(0, writer.Failed);
            long cleaned = store.GcSegmentsCleaned;
            Assert.True(cleaned >= 64, $"the collector freed {cleaned} segments");
            Assert.True(io.Syncs * 32 <= cleaned, $"{io.Syncs} syncs for {cleaned} segments freed");
            Assert.Equal(model, await ReadAsync(store.Open(writer.VolumeId), 0, model.Length));
        }
        finally
        {
            store.Dispose();
        }
    }

    private static long RandomOffset(Random random) => (long)random.Next((int)(VolumeBytes / Block) - WriteBlocks) * Block;

    /// <summary>QD1 writes at offsets <paramref name="offset"/> picks, issued on the shard, each posting the next when it completes (the shard's loop runs in between).</summary>
    private sealed class Writer(GftlStore store, IBlockVolume volume, TestShard shard, ShardOnlyBlockIo io, byte[] model,
        int writes, int blocks, Func<Random, long> offset)
    {
        private readonly IVolumeChannel _channel = volume.OpenChannel(new StorageShard(0, 1, io, shard));
        private readonly Random _random = new(16);
        private readonly byte[] _buffer = new byte[blocks * Block];
        private int _issued;

        public Guid VolumeId => volume.Id;
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public int Completed { get; private set; }
        public int Failed { get; private set; }
        public int CompletedAfterCollectorStarted { get; private set; }
        public long CleanedBeforeLastWrite { get; private set; }

        public void Start() => Next();

        private void Next()
        {
            if (_issued == writes)
            {
                CleanedBeforeLastWrite = store.GcSegmentsCleaned;
                Done.SetResult();
                return;
            }

            _issued++;
            long at = offset(_random);
            _random.NextBytes(_buffer);
            _buffer.CopyTo(model, at);
            ValueTask<StorageResult> write = _channel.WriteAsync(at, _buffer);
            if (write.IsCompleted)
            {
                Finish(write.GetAwaiter().GetResult());
                return;
            }

            ValueTaskAwaiter<StorageResult> awaiter = write.GetAwaiter();
            awaiter.OnCompleted(() => Finish(awaiter.GetResult()));
        }

        private void Finish(StorageResult result)
        {
            Completed++;
            Failed += result == StorageResult.Ok ? 0 : 1;
            CompletedAfterCollectorStarted += io.VictimReads > 0 ? 1 : 0;
            shard.Post(Next);
        }
    }

    /// <summary>A stand-in for a reactor shard: one thread running posted work in order, with its own device I/O installed.</summary>
    private sealed class TestShard : IWorkPoster, IDisposable
    {
        private readonly BlockingCollection<Action> _queue = [];
        private readonly Thread _thread;

        public TestShard(IBlockIo io)
        {
            _thread = new Thread(() => Run(io)) { IsBackground = true, Name = "test-shard" };
            _thread.Start();
        }

        public int ThreadId => _thread.ManagedThreadId;
        public Exception? Failure { get; private set; }

        public void Post(Action work) => _queue.Add(work);

        public void Dispose()
        {
            _queue.CompleteAdding();
            _thread.Join();
        }

        private void Run(IBlockIo io)
        {
            BlockIo.InstallForCurrentThread(io);
            foreach (Action work in _queue.GetConsumingEnumerable())
            {
                try
                {
                    work();
                }
                catch (Exception e)
                {
                    Failure ??= e;
                }
            }
        }
    }

    /// <summary>The shard's device I/O: counts calls from any other thread, and the collector's whole-segment victim reads.</summary>
    private sealed class ShardOnlyBlockIo(IBlockIo inner, int segmentBytes) : IBlockIo
    {
        private int _offShard;
        private int _victimReads;
        private int _syncs;

        public int Owner { get; set; } = -1;
        public int OffShardCalls => Volatile.Read(ref _offShard);
        public int VictimReads => Volatile.Read(ref _victimReads);
        public int Syncs => Volatile.Read(ref _syncs);

        public ValueTask<int> ReadAsync(SafeFileHandle file, Memory<byte> buffer, long offset)
        {
            Check();
            if (buffer.Length == segmentBytes)
            {
                Interlocked.Increment(ref _victimReads);
            }

            return inner.ReadAsync(file, buffer, offset);
        }

        public ValueTask<int> WriteAsync(SafeFileHandle file, ReadOnlyMemory<byte> buffer, long offset)
        {
            Check();
            return inner.WriteAsync(file, buffer, offset);
        }

        public ValueTask<int> SyncAsync(SafeFileHandle file)
        {
            Check();
            Interlocked.Increment(ref _syncs);
            return inner.SyncAsync(file);
        }

        private void Check()
        {
            if (Environment.CurrentManagedThreadId != Owner)
            {
                Interlocked.Increment(ref _offShard);
            }
        }
    }
}
