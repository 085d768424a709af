using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading.Tasks.Sources;
using Duroslight.Host;
using Duroslight.Reactor;
using Duroslight.Storage.Volumes;

namespace Duroslight.Server.Replication;

/// <summary>
/// A cluster volume's channel on one shard: reads stay local; a write, write-zeroes, deallocate or flush runs on the
/// local channel and goes, as the same NVMe command under the cluster's NSID, to every in-sync secondary over this
/// shard's <see cref="PeerQueue"/> to it. It completes once the local operation and every secondary have it (or a
/// secondary that failed is out of the in-sync set in etcd). The chunk is owned by this shard, so the forward and
/// its completion stay on it. With no secondary (a secondary replica, a one-replica volume) it is the local channel.
/// </summary>
internal sealed class ReplicatedChannel(IVolumeChannel local, VolumeReplication replication, Shard shard, int blockSize) : IVolumeChannel, IShardWork
{
    private readonly Stack<ReplicationOp> _ops = new();
    /// <summary>Changes waiting, in arrival order, until etcd's sync points list the chunks they made dirty.</summary>
    private readonly List<ReplicationOp> _parked = [];
    private long _parkedSeq;
    private int _parkedCount, _wakePosted;
    private bool _resuming;
    /// <summary>The volume's gate on this shard, shared by the channels the volume table opens for it over time.</summary>
    private readonly OverlapGate<IGatedOp> _order = replication.GateOf(shard);

    public VolumeReplication Replication => replication;

    public Shard Shard => shard;

    public ValueTask<StorageResult> ReadAsync(long offset, Memory<byte> destination) => local.ReadAsync(offset, destination);

    public ValueTask<StorageResult> WriteAsync(long offset, ReadOnlyMemory<byte> source)
    {
        if (!replication.Ordered) return local.WriteAsync(offset, source);
        var op = Rent(ReplicationKind.Write, offset, source.Length);
        op.Command = NvmeCommands.Write(replication.Nsid, Lba(offset), (int)(source.Length / blockSize));
        op.Data = MemoryMarshal.AsMemory(source);
        return Admit(op);
    }

    public ValueTask<StorageResult> WriteZeroesAsync(long offset, long length)
    {
        if (!replication.Ordered) return local.WriteZeroesAsync(offset, length);
        var op = Rent(ReplicationKind.WriteZeroes, offset, length);
        op.Command = NvmeCommands.WriteZeroes(replication.Nsid, Lba(offset), (int)(length / blockSize));
        return Admit(op);
    }

    public ValueTask<StorageResult> DeallocateAsync(long offset, long length)
    {
        if (!replication.Ordered) return local.DeallocateAsync(offset, length);
        var op = Rent(ReplicationKind.Deallocate, offset, length);
        op.Command = NvmeCommands.DatasetManagement(replication.Nsid, 1);
        op.Data = op.Range(Lba(offset), (uint)(length / blockSize));
        return Admit(op);
    }

    public ValueTask<StorageResult> FlushAsync()
    {
        if (!replication.Ordered) return local.FlushAsync();
        var op = Rent(ReplicationKind.Flush, 0, 0);
        op.Command = NvmeCommands.Flush(replication.Nsid);
        return Admit(op);
    }

    /// <summary>The local half of <paramref name="op"/>, started when the op begins.</summary>
    internal ValueTask<StorageResult> StartLocal(ReplicationOp op) => op.Kind switch
    {
        ReplicationKind.Write => local.WriteAsync(op.Start, op.Data),
        ReplicationKind.WriteZeroes => local.WriteZeroesAsync(op.Start, op.End - op.Start),
        ReplicationKind.Deallocate => local.DeallocateAsync(op.Start, op.End - op.Start),
        _ => local.FlushAsync(),
    };

    /// <summary>On the shard, before <paramref name="op"/> completes: overlapping changes that waited for it may start.</summary>
    internal void Finished(ReplicationOp op)
    {
        if (op.Kind != ReplicationKind.Flush) Exited(op);
    }

    /// <summary>On the shard: <paramref name="op"/> left the overlap gate; overlapping changes that waited for it may start.</summary>
    internal void Exited(IGatedOp op)
    {
        _order.Exit(op);
        while (_order.TryTakeReady(out var next)) next.Begin();
    }

    internal void Return(ReplicationOp op) => _ops.Push(op);

    /// <summary>This shard's channel of the local replica: a rebuild reads the chunks it copies from it.</summary>
    internal IVolumeChannel Local => local;

