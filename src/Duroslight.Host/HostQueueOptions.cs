using Duroslight.Protocol.Nvme;

namespace Duroslight.Host;

/// <summary>Settings of one host queue (one TCP connection).</summary>
public sealed record HostQueueOptions
{
    /// <summary>In-capsule data limit Linux uses on the admin queue (NVME_TCP_ADMIN_CCSZ).</summary>
    public const int AdminInCapsuleData = 8192;

    /// <summary>CIDs carry a 4-bit generation above a 12-bit slot index, so at most 4096 slots.</summary>
    public const int MaxQueueDepth = 4096;

    /// <summary>NVMe queue ID: 0 = admin.</summary>
    public ushort QueueId { get; init; }

    /// <summary>Commands that may be outstanding at once (the slots; Connect SQSIZE is this minus one).</summary>
    public int QueueDepth { get; init; } = 32;

    public bool HeaderDigest { get; init; }

    public bool DataDigest { get; init; }

    /// <summary>
    /// Write data up to this many bytes travels in the capsule; larger data waits for R2Ts. 8192 suits the admin queue;
    /// for I/O queues use <see cref="InCapsuleLimitFromIoccsz"/> of Identify Controller IOCCSZ.
    /// </summary>
    public int InCapsuleDataLimit { get; init; } = AdminInCapsuleData;

    /// <summary>MAXR2T sent in ICReq (0's based: 0 = one outstanding R2T per command).</summary>
    public uint MaxR2T { get; init; }

    /// <summary>Largest H2CData PDU the host sends; the target's MAXH2CDATA caps it. 0 = MAXH2CDATA.</summary>
    public int MaxH2CDataPdu { get; init; }

    /// <summary>IOCCSZ is in 16-byte units and counts the 64-byte SQE.</summary>
    public static int InCapsuleLimitFromIoccsz(uint ioccsz) => (int)Math.Max(0L, (long)ioccsz * 16 - SubmissionEntry.Size);

    public void Validate()
    {
        if (QueueDepth is < 1 or > MaxQueueDepth)
            throw new ArgumentOutOfRangeException(nameof(QueueDepth), QueueDepth, $"1..{MaxQueueDepth}");
        if (InCapsuleDataLimit < 0) throw new ArgumentOutOfRangeException(nameof(InCapsuleDataLimit), InCapsuleDataLimit, ">= 0");
        if (MaxH2CDataPdu < 0) throw new ArgumentOutOfRangeException(nameof(MaxH2CDataPdu), MaxH2CDataPdu, ">= 0");
    }
}
