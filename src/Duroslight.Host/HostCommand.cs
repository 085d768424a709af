using Duroslight.Protocol.Nvme;

namespace Duroslight.Host;

/// <summary>Where a host command is in its life on the queue.</summary>
public enum HostCommandState : byte
{
    Free,
    /// <summary>Capsule queued for sending; waiting for R2Ts, C2HData and the response.</summary>
    Outstanding,
    /// <summary>Finished; sitting in the completion queue until the caller takes and releases it.</summary>
    Completed,
}

/// <summary>
/// One command slot of a <see cref="HostQueue"/>: pooled and reused, so steady-state I/O allocates nothing. The caller
/// gets it from <see cref="HostQueue.TrySubmit"/>, takes it back from <see cref="HostQueue.TryTakeCompletion"/>, reads
/// the outcome and returns it with <see cref="HostQueue.Release"/>.
/// </summary>
public sealed class HostCommand
{
    internal HostCommand(int index) => Index = index;

    /// <summary>Slot number within the queue (the low 12 bits of the CID).</summary>
    public int Index { get; }

    public ushort Cid { get; internal set; }

    public HostCommandState State { get; internal set; }

    public byte Opcode { get; internal set; }

    public DataDirection Direction { get; internal set; }

    /// <summary>The caller's buffer: read destination or write source.</summary>
    public Memory<byte> Data { get; internal set; }

    /// <summary>Whether the data travelled in the capsule (SGL 01h) rather than by R2T/H2CData (SGL 5Ah).</summary>
    public bool InCapsule { get; internal set; }

    /// <summary>C2H bytes received, or H2C bytes the target asked for (in-capsule data counts as sent).</summary>
    public int BytesTransferred { get; internal set; }

    /// <summary>The completion; synthesised from the C2HData SUCCESS flag when no CapsuleResp came.</summary>
    public CompletionEntry Completion { get; internal set; }

    public NvmeStatus Status => Completion.Status;

    /// <summary>True when the command ended because the queue failed: no NVMe status exists.</summary>
    public bool TransportFailed { get; internal set; }

    /// <summary>Free for the caller (e.g. the awaiter to wake).</summary>
    public object? UserState { get; set; }

    internal byte Generation;
    internal bool DataDigestFailed;

    internal void Reset()
    {
        State = HostCommandState.Free;
        Data = default;
        InCapsule = false;
        BytesTransferred = 0;
        Completion = default;
        TransportFailed = false;
        DataDigestFailed = false;
        UserState = null;
    }
}
