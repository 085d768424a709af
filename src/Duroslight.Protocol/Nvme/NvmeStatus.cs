namespace Duroslight.Protocol.Nvme;

/// <summary>Status Code Type (NVMe base spec, Completion Queue Entry status field bits 11:9).</summary>
public enum StatusCodeType : byte
{
    Generic = 0,
    CommandSpecific = 1,
    MediaAndDataIntegrity = 2,
    PathRelated = 3,
}

/// <summary>
/// An NVMe completion status: SCT, SC and DNR, packed as in CQE DW3 bits 31:17 (phase bit excluded).
/// </summary>
public readonly record struct NvmeStatus(StatusCodeType Sct, byte Sc, bool Dnr = false)
{
    public bool IsSuccess => Sct == StatusCodeType.Generic && Sc == 0;

    /// <summary>The 15-bit status field as it sits in CQE bits 15:1 of the last word.</summary>
    public ushort Field => (ushort)(Sc | ((int)Sct << 8) | (Dnr ? 1 << 14 : 0));

    public static NvmeStatus FromField(ushort field) =>
        new((StatusCodeType)((field >> 8) & 0x7), (byte)field, (field & (1 << 14)) != 0);

    public NvmeStatus WithDnr() => this with { Dnr = true };

    public override string ToString() => $"SCT {(int)Sct:X}h SC {Sc:X2}h{(Dnr ? " DNR" : "")}";

    public static readonly NvmeStatus Success = new(StatusCodeType.Generic, 0x00);

    // Generic command status (SCT 0).
    public static readonly NvmeStatus InvalidOpcode = new(StatusCodeType.Generic, 0x01, true);
    public static readonly NvmeStatus InvalidField = new(StatusCodeType.Generic, 0x02, true);
    public static readonly NvmeStatus CommandIdConflict = new(StatusCodeType.Generic, 0x03, true);
    public static readonly NvmeStatus DataTransferError = new(StatusCodeType.Generic, 0x04);
    public static readonly NvmeStatus InternalError = new(StatusCodeType.Generic, 0x06);
    public static readonly NvmeStatus AbortRequested = new(StatusCodeType.Generic, 0x07);
    public static readonly NvmeStatus AbortSqDeleted = new(StatusCodeType.Generic, 0x08);
    public static readonly NvmeStatus InvalidNamespaceOrFormat = new(StatusCodeType.Generic, 0x0B, true);
    public static readonly NvmeStatus CommandSequenceError = new(StatusCodeType.Generic, 0x0C, true);
    public static readonly NvmeStatus InvalidSglSegmentDescriptor = new(StatusCodeType.Generic, 0x0D, true);
    public static readonly NvmeStatus DataSglLengthInvalid = new(StatusCodeType.Generic, 0x0F, true);
    public static readonly NvmeStatus SglDescriptorTypeInvalid = new(StatusCodeType.Generic, 0x11, true);
    public static readonly NvmeStatus SglOffsetInvalid = new(StatusCodeType.Generic, 0x16, true);
    public static readonly NvmeStatus NamespaceWriteProtected = new(StatusCodeType.Generic, 0x20, true);
    /// <summary>
    /// NVMe Base 2.0, Figure 102: processing was interrupted and the controller cannot complete the command; the
    /// host should retry (DNR clear). The answer to a command whose device stalled past the storage timeout.
    /// </summary>
    public static readonly NvmeStatus CommandInterrupted = new(StatusCodeType.Generic, 0x21);
    public static readonly NvmeStatus TransientTransportError = new(StatusCodeType.Generic, 0x22);
    public static readonly NvmeStatus LbaOutOfRange = new(StatusCodeType.Generic, 0x80, true);
    public static readonly NvmeStatus CapacityExceeded = new(StatusCodeType.Generic, 0x81, true);
    public static readonly NvmeStatus NamespaceNotReady = new(StatusCodeType.Generic, 0x82);
    /// <summary>NVMe Base 2.0, 8.19: a command the namespace's reservation forbids this host, or a reservation command refused.</summary>
    public static readonly NvmeStatus ReservationConflict = new(StatusCodeType.Generic, 0x83, true);
    /// <summary>A Reservation Report without the extended data structure while 128-bit host identifiers are in use.</summary>
    public static readonly NvmeStatus HostIdentifierInconsistentFormat = new(StatusCodeType.Generic, 0x18, true);
    /// <summary>
    /// A command of a host whose registration a Reservation Acquire with Preempt and Abort removed (8.19). Not DNR: a
    /// retry meets the new reservation and its own verdict.
    /// </summary>
    public static readonly NvmeStatus AbortedPreemptAndAbort = new(StatusCodeType.Generic, 0x1B);

    // Command specific status (SCT 1).
    public static readonly NvmeStatus InvalidLogPage = new(StatusCodeType.CommandSpecific, 0x09, true);
    public static readonly NvmeStatus FeatureIdNotSaveable = new(StatusCodeType.CommandSpecific, 0x0D, true);
    public static readonly NvmeStatus FeatureNotChangeable = new(StatusCodeType.CommandSpecific, 0x0E, true);
    public static readonly NvmeStatus AsyncEventRequestLimitExceeded = new(StatusCodeType.CommandSpecific, 0x05, true);
    public static readonly NvmeStatus InvalidQueueIdentifier = new(StatusCodeType.CommandSpecific, 0x01, true);
    public static readonly NvmeStatus ConnectIncompatibleFormat = new(StatusCodeType.CommandSpecific, 0x80, true);
    public static readonly NvmeStatus ConnectControllerBusy = new(StatusCodeType.CommandSpecific, 0x81);
    public static readonly NvmeStatus ConnectInvalidParameters = new(StatusCodeType.CommandSpecific, 0x82, true);
    public static readonly NvmeStatus ConnectRestartDiscovery = new(StatusCodeType.CommandSpecific, 0x83);
    public static readonly NvmeStatus ConnectInvalidHost = new(StatusCodeType.CommandSpecific, 0x84, true);
    public static readonly NvmeStatus ConflictingAttributes = new(StatusCodeType.CommandSpecific, 0x80, true);

    // Media and data integrity errors (SCT 2).
    /// <summary>Path related (SCT 3h) 02h: the namespace's ANA group is inaccessible through this controller; the host retries on another path.</summary>
    public static readonly NvmeStatus AsymmetricAccessInaccessible = new(StatusCodeType.PathRelated, 0x02);
    /// <summary>Path related 01h: ANA persistent loss.</summary>
    public static readonly NvmeStatus AsymmetricAccessPersistentLoss = new(StatusCodeType.PathRelated, 0x01);
    /// <summary>Path related 03h: the group is changing state; the host retries after a while.</summary>
    public static readonly NvmeStatus AsymmetricAccessTransition = new(StatusCodeType.PathRelated, 0x03);

    public static readonly NvmeStatus WriteFault = new(StatusCodeType.MediaAndDataIntegrity, 0x80);
    public static readonly NvmeStatus UnrecoveredReadError = new(StatusCodeType.MediaAndDataIntegrity, 0x81);
}
