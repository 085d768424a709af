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

    public void Dispose()
    {
        BlockIo.InstallForCurrentThread(null);
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
