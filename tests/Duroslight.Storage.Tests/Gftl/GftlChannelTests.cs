using Duroslight.Core;
using Duroslight.Storage.Chunking;
using Duroslight.Storage.Gftl;
using Duroslight.Storage.Volumes;
using static Duroslight.Storage.Tests.Volumes.VolumeStoreContractTests;

namespace Duroslight.Storage.Tests.Gftl;

/// <summary>A shard's channel (its partition held, not looked up) sees and leaves the same data as the volume's own path.</summary>
public sealed class GftlChannelTests : IDisposable
{
    private const int Shards = 4;
    private const int Chunk = ChunkMap.ChunkSize;
    private readonly GftlScratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public async Task Chunks_written_and_trimmed_through_their_owners_channels_read_the_same_through_the_volume()
    {
        using GftlStore store = _scratch.Open(shards: Shards);
        IBlockVolume volume = store.Open(store.Create("v", 16 * Chunk).Id);
        var channels = new IVolumeChannel[Shards];
        for (int s = 0; s < Shards; s++) channels[s] = volume.OpenChannel(new StorageShard(s, Shards, SyncBlockIo.Instance));
        IVolumeChannel Owner(int chunk) => channels[ChunkMap.OwnerShard(volume.PlacementId, chunk, Shards)];

        byte[] data = Pattern(16 * Chunk, 7);
        for (int c = 0; c < 16; c++)
        {
            Assert.Equal(StorageResult.Ok, await Owner(c).WriteAsync((long)c * Chunk, data.AsMemory(c * Chunk, Chunk)));
        }

        Assert.Equal(data, await ReadAsync(volume, 0, data.Length));

        Assert.Equal(StorageResult.Ok, await Owner(3).DeallocateAsync((3L * Chunk) + 8192, 16384));
        Assert.Equal(StorageResult.Ok, await Owner(9).WriteZeroesAsync(9L * Chunk, Chunk));
        data.AsSpan((3 * Chunk) + 8192, 16384).Clear();
        data.AsSpan(9 * Chunk, Chunk).Clear();
        Assert.Equal(data, await ReadAsync(volume, 0, data.Length));
        Assert.Equal(data.Length - 16384 - Chunk, volume.AllocatedBytes);

        var back = new byte[Chunk];
        Assert.Equal(StorageResult.Ok, await Owner(3).ReadAsync(3L * Chunk, back));
        Assert.Equal(data.AsSpan(3 * Chunk, Chunk).ToArray(), back);
        Assert.Equal(StorageResult.Ok, await Owner(3).FlushAsync());
    }

    [Fact]
    public void A_shard_count_other_than_the_partition_count_is_refused()
    {
        using GftlStore store = _scratch.Open(shards: Shards);
        IBlockVolume volume = store.Open(store.Create("v", 4 * Chunk).Id);
        Assert.Throws<InvalidOperationException>(() => volume.OpenChannel(new StorageShard(0, Shards - 1, SyncBlockIo.Instance)));
    }
}
