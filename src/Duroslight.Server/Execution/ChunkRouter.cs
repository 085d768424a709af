using System.Collections.Concurrent;
using Duroslight.Protocol.Engine;
using Duroslight.Protocol.Nvme;
using Duroslight.Reactor;
using Duroslight.Storage.Volumes;

namespace Duroslight.Server.Execution;

/// <summary>Hears that a storage request finished; called on the shard that handed the request out.</summary>
internal interface IStorageCompletion
{
    void OnStorageDone(StorageRequest request, NvmeStatus status);
}

/// <summary>
/// Runs the engine's storage requests on the reactor: every data request is cut at 128 KiB chunk boundaries and
/// each chunk runs on the shard that owns it (<see cref="Storage.Chunking.ChunkMap.OwnerShard"/>), through that
/// volume's channel on that shard; the request completes once, on its connection's shard, when its last chunk is done.
/// </summary>
internal sealed class ChunkRouter
{
    public ChunkRouter(ShardGroup shards, VolumeTable volumes)
    {
        Shards = shards;
        Volumes = volumes;
        var storageShards = new StorageShard[shards.Count];
        for (int i = 0; i < storageShards.Length; i++) storageShards[i] = new StorageShard(i, shards.Count, BlockIo.Instrumented(shards[i].DeviceIo), new ShardPoster(shards[i]));
        volumes.AttachShards(storageShards);
    }

    public ShardGroup Shards { get; }

    public VolumeTable Volumes { get; }

    /// <summary>The fan-out a connection keeps for one of its command slots (reused for every request of the slot).</summary>
    public RequestFanOut NewFanOut() => new(this);

    /// <summary>Starts <paramref name="request"/> with its slot's <paramref name="fanOut"/>; call on the connection's shard.</summary>
    public void Route(StorageRequest request, RequestFanOut fanOut, IStorageCompletion completion) =>
        fanOut.Start(request, completion, Shard.Current ?? throw new InvalidOperationException("not on a shard"));
}

/// <summary>Storage's view of a shard's work queue: background storage work (the GFTL collector) runs on the shard.</summary>
internal sealed class ShardPoster(Shard shard) : IWorkPoster
{
    private readonly ConcurrentDictionary<Action, Work> _works = new();

    /// <summary>Posters post the same few cached delegates (a slice, a room answer): one wrapper each, no allocation per post.</summary>
    public void Post(Action work) => shard.Post(Wrap(work));

    public bool IsCurrent => Shard.Current == shard;

    /// <summary>Through the shard's end-of-iteration senders: they run after the iteration's completions and work, before it submits.</summary>
    public void AtIterationEnd(Action work) => shard.ScheduleSend(Wrap(work));

    private Work Wrap(Action work) => _works.GetOrAdd(work, static w => new Work(w));

    private sealed class Work(Action work) : IShardWork, IBatchedSender
    {
        public void Execute() => work();

        public void SendBatch() => work();
    }
}
