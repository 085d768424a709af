using System.Runtime.CompilerServices;
using Duroslight.Protocol.Engine;
using Duroslight.Protocol.Nvme;
using Duroslight.Reactor;
using Duroslight.Storage.Chunking;
using Duroslight.Storage.Volumes;

namespace Duroslight.Server.Execution;

/// <summary>
/// One storage request on the reactor: fans its chunks out to their owning shards (each through the volume's channel
/// on that shard), counts them back in (the last one, on whichever shard, finishes), makes FUA writes durable, and
/// hands the status to the connection's shard. One per command slot of a connection, reused, so none of this
/// allocates per I/O.
/// </summary>
internal sealed class RequestFanOut : IShardWork
{
    private readonly ChunkRouter _router;
    private readonly List<ChunkJob> _jobs = [];
    private readonly Action _flushed;
    private StorageRequest _request = null!;
    private IStorageCompletion _completion = null!;
    private Shard _home = null!;
    private ServedVolume? _volume;
    private int _pending;
    private int _failure;
    private int _flushIndex;
    private NvmeStatus _status;
    private long _started;
    private ValueTaskAwaiter<StorageResult> _flushAwaiter;

    public RequestFanOut(ChunkRouter router)
    {
        _router = router;
        _flushed = OnFlushed;
    }

    public void Start(StorageRequest request, IStorageCompletion completion, Shard home)
    {
        _request = request;
        _completion = completion;
        _home = home;
        _started = _router.Volumes.Metrics.Start(request);
        _failure = (int)StorageResult.Ok;
        if (request.Op == StorageOp.Flush)
        {
            StartFlush(request.VolumeId);
            return;
        }
        if (!_router.Volumes.TryGetVolume(request.VolumeId, out var volume))
        {
            Finish(NvmeStatus.InvalidNamespaceOrFormat);
            return;
        }
        _volume = volume;
        int count = request.Op is StorageOp.Read or StorageOp.Write ? PlanChunks(volume) : PlanSweeps(volume);
        Dispatch(count);
    }

    /// <summary>A chunk (or sweep) finished with <paramref name="result"/>; called on the shard that ran it.</summary>
    public void ChunkDone(StorageResult result)
    {
        if (result != StorageResult.Ok) Interlocked.CompareExchange(ref _failure, (int)result, (int)StorageResult.Ok);
        if (Interlocked.Decrement(ref _pending) != 0) return;
        var failure = (StorageResult)Volatile.Read(ref _failure);
        if (failure == StorageResult.Ok && _request.ForceUnitAccess && _request.Op != StorageOp.Read) FlushThen(_volume!);
        else Finish(StorageStatus.ToNvme(failure, _request.Op));
    }

    /// <summary>Delivers the status on the connection's shard.</summary>
    public void Execute()
    {
        _router.Volumes.Metrics.Record(_request, _status, _started);
        _completion.OnStorageDone(_request, _status);
    }

    private int PlanChunks(ServedVolume volume)
    {
        int shardCount = _router.Shards.Count, n = 0, done = 0;
        foreach (var chunk in ChunkMap.Split(_request.Offset, _request.Length))
        {
            int owner = ChunkMap.OwnerShard(volume.PlacementId, chunk.ChunkIndex, shardCount);
            Job(n++).SetChunk(this, volume.Channels[owner], _request, _router.Shards[owner], chunk.Offset, chunk.Length, _request.Buffer.Slice(done, chunk.Length));
            done += chunk.Length;
        }
        return n;
    }

    private int PlanSweeps(ServedVolume volume)
    {
        int shardCount = _router.Shards.Count;
        for (int s = 0; s < shardCount; s++) Job(s).SetSweep(this, volume, _request, _router.Shards[s], shardCount);
        return shardCount;
    }

    /// <summary>Hands remote chunks out first, then runs this shard's own inline, so they overlap.</summary>
    private void Dispatch(int count)
    {
        if (count == 0)
        {
            Finish(NvmeStatus.Success);
            return;
        }
        _pending = count;
        for (int i = 0; i < count; i++)
            if (_jobs[i].Shard != _home) _jobs[i].Shard.Post(_jobs[i]);
        for (int i = 0; i < count; i++)
            if (_jobs[i].Shard == _home) _jobs[i].Execute();
    }

    private ChunkJob Job(int index)
    {
        while (_jobs.Count <= index) _jobs.Add(new ChunkJob());
        return _jobs[index];
    }

    private void StartFlush(Guid volumeId)
    {
        if (volumeId == Guid.Empty)
        {
            // Every namespace (NSID FFFFFFFFh): one volume after another.
            _volume = null;
            _flushIndex = 0;
            FlushNextOrFinish();
            return;
        }
        if (!_router.Volumes.TryGetVolume(volumeId, out var volume))
        {
            Finish(NvmeStatus.InvalidNamespaceOrFormat);
            return;
        }
        _volume = volume;
        FlushThen(volume);
    }

    private void FlushNextOrFinish()
    {
        var all = _router.Volumes.All;
        if (_flushIndex >= all.Length) Finish(NvmeStatus.Success);
        else FlushThen(all[_flushIndex++]);
    }

    /// <summary>Through the volume's channel on the calling shard: home for a Flush, the last chunk's shard for FUA.</summary>
    private void FlushThen(ServedVolume volume)
    {
        var flush = volume.Channels[Shard.Current!.Index].FlushAsync();
        if (flush.IsCompleted)
        {
            AfterFlush(flush.Result);
            return;
        }
        _flushAwaiter = flush.GetAwaiter();
        _flushAwaiter.UnsafeOnCompleted(_flushed);
    }

    private void OnFlushed()
    {
        var result = _flushAwaiter.GetResult();
        _flushAwaiter = default;
        AfterFlush(result);
    }

    private void AfterFlush(StorageResult result)
    {
        if (result != StorageResult.Ok) Finish(StorageStatus.ToNvme(result, StorageOp.Flush));
        else if (_request.Op == StorageOp.Flush && _request.VolumeId == Guid.Empty) FlushNextOrFinish();
        else Finish(NvmeStatus.Success);
    }

    private void Finish(NvmeStatus status)
    {
        _status = status;
        _volume = null;
        if (Shard.Current == _home) Execute();
        else _home.Post(this);
    }
}