    /// <summary>On the shard: a rebuild's chunk copy takes its turn among the overlapping changes (<see cref="Exited"/> ends it).</summary>
    internal void AdmitCopy(IGatedOp op)
    {
        if (_order.TryEnter(op)) op.Begin();
    }

    /// <summary>
    /// Changes go through the overlap gate, so no two overlapping ones are in flight and every replica applies them
    /// in the same order. A flush has no range: it covers what completed before it, as NVMe asks, and waits for nothing.
    /// </summary>
    private ValueTask<StorageResult> Admit(ReplicationOp op)
    {
        var task = op.Prepare();
        if (op.Kind != ReplicationKind.Flush)
        {
            // Write intent: a chunk this change makes dirty for a replica outside the in-sync set is in etcd's sync
            // point before any replica has the change; later changes queue behind one that waits (arrival order).
            long seq = replication.MarkDirty(op.Start, op.End);
            if (_parked.Count > 0 || (seq != 0 && !replication.IsSaved(seq)))
            {
                Park(op, seq, start: true);
                return task;
            }
        }
        Enter(op);
        return task;
    }

    private void Enter(ReplicationOp op)
    {
        if (op.Kind == ReplicationKind.Flush || _order.TryEnter(op)) op.Begin();
    }

    /// <summary>
    /// On the shard: <paramref name="op"/> waits for the save of mark <paramref name="seq"/>, then starts
    /// (<paramref name="start"/>) or counts that in (a forward that failed: its completion waits).
    /// </summary>
    internal void Park(ReplicationOp op, long seq, bool start)
    {
        _parkedSeq = Math.Max(seq, _parkedSeq);
        op.SavedSeq = _parkedSeq;
        op.StartWhenSaved = start;
        _parked.Add(op);
        Interlocked.Increment(ref _parkedCount); // a full fence: the saver's wake sees it, or this sees its save
        if (replication.IsSaved(op.SavedSeq)) Resume();
    }

    /// <summary>Any thread (the sync-point saver, after a save): post the shard a re-check of the parked changes.</summary>
    internal void WakeIfParked()
    {
        if (Volatile.Read(ref _parkedCount) > 0 && Interlocked.Exchange(ref _wakePosted, 1) == 0) shard.Post(this);
    }

    /// <summary>On the shard: the wake <see cref="WakeIfParked"/> posted.</summary>
    void IShardWork.Execute()
    {
        Volatile.Write(ref _wakePosted, 0);
        Resume();
    }

    /// <summary>On the shard: the parked changes whose marks are saved go on, in order (a nested park only appends).</summary>
    private void Resume()
    {
        if (_resuming) return;
        _resuming = true;
        int i = 0;
        while (i < _parked.Count && replication.IsSaved(_parked[i].SavedSeq))
        {
            var op = _parked[i++];
            if (op.StartWhenSaved) Enter(op);
            else op.Saved();
        }
        _parked.RemoveRange(0, i);
        Interlocked.Add(ref _parkedCount, -i);
        _resuming = false;
    }

    private ulong Lba(long offset) => (ulong)(offset / blockSize);

    private ReplicationOp Rent(ReplicationKind kind, long offset, long length)
    {
        var op = _ops.TryPop(out var pooled) ? pooled : new ReplicationOp(this);
        op.Kind = kind;
        op.Start = offset;
        op.End = offset + length;
        return op;
    }
}

internal enum ReplicationKind : byte { Write, WriteZeroes, Deallocate, Flush }

/// <summary>
/// One replicated operation on one shard: the local operation plus one forwarded command per in-sync secondary,
/// counted back in on the shard's thread. A secondary that fails it is dropped from the in-sync set
/// (<see cref="VolumeReplication.AwaitDrop"/>) before this completes; if the drop cannot be made, the operation
/// fails (the write is not acknowledged). Pooled per channel and awaited through its own value-task source, so a
/// replicated write allocates nothing.
/// </summary>
internal sealed class ReplicationOp : IValueTaskSource<StorageResult>, IShardWork, IGatedOp, IForwardOp
{
    internal const int DsmRangeSize = 16;
    private readonly ReplicatedChannel _owner;
    private readonly Action _localDone;
    private readonly byte[] _range = new byte[DsmRangeSize];
    private ManualResetValueTaskSourceCore<StorageResult> _core;
    private ValueTaskAwaiter<StorageResult> _local;
    private StorageResult _localResult;
    private int _pending;
    private volatile bool _dropFailed;

