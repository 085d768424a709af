using System.Runtime.CompilerServices;
using Duroslight.Protocol.Engine;
using Duroslight.Reactor;
using Duroslight.Storage.Chunking;
using Duroslight.Storage.Volumes;

namespace Duroslight.Server.Execution;

/// <summary>
/// The part of one request that one shard executes: a single data chunk (read, write), or for write-zeroes and
/// deallocate every chunk of the request's ranges that the shard owns, one after another. Reused for every
/// request of its slot; the await is hand-written (cached continuation) so it allocates nothing.
/// </summary>
internal sealed class ChunkJob : IShardWork
{
    private readonly Action _resume;
    private RequestFanOut _run = null!;
    private IVolumeChannel _channel = null!;
    private Guid _placement;
    private StorageRequest _request = null!;
    private Shard _shard = null!;
    private int _shardCount;
    private bool _sweep;
    private bool _issued;
    private long _offset;
    private int _length;
    private Memory<byte> _buffer;
    private int _rangeIndex;
    private ChunkSpans _spans;
    private bool _inRange;
    private ValueTaskAwaiter<StorageResult> _awaiter;

    public ChunkJob() => _resume = Resume;

    public Shard Shard => _shard;

    /// <summary>One data chunk, through the volume's channel on its owner: <paramref name="buffer"/> is its slice of the request's buffer.</summary>
    public void SetChunk(RequestFanOut run, IVolumeChannel channel, StorageRequest request, Shard shard, long offset, int length, Memory<byte> buffer)
    {
        Set(run, channel, request, shard, sweep: false);
        _offset = offset;
        _length = length;
        _buffer = buffer;
    }

    /// <summary>Every chunk of the request's ranges owned by <paramref name="shard"/> (write-zeroes, deallocate).</summary>
    public void SetSweep(RequestFanOut run, ServedVolume volume, StorageRequest request, Shard shard, int shardCount)
    {
        Set(run, volume.Channels[shard.Index], request, shard, sweep: true);
        _placement = volume.PlacementId;
        _shardCount = shardCount;
        _rangeIndex = 0;
        _inRange = false;
    }

    public void Execute() => Pump();

    private void Set(RequestFanOut run, IVolumeChannel channel, StorageRequest request, Shard shard, bool sweep)
    {
        _run = run;
        _channel = channel;
        _request = request;
        _shard = shard;
        _sweep = sweep;
        _issued = false;
    }

    /// <summary>Issues operations until one is pending (resumed by its completion) or all are done.</summary>
    private void Pump()
    {
        while (TryNext(out var operation))
        {
            if (!operation.IsCompleted)
            {
                _awaiter = operation.GetAwaiter();
                _awaiter.UnsafeOnCompleted(_resume);
                return;
            }
            var result = operation.Result;
            if (result != StorageResult.Ok)
            {
                Done(result);
                return;
            }
        }
        Done(StorageResult.Ok);
    }

    private void Resume()
    {
        var result = _awaiter.GetResult();
        _awaiter = default;
        if (result != StorageResult.Ok) Done(result);
        else Pump();
    }

    private void Done(StorageResult result)
    {
        _buffer = default;
        _run.ChunkDone(result);
    }

    private bool TryNext(out ValueTask<StorageResult> operation)
    {
        if (_sweep) return TryNextSweep(out operation);
        operation = default;
        if (_issued) return false;
        _issued = true;
        if (_request.Op == StorageOp.Read && _length == _request.Length && _channel.TryLend(_offset, _length, out var lent))
        {
            // One chunk, and its volume lends the memory (memory store): the response is sent from it, no copy.
            _request.LentData = lent;
            operation = new(StorageResult.Ok);
            return true;
        }
        operation = _request.Op == StorageOp.Read
            ? _channel.ReadAsync(_offset, _buffer)
            : _channel.WriteAsync(_offset, _buffer);
        return true;
    }

    private bool TryNextSweep(out ValueTask<StorageResult> operation)
    {
        while (true)
        {
            if (!_inRange && !NextRange())
            {
                operation = default;
                return false;
            }
            while (_spans.MoveNext())
            {
                var chunk = _spans.Current;
                if (ChunkMap.OwnerShard(_placement, chunk.ChunkIndex, _shardCount) != _shard.Index) continue;
                operation = _request.Op == StorageOp.Deallocate
                    ? _channel.DeallocateAsync(chunk.Offset, chunk.Length)
                    : _channel.WriteZeroesAsync(chunk.Offset, chunk.Length);
                return true;
            }
            _inRange = false;
        }
    }

    private bool NextRange()
    {
        var r = _request;
        int count = r.Op == StorageOp.Deallocate ? r.RangeCount : 1;
        if (_rangeIndex >= count) return false;
        var range = r.Op == StorageOp.Deallocate ? r.Ranges[_rangeIndex] : new ByteRange(r.Offset, r.Length);
        _rangeIndex++;
        _spans = ChunkMap.Split(range.Offset, range.Length);
        _inRange = true;
        return true;
    }
}
