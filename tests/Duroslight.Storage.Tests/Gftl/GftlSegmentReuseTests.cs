using Duroslight.Core;
using Duroslight.Storage.Gftl;
using Duroslight.Storage.Volumes;
using static Duroslight.Storage.Tests.Volumes.VolumeStoreContractTests;

namespace Duroslight.Storage.Tests.Gftl;

/// <summary>
/// Which free segment the log takes: one written before (freed by the collector) ahead of a never-written one, and
/// segments a sequential overwrite killed are freed before the log runs into never-written space (on a file-backed
/// device a first write into a block costs the filesystem an allocation).
/// </summary>
public sealed class GftlSegmentReuseTests : IDisposable
{
    private const long MiB = GftlScratch.MiB;
    private const int Write = 128 * 1024;
    private readonly GftlScratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    /// <summary>
    /// An 8 MiB volume overwritten front to back 16 times (128 MiB) on a 128 MiB device of 1 MiB segments: the log
    /// needs the volume's segments plus the dead ones waiting for a batch, not the device. Without the early freeing
    /// the collector waits for the low-water mark, so every segment of the device is filled once first.
    /// </summary>
    [Fact]
    public async Task A_sequential_overwrite_reuses_the_segments_it_killed_instead_of_filling_never_written_ones()
    {
        using var store = new GftlStore(_scratch.Options(deviceBytes: 128 * MiB, shards: 1, backgroundGc: true));
        const long volumeBytes = 8 * MiB;
        IBlockVolume volume = store.Open(store.Create("v", volumeBytes).Id);
        var model = new byte[volumeBytes];
        for (int pass = 0; pass < 16; pass++)
        {
            for (long at = 0; at < volumeBytes; at += Write)
            {
                byte[] data = Pattern(Write, (pass * 1000) + (int)(at / Write));
                data.CopyTo(model, at);
                await WriteAsync(volume, at, data);
            }
        }

        long segments = store.PhysicalCapacityBytes / store.SegmentBytes;
        Assert.True(store.FreshSegmentsOpened < segments / 2,
            $"{store.FreshSegmentsOpened} of {segments} segments opened never written ({store.ReusedSegmentsOpened} reused)");
        Assert.True(store.ReusedSegmentsOpened > segments / 2, $"only {store.ReusedSegmentsOpened} segments reused");
        Assert.Equal(model, await ReadAsync(volume, 0, model.Length));
    }

    /// <summary>
    /// After a restart the high-water mark is one past the highest segment in use: the segments below it that are free
    /// count as written (taken first), the ones above as never written.
    /// </summary>
    [Fact]
    public async Task After_a_restart_free_segments_below_the_highest_one_in_use_are_taken_first()
    {
        GftlOptions options = _scratch.Options(deviceBytes: 32 * MiB, shards: 1);
        Guid id;
        using (var store = new GftlStore(options))
        {
            id = store.Create("v", 8 * MiB).Id;
            IBlockVolume volume = store.Open(id);
            for (long at = 0; at < 4 * MiB; at += Write)
            {
                await WriteAsync(volume, at, Pattern(Write, (int)(at / Write)));
            }

            // The first segments die (overwritten further up), then the collector frees them.
            for (long at = 0; at < 2 * MiB; at += Write)
            {
                await WriteAsync(volume, at, Pattern(Write, 500 + (int)(at / Write)));
            }

            Assert.True(await store.CollectGarbageAsync() > 0);
        }

        using var reopened = new GftlStore(options);
        long freshBefore = reopened.FreshSegmentsOpened;
        await WriteAsync(reopened.Open(id), 6 * MiB, Pattern(Write, 999));
        Assert.Equal(freshBefore, reopened.FreshSegmentsOpened);
        Assert.Equal(1, reopened.ReusedSegmentsOpened);
    }
}
