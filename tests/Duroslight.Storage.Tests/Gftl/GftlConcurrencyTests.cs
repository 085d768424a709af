using System.Buffers.Binary;
using Duroslight.Storage.Gftl;
using Duroslight.Storage.Tests.Volumes;
using Duroslight.Storage.Volumes;
using Duroslight.Tests.Shared;

namespace Duroslight.Storage.Tests.Gftl;

/// <summary>Writers, trims, reads and the collector at once, from many threads (the reactor's shards, or the control plane).</summary>
public sealed class GftlConcurrencyTests : IDisposable
{
    private const int Block = 4096;
    private const int Blocks = 1024;
    private readonly GftlScratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    /// <summary>Each task owns a region, so every read it makes has one right answer, while the collector moves blocks under it.</summary>
    [Fact]
    public async Task Reads_see_the_last_write_while_the_collector_moves_blocks()
    {
        using var store = new GftlStore(_scratch.Options(deviceBytes: 12 * GftlScratch.MiB, shards: 4, segmentBytes: 256 * 1024, backgroundGc: true));
        IBlockVolume volume = store.Open(store.Create("v", Blocks * Block).Id);
        using var stop = new CancellationTokenSource();
        Task collector = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                await store.CollectGarbageAsync(2);
            }
        });
        var workers = new Task[4];
        for (int w = 0; w < workers.Length; w++)
        {
            int region = w;
            workers[w] = Task.Run(() => OwnRegionAsync(volume, region, stop.Token));
        }

        // At least 4 s of load, and on a loaded machine until the collector has moved something.
        await Task.Delay(TimeSpan.FromSeconds(4));
        await Eventually.Until(() => store.GcSegmentsCleaned > 0 || Array.Exists(workers, w => w.IsCompleted), "a segment cleaned under load", TimeSpan.FromSeconds(120));
        await stop.CancelAsync();
        await Task.WhenAll(workers);
        await collector;
        Assert.True(store.GcSegmentsCleaned > 0);
    }

    /// <summary>Racing writes and trims on the same blocks may land in either order, but a scan must rebuild exactly what memory had.</summary>
    [Fact]
    public async Task Racing_writes_and_trims_on_the_same_blocks_recover_to_what_memory_showed()
    {
        GftlOptions options = _scratch.Options(deviceBytes: 16 * GftlScratch.MiB, shards: 4, segmentBytes: 256 * 1024, backgroundGc: true);
        Guid id;
        byte[] before;
        using (var store = new GftlStore(options))
        {
            id = store.Create("v", 64 * Block).Id;
            IBlockVolume volume = store.Open(id);
            var racers = new Task[6];
            for (int r = 0; r < racers.Length; r++)
            {
                int seed = r;
                racers[r] = Task.Run(async () =>
                {
                    var random = new Random(seed);
                    for (int i = 0; i < 1500; i++)
                    {
                        int count = random.Next(1, 9), start = random.Next(64 - count);
                        StorageResult result = random.Next(3) == 0
                            ? await volume.DeallocateAsync((long)start * Block, (long)count * Block)
                            : await volume.WriteAsync((long)start * Block, Data(start, count, (seed << 20) | (i << 4)));
                        Assert.Equal(StorageResult.Ok, result);
                    }
                });
            }

            await Task.WhenAll(racers);
            before = await VolumeStoreContractTests.ReadAsync(volume, 0, 64 * Block);
        }

        _scratch.TearCheckpoint();
        using var reopened = new GftlStore(options);
        Assert.Equal(GftlStartKind.Scan, reopened.Recovery.Kind);
        Assert.Equal(before, await VolumeStoreContractTests.ReadAsync(reopened.Open(id), 0, 64 * Block));
    }

    private static async Task OwnRegionAsync(IBlockVolume volume, int region, CancellationToken stop)
    {
        var random = new Random(region);
        int first = region * (Blocks / 4), size = Blocks / 4;
        var model = new int[size];
        var buffer = new byte[16 * Block];
        for (int i = 1; !stop.IsCancellationRequested; i++)
        {
            int count = random.Next(1, 17), start = random.Next(size - count);
            int kind = random.Next(4);
            if (kind == 0)
            {
                Assert.Equal(StorageResult.Ok, await volume.DeallocateAsync((long)(first + start) * Block, (long)count * Block));
                Array.Clear(model, start, count);
            }
            else if (kind == 1)
            {
                Assert.Equal(StorageResult.Ok, await volume.ReadAsync((long)(first + start) * Block, buffer.AsMemory(0, count * Block)));
                for (int b = 0; b < count; b++)
                {
                    Assert.True(buffer.AsSpan(b * Block, Block).SequenceEqual(Data(first + start + b, 1, model[start + b])), $"region {region} block {start + b}");
                }
            }
            else
            {
                int value = (region << 24) | (i << 5);
                Assert.Equal(StorageResult.Ok, await volume.WriteAsync((long)(first + start) * Block, Data(first + start, count, value)));
                for (int b = 0; b < count; b++)
                {
                    model[start + b] = value + b;
                }
            }
        }
    }

    private static byte[] Data(int lba, int count, int value)
    {
        var data = new byte[count * Block];
        for (int b = 0; value != 0 && b < count; b++)
        {
            Span<byte> block = data.AsSpan(b * Block, Block);
            block.Fill((byte)((value + b) ^ (lba + b)));
            BinaryPrimitives.WriteInt32LittleEndian(block, value + b);
        }

        return data;
    }
}
