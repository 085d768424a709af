using System.Buffers;
using System.Runtime.InteropServices;
namespace Duroslight.Protocol.Engine;

public enum StorageOp : byte
{
    Read,
    Write,
    Flush,
    WriteZeroes,
    Deallocate,
}

/// <summary>A byte range of a volume.</summary>
public readonly record struct ByteRange(long Offset, long Length);

/// <summary>
/// What the sans-IO engine asks the storage layer to do for one command. The driver executes it (splitting it into
/// 128 KiB chunks and routing each to its owning shard) and hands it back with
/// <see cref="TargetConnection.CompleteStorage"/> on the connection's own thread. Every request handed out must be
/// completed, even after the connection closed: its buffer stays lent to the driver until then.
/// One instance per command slot, reused: no allocation per I/O.
/// </summary>
public sealed class StorageRequest
{
    internal StorageRequest(TargetConnection owner, int slot)
    {
        Owner = owner;
        Slot = slot;
    }

    public TargetConnection Owner { get; }

    /// <summary>The command slot (SQ entry) this request belongs to; a driver keeps its per-slot state by it.</summary>
    public int Slot { get; }

    public StorageOp Op { get; internal set; }

    /// <summary>The volume; <see cref="Guid.Empty"/> for a Flush of every namespace (NSID FFFFFFFFh).</summary>
    public Guid VolumeId { get; internal set; }

    /// <summary>Byte offset (Read, Write, WriteZeroes).</summary>
    public long Offset { get; internal set; }

    /// <summary>Byte length (Read, Write, WriteZeroes).</summary>
    public long Length { get; internal set; }

    /// <summary>Read destination or write source, exactly <see cref="Length"/> bytes.</summary>
    public Memory<byte> Buffer { get; internal set; }

    /// <summary>
    /// A read the driver answered without filling <see cref="Buffer"/>: storage lent its own memory holding the data
    /// (the memory store's page), valid while that store lives and retained once for this request (its manager's
    /// Unpin releases it). The engine sends from it (in place when the driver gathers, the send holding its own pin)
    /// and never gives it to the buffer pool. Released when the slot is reused (<see cref="ReleaseLentData"/>).
    /// </summary>
    public ReadOnlyMemory<byte> LentData { get; set; }

    /// <summary>Drops this request's hold on <see cref="LentData"/>, if any.</summary>
    internal void ReleaseLentData()
    {
        if (MemoryMarshal.TryGetMemoryManager(LentData, out MemoryManager<byte>? lender)) lender.Unpin();
        LentData = default;
    }

    /// <summary>Force Unit Access: the write must be durable before completion (also set while the write cache is off).</summary>
    public bool ForceUnitAccess { get; internal set; }

    /// <summary>WriteZeroes with DEAC: the range may be unmapped.</summary>
    public bool MayDeallocate { get; internal set; }

    /// <summary>Deallocate ranges; only the first <see cref="RangeCount"/> are valid.</summary>
    public ByteRange[] Ranges { get; internal set; } = [];

    public int RangeCount { get; internal set; }
}
