using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;

namespace Duroslight.Protocol.Engine;

/// <summary>Life of one command on a queue (explicit, as SPDK's request state enum).</summary>
public enum CommandState : byte
{
    Free,
    /// <summary>Capsule header in; in-capsule data still arriving.</summary>
    ReceivingCapsuleData,
    /// <summary>R2Ts sent; H2CData arriving.</summary>
    ReceivingH2CData,
    /// <summary>A write waiting for the shard's <see cref="HostDataBudget"/> before its buffer and R2Ts.</summary>
    AwaitingBudget,
    /// <summary>Handed to the storage layer.</summary>
    Executing,
    /// <summary>Parked: an Asynchronous Event Request waiting for an event.</summary>
    AwaitingEvent,
    /// <summary>
    /// Completed later from another thread (<see cref="TargetConnection.PostCompletion"/>): a reservation command waiting
    /// for its record to be stored or for a preempted host's commands to finish.
    /// </summary>
    Deferred,
}

/// <summary>
/// One outstanding command of a queue, the request passed between the queue transport (<see cref="TargetConnection"/>:
/// capsule, data transfer, response) and the command layer (<see cref="CommandProcessor"/>: checked once, then run):
/// its SQE, its state, its data buffer and transfer progress, and what the check decoded (the namespace and the
/// <see cref="StorageRequest"/>). One per SQ entry, reused.
/// </summary>
internal sealed class CommandSlot(int index, StorageRequest request, IDataBufferPool buffers, HostDataBudget budget)
{
    public readonly int Index = index;
    public readonly byte[] Sqe = new byte[SubmissionEntry.Size];
    public readonly StorageRequest Request = request;
    public CommandState State;
    public ushort Cid;

    /// <summary>Pooled data buffer (write data gathered, read data or admin data to return); empty when none.</summary>
    public Memory<byte> Buffer;

    /// <summary>Bytes to transfer (SGL length for host-to-controller; data produced for controller-to-host).</summary>
    public int DataLength;
    public int Received;
    public int R2TIssuedEnd;
    /// <summary>A status decided while data still arrives (a bad SGL, a bad data digest): the data is drained, then this completes.</summary>
    public NvmeStatus DeferredStatus;
    /// <summary>Bytes reserved in the shard's budget for data the host still owes (0 once it all arrived).</summary>
    public int BudgetReserved;
    /// <summary>The namespace the command layer's check admitted the command to (I/O commands).</summary>
    public NamespaceInfo? Namespace;
    /// <summary>When the command went to storage (ms), for the storage timeout.</summary>
    public long StorageStartedMs;
    /// <summary>
    /// Answered (storage timeout) while storage still holds the request and its buffer: the CID is free for the
    /// host again, the slot is not, until storage returns and the completion is dropped.
    /// </summary>
    public bool Abandoned;
    /// <summary>Preempt and Abort commands waiting for this (executing) command to finish; null almost always.</summary>
    public List<AbortFence>? Fences;

    public SubmissionEntry Command => new(Sqe);

    public bool HasBuffer => !Buffer.IsEmpty;

    public Memory<byte> Data => Buffer[..DataLength];

    public void RentBuffer(int length)
    {
        Buffer = buffers.Rent(Math.Max(length, 1));
        DataLength = length;
    }

    /// <summary>Hands the buffer over (to the output, which sends it in place and gives it back to the pool).</summary>
    public Memory<byte> TakeBuffer()
    {
        var buffer = Buffer;
        Buffer = default;
        return buffer;
    }

    public void ReleaseBudget()
    {
        if (BudgetReserved > 0) budget.Release(BudgetReserved);
        BudgetReserved = 0;
    }

    public void Reset()
    {
        ReleaseBudget();
        if (HasBuffer) buffers.Return(Buffer);
        Buffer = default;
        Request.ReleaseLentData();
        State = CommandState.Free;
        Abandoned = false;
        DataLength = Received = R2TIssuedEnd = 0;
        DeferredStatus = NvmeStatus.Success;
        Namespace = null;
        if (Fences is { Count: > 0 }) ReleaseFences();
    }

    private void ReleaseFences()
    {
        foreach (var fence in Fences!) fence.Signal();
        Fences.Clear();
    }
}
