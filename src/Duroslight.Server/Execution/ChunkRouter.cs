using Duroslight.Protocol.Engine;
using Duroslight.Protocol.Nvme;
using Duroslight.Reactor;

namespace Duroslight.Server.Execution;

/// <summary>Hears that a storage request finished; called on the shard that handed the request out.</summary>
internal interface IStorageCompletion
{
    void OnStorageDone(StorageRequest request, NvmeStatus status);
}

/// <summary>
/// Runs the engine's storage requests on the reactor: every data request is cut at 128 KiB chunk boundaries and
/// each chunk runs on the shard that owns it (<see cref="Storage.Chunking.ChunkMap.OwnerShard"/>); the request
/// completes once, on its connection's shard, when its last chunk is done.
/// </summary>
internal sealed class ChunkRouter(ShardGroup shards, StorageExecutor volumes)
{
    public ShardGroup Shards => shards;

    public StorageExecutor Volumes => volumes;

    /// <summary>Starts <paramref name="request"/>; call on the connection's shard.</summary>
    public void Execute(StorageRequest request, IStorageCompletion completion)
    {
        // One run per command slot, kept on the request: no allocation per I/O once every slot has been used.
        var run = request.DriverState as RequestRun;
        if (run is null)
        {
            run = new RequestRun(this);
            request.DriverState = run;
        }
        run.Start(request, completion, Shard.Current ?? throw new InvalidOperationException("not on a shard"));
    }
}
