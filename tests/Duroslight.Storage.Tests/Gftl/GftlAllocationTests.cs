using Duroslight.Core;
using Duroslight.Storage.Gftl;
using Duroslight.Storage.Volumes;
using Duroslight.Tests.Shared;
using Microsoft.Win32.SafeHandles;

namespace Duroslight.Storage.Tests.Gftl;

/// <summary>The I/O path allocates nothing in steady state (measured with an allocation-free IBlockIo on this thread).</summary>
public sealed class GftlAllocationTests : IDisposable
{
    private readonly GftlScratch _scratch = new();
    private readonly SynchronizationContext? _context = SynchronizationContext.Current;

    public void Dispose()
    {
        BlockIo.InstallForCurrentThread(null);
        SynchronizationContext.SetSynchronizationContext(_context);
        _scratch.Dispose();
    }

    [Fact]
    public void Steady_state_writes_reads_and_trims_do_not_allocate()
    {
        using var store = new GftlStore(_scratch.Options(deviceBytes: 256 * GftlScratch.MiB, shards: 2));
        IBlockVolume volume = store.Open(store.Create("v", 4 * GftlScratch.MiB).Id);
        BlockIo.InstallForCurrentThread(new DirectBlockIo());
        byte[] data = new byte[8192];
        // Each round: 2000 writes, 2000 reads, 250 trims. The warm-up fills pools, map chunks and segments.
        AllocationProbe.AssertNoAllocationPerOp(() => Run(volume, data, 2000), opsPerRound: 4250, what: "GFTL write/read/trim");
    }

    /// <summary>
    /// The same with the background collector cleaning all along (a 64 MiB device whose 40 MiB volume is overwritten
    /// at random): the collector runs on its own thread, and the I/O thread allocates nothing per operation while
    /// its writes relocate around it and its reads race the cleaning. A write that finds no free segment waits for
    /// the collector (rare here): its wait allocates once, not per I/O, and is counted.
    /// </summary>
    [Fact]
    public void Writes_reads_and_trims_do_not_allocate_while_the_collector_cleans()
    {
        using var store = new GftlStore(_scratch.Options(deviceBytes: 64 * GftlScratch.MiB, shards: 2, backgroundGc: true));
        IBlockVolume volume = store.Open(store.Create("v", 40 * GftlScratch.MiB).Id);
        BlockIo.InstallForCurrentThread(new DirectBlockIo());
        byte[] data = new byte[8192];
        long next = 0;
        for (long offset = 0; offset < volume.SizeBytes; offset += data.Length)
        {
            Wait(volume.WriteAsync(offset, data)); // filled: every overwrite from now on leaves garbage behind
        }

        long cleaned = store.GcSegmentsCleaned;
        AllocationProbe.AssertNoAllocationPerOp(() => RunRandom(volume, data, 2000, ref next), opsPerRound: 4250, what: "GFTL I/O with the collector running");
        Assert.True(store.GcSegmentsCleaned > cleaned, "the collector never ran during the probe");
    }

    /// <summary>
    /// As on a reactor with one shard: the collector's slices run on the I/O thread (posted to its shard, between host
    /// I/O) and every device read, write and sync completes later (<see cref="HeldBlockIo"/>, released by this thread as
    /// a ring's completions are reaped), so the collector's own work is counted with the host's writes, reads and
    /// trims. The thread allocates nothing per operation while segments are cleaned.
    /// </summary>
    [Fact]
    public void On_its_shard_the_collector_allocates_nothing_per_io()
    {
        using var store = new GftlStore(_scratch.Options(deviceBytes: 64 * GftlScratch.MiB, shards: 1, backgroundGc: true));
        IBlockVolume volume = store.Open(store.Create("v", 40 * GftlScratch.MiB).Id);
        var io = new HeldBlockIo { HoldReads = true, HoldSyncs = true };
        BlockIo.InstallForCurrentThread(io);
        SynchronizationContext.SetSynchronizationContext(null); // completions continue here, inline, as on a shard
        var shard = new InlineShard(io);
        IVolumeChannel channel = volume.OpenChannel(new StorageShard(0, 1, io, shard));
        byte[] data = new byte[8192];
        for (long offset = 0; offset < volume.SizeBytes; offset += data.Length)
        {
            shard.Wait(channel.WriteAsync(offset, data));
        }

        long next = 0;
        long cleaned = store.GcSegmentsCleaned;
        AllocationProbe.AssertNoAllocationPerOp(() => RunRandom(channel, shard, data, 2000, ref next), opsPerRound: 4250, what: "GFTL I/O and the collector on one shard");
        shard.Drain(); // the store's stop syncs and waits for a running collection: nothing may be left held
        BlockIo.InstallForCurrentThread(null);
        Assert.True(store.GcSegmentsCleaned > cleaned, "the collector never ran during the probe");
        Assert.Equal(0, store.GcSlicesOffShard);
    }

