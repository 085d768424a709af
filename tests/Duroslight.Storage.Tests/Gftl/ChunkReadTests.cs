using System.Runtime.InteropServices;
using Duroslight.Core;
using Duroslight.Storage.Gftl;
using Duroslight.Storage.Volumes;

namespace Duroslight.Storage.Tests.Gftl;

/// <summary>
/// A chunk read issues every device run of its chunk at once (adjacent blocks on the device as one read, even when
/// different host writes put them there) straight into the caller's buffer when it is aligned native memory.
/// </summary>
public sealed class ChunkReadTests : HeldIoTests
{
    private const int Chunk = 32 * Block;

    [Fact]
    public void A_fragmented_chunk_reads_its_runs_in_parallel_straight_into_an_aligned_buffer()
    {
        SynchronizationContext.SetSynchronizationContext(null);
        var store = new GftlStore(Scratch.Options(shards: 1));
        IBlockVolume volume = store.Open(store.Create("v", 4 * GftlScratch.MiB).Id);
        var io = new HeldBlockIo();
        BlockIo.InstallForCurrentThread(io);
        var model = new byte[2 * Chunk];

        // The eager write slots busy with writes to chunk 0, two writes of chunk 1 queue behind them and go out as
        // one record: their blocks are adjacent on the device although two host writes put them there.
        var eager = new ValueTask<StorageResult>[Partition.EagerWrites];
        for (int i = 0; i < eager.Length; i++)
        {
            eager[i] = Start(volume, model, i, 1, 10 + i);
        }

        ValueTask<StorageResult> low = Start(volume, model, 32, 8, 20), high = Start(volume, model, 40, 8, 21);
        io.ReleaseAll();
        Assert.All(eager, AssertOk);
        AssertOk(low);
        AssertOk(high);
        Write(volume, io, model, 48, 16, 22); // blocks 48-63: a record of their own, after a header

        using var destination = new NativeBuffer(Chunk);
        destination.GetSpan().Fill(0xEE);
        io.HoldReads = true;
        ValueTask<StorageResult> read = volume.ReadAsync(Chunk, destination.Memory);
        Assert.Equal(2, io.Held); // blocks 32-47 (two writes, one run) and 48-63, both issued before either completes
        for (int i = 0; i < io.Held; i++)
        {
            Assert.True(MemoryMarshal.TryGetMemoryManager<byte, NativeBuffer>(io.HeldBuffer(i), out NativeBuffer? target, out _, out _));
            Assert.Same(destination, target); // no bounce buffer in between
        }

        io.ReleaseAll();
        AssertOk(read);
        Assert.Equal(model.AsSpan(Chunk, Chunk).ToArray(), destination.GetSpan().ToArray());
        BlockIo.InstallForCurrentThread(null);
        store.Dispose();
    }
}
