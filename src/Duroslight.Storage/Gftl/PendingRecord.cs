using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;
using Duroslight.Storage.Devices;
using Duroslight.Storage.Volumes;

namespace Duroslight.Storage.Gftl;

/// <summary>
/// One host write (or logged trim) from its arrival at a partition until its record is on the device: queued, then
/// packed with others into a <see cref="RecordBatch"/>. It is also what the caller awaits, so a write costs no
/// allocation: pooled per partition, returned to the pool when the caller takes the result. A trim that arrives
/// meanwhile leaves its sequence number in the chunk's entries, so the older write does not map over it.
/// </summary>
internal sealed class PendingRecord(Partition owner) : IValueTaskSource<StorageResult>
{
    private ManualResetValueTaskSourceCore<StorageResult> _completion;

    public GftlVolume Volume = null!;

    /// <summary>The chunk's map entries (null for a trim).</summary>
    public ChunkBlocks? Chunk;

    /// <summary>The data, read when the record is packed (the caller holds it until the write completes).</summary>
    public ReadOnlyMemory<byte> Source;
    public long Lba;
    public int Count;
    public long Seq;

    /// <summary>When it was queued (<see cref="System.Diagnostics.Stopwatch"/> ticks; statistics).</summary>
    public long Queued;

    /// <summary>Where its first data block went, once packed.</summary>
    public long Location;

    /// <summary>
    /// A re-pack copy of blocks a read found fragmented (nobody awaits it): it keeps the blocks' sequence number and
    /// moves them from <see cref="From"/> only if they are still there as that write.
    /// </summary>
    public bool Relocation;
    public long From;

    /// <summary>The re-pack a relocation belongs to (it ends when its last relocation is written).</summary>
    public RepackSlot? Repack;

    public bool IsTrim => Chunk is null;

    public short Token => _completion.Version;

    /// <summary>
    /// Off the reactor (the synchronous fallback, thread-pool callers) the writer's continuation runs on the thread
    /// pool: run inline, it would execute on whichever thread completed the record, and a caller's loop whose next
    /// writes complete at once would keep that thread from completing the rest of the record's writes. On a shard the
    /// continuation runs inline (it only hands the completion on).
    /// </summary>
    public void ContinueOnThreadPool(bool value) => _completion.RunContinuationsAsynchronously = value;

    public void Complete(StorageResult result) => _completion.SetResult(result);

    /// <summary>The caller's view: done already (the result, the record back in the pool) or a pending task.</summary>
    public ValueTask<StorageResult> AsValueTask(short token) =>
        _completion.GetStatus(token) == ValueTaskSourceStatus.Pending ? new(this, token) : new(GetResult(token));

    public StorageResult GetResult(short token)
    {
        StorageResult result = _completion.GetResult(token);
        _completion.Reset();
        owner.Recycle(this);
        return result;
    }

    public ValueTaskSourceStatus GetStatus(short token) => _completion.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _completion.OnCompleted(continuation, state, token, flags);
}

/// <summary>
/// One group-committed record: a header listing the extents of <see cref="Records"/>, their data after it, one
/// device write. Pooled per partition with its buffer; continues after the device write without an async box.
/// </summary>
internal sealed class RecordBatch
{
    private readonly Partition _owner;
    private readonly Action _resume;
    private ValueTaskAwaiter<StorageResult> _awaiter;

    public RecordBatch(Partition owner, int dataBlocks)
    {
        _owner = owner;
        _resume = Resume;
        Buffer = new NativeBuffer(RecordFormat.HeaderSize + (dataBlocks * GftlLayout.BlockSize));
    }

    public NativeBuffer Buffer { get; }
    public List<PendingRecord> Records { get; } = new(RecordFormat.MaxExtents);
    public Segment Segment = null!;

    /// <summary>Location of the header; the data follows.</summary>
    public long Location;
    public int DataBlocks;
    public RecordKind Kind;

    /// <summary>Starts the device write; <see cref="Partition.Written"/> runs when it is over.</summary>
    public void Write(GftlDevice device)
    {
        int length = (1 + DataBlocks) * GftlLayout.BlockSize;
        ValueTask<StorageResult> write = BlockTransfer.WriteAsync(device.Handle, Buffer.Memory[..length], GftlLayout.ByteOffsetOf(Location));
        if (write.IsCompleted)
        {
            _owner.Written(this, write.Result);
            return;
        }

        _awaiter = write.GetAwaiter();
        _awaiter.UnsafeOnCompleted(_resume);
    }

    private void Resume()
    {
        StorageResult result = _awaiter.GetResult();
        _awaiter = default;
        _owner.Written(this, result);
    }
}