    public ReplicationOp(ReplicatedChannel owner)
    {
        _owner = owner;
        _localDone = OnLocalDone;
    }

    /// <summary>The command every secondary gets (the cluster's NSID is the same on every node) and its data.</summary>
    public NvmeCommand Command { get; set; }
    public Memory<byte> Data { get; set; }
    public ReplicationKind Kind;

    /// <summary>The bytes of the volume this op changes (empty for a flush).</summary>
    public long Start { get; set; }
    public long End { get; set; }

    public Shard Shard => _owner.Shard;

    /// <summary>A one-range Dataset Management (deallocate) payload in this op's buffer.</summary>
    public Memory<byte> Range(ulong slba, uint blocks) => DsmRange(_range, slba, blocks);

    /// <summary>Writes one Dataset Management range (no attributes) into <paramref name="into"/> (16 bytes) and returns it.</summary>
    internal static Memory<byte> DsmRange(byte[] into, ulong slba, uint blocks)
    {
        var r = into.AsSpan(0, DsmRangeSize);
        r.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(r[4..], blocks);
        BinaryPrimitives.WriteUInt64LittleEndian(r[8..], slba);
        return into.AsMemory(0, DsmRangeSize);
    }

    /// <summary>The task the caller awaits, valid from now until the op completes (it may begin later: the overlap gate).</summary>
    public ValueTask<StorageResult> Prepare() => new(this, _core.Version);

    /// <summary>On the shard: runs the local operation and forwards to the secondaries in sync now.</summary>
    public void Begin()
    {
        var targets = _owner.Replication.Targets;
        _pending = targets.Length + 1;
        _localResult = StorageResult.Ok;
        _dropFailed = false;
        int shard = _owner.Shard.Index;
        foreach (var link in targets)
            if (!link.Queues[shard].Submit(this)) Missed(link.Node);
        var local = _owner.StartLocal(this);
        if (local.IsCompleted) LocalDone(local.Result);
        else
        {
            _local = local.GetAwaiter();
            _local.UnsafeOnCompleted(_localDone);
        }
    }

    /// <summary>A secondary answered (or its queue failed); on the shard.</summary>
    public void RemoteDone(PeerLink link, bool ok)
    {
        if (ok) Arrive();
        else Missed(link.Node);
    }

    /// <summary>
    /// On the shard: <paramref name="node"/> did not get this change. It leaves the in-sync set (the completion waits
    /// for the drop) and the change's chunks are dirty for it; if that made one dirty, the completion also waits until
    /// etcd's sync point lists it, so no acknowledged change is missing from the map a later rebuild copies.
    /// </summary>
    private void Missed(int node)
    {
        var replication = _owner.Replication;
        replication.AwaitDrop(node, this);
        long seq = Kind == ReplicationKind.Flush ? 0 : replication.MarkDirty(Start, End, node);
        if (seq == 0 || replication.IsSaved(seq)) return;
        _pending++;
        _owner.Park(this, seq, start: false);
    }

    /// <summary>On the shard: the sync-point save a failed forward waited for is done (<see cref="Missed"/>).</summary>
    public void Saved() => Arrive();

    /// <summary>The mark count this op waits to see saved while parked (<see cref="ReplicatedChannel.Park"/>).</summary>
    public long SavedSeq;

    /// <summary>Parked before it started (true) or after a forward failed (false).</summary>
    public bool StartWhenSaved;

    /// <summary>Any thread: the drop this op waited for is over; <see cref="Execute"/> follows on the shard.</summary>
    public void DropDone(bool succeeded)
    {
        if (!succeeded) _dropFailed = true;
        _owner.Shard.Post(this);
    }

    /// <summary>On the shard: a drop this op waited for is over.</summary>
    public void Execute() => Arrive();

    public StorageResult GetResult(short token)
    {
        var result = _core.GetResult(token);
        _core.Reset();
        Data = default;
        _local = default;
        _owner.Return(this);
        return result;
    }

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);

    private void OnLocalDone() => LocalDone(_local.GetResult());

    private void LocalDone(StorageResult result)
    {
        _localResult = result;
        Arrive();
    }

    private void Arrive()
    {
        if (--_pending != 0) return;
        _owner.Finished(this);
        _core.SetResult(_localResult != StorageResult.Ok ? _localResult : _dropFailed ? StorageResult.MediaError : StorageResult.Ok);
    }
}