    private static void RunRandom(IVolumeChannel channel, InlineShard shard, byte[] data, int count, ref long next)
    {
        long slots = 40 * GftlScratch.MiB / data.Length;
        for (int i = 0; i < count; i++)
        {
            long offset = (next++ * 7919L % slots) * data.Length;
            shard.Wait(channel.WriteAsync(offset, data));
            shard.Wait(channel.ReadAsync(offset, data));
            if (i % 8 == 0)
            {
                shard.Wait(channel.DeallocateAsync(offset, 4096));
            }
        }
    }

    /// <summary>
    /// A shard run by the test thread while it waits for an operation: held device completions first (oldest first,
    /// one at a time), posted work when none is held.
    /// </summary>
    private sealed class InlineShard(HeldBlockIo io) : IWorkPoster
    {
        private readonly Queue<Action> _posted = new();

        public void Post(Action work)
        {
            lock (_posted)
            {
                _posted.Enqueue(work);
            }
        }

        public void Wait(ValueTask<StorageResult> pending)
        {
            while (!pending.IsCompleted)
            {
                if (io.Held > 0)
                {
                    io.ReleaseOne();
                }
                else if (!RunPosted())
                {
                    throw new InvalidOperationException("nothing posted or held, and the operation is not over");
                }
            }

            if (pending.Result != StorageResult.Ok)
            {
                throw new InvalidOperationException("the operation failed: " + pending.Result);
            }
        }

        /// <summary>Runs until nothing is held or posted (the collector has gone idle).</summary>
        public void Drain()
        {
            while (io.Held > 0 || RunPosted())
            {
                if (io.Held > 0)
                {
                    io.ReleaseOne();
                }
            }
        }

        private bool RunPosted()
        {
            Action? work;
            lock (_posted)
            {
                if (!_posted.TryDequeue(out work))
                {
                    return false;
                }
            }

            work();
            return true;
        }
    }

    /// <summary>Like <see cref="Run"/> over the whole volume, each round at new offsets.</summary>
    private static void RunRandom(IBlockVolume volume, byte[] data, int count, ref long next)
    {
        long slots = volume.SizeBytes / data.Length;
        for (int i = 0; i < count; i++)
        {
            long offset = (next++ * 7919L % slots) * data.Length;
            Wait(volume.WriteAsync(offset, data));
            Wait(volume.ReadAsync(offset, data));
            if (i % 8 == 0)
            {
                Wait(volume.DeallocateAsync(offset, 4096));
            }
        }
    }

    /// <summary>Spins until the operation is over (a write may wait for the collector's thread) and checks it.</summary>
    private static void Wait(ValueTask<StorageResult> pending)
    {
        while (!pending.IsCompleted)
        {
            Thread.Yield();
        }

        if (pending.Result != StorageResult.Ok)
        {
            throw new InvalidOperationException("the operation failed: " + pending.Result);
        }
    }

    private static void Run(IBlockVolume volume, byte[] data, int count)
    {
        for (int i = 0; i < count; i++)
        {
            long offset = (i * 7919L % 500) * 8192;
            Check(volume.WriteAsync(offset, data));
            Check(volume.ReadAsync(offset, data));
            if (i % 8 == 0)
            {
                Check(volume.DeallocateAsync(offset, 4096));
            }
        }
    }

    /// <summary>Plain checks: xunit's asserts allocate, which would be counted.</summary>
    private static void Check(ValueTask<StorageResult> pending)
    {
        if (!pending.IsCompletedSuccessfully || pending.Result != StorageResult.Ok)
        {
            throw new InvalidOperationException("the operation did not complete synchronously with Ok");
        }
    }

    /// <summary>pread/pwrite without closures, completing synchronously.</summary>
    private sealed class DirectBlockIo : IBlockIo
    {
        public ValueTask<int> ReadAsync(SafeFileHandle file, Memory<byte> buffer, long offset) =>
            new(RandomAccess.Read(file, buffer.Span, offset));

        public ValueTask<int> WriteAsync(SafeFileHandle file, ReadOnlyMemory<byte> buffer, long offset)
        {
            RandomAccess.Write(file, buffer.Span, offset);
            return new(buffer.Length);
        }

        public ValueTask<int> SyncAsync(SafeFileHandle file) => new(0);
    }
}
