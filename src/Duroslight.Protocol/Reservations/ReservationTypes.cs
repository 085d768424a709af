namespace Duroslight.Protocol.Reservations;

/// <summary>RTYPE (NVMe Base 2.0, 8.19 "Reservations", and the Reservation Acquire command): 0 is "no reservation".</summary>
public enum ReservationType : byte
{
    None = 0,
    WriteExclusive = 1,
    ExclusiveAccess = 2,
    WriteExclusiveRegistrantsOnly = 3,
    ExclusiveAccessRegistrantsOnly = 4,
    WriteExclusiveAllRegistrants = 5,
    ExclusiveAccessAllRegistrants = 6,
}

/// <summary>RREGA, Reservation Register command Dword 10 bits 2:0.</summary>
public enum RegisterAction : byte
{
    Register = 0,
    Unregister = 1,
    Replace = 2,
}

/// <summary>RACQA, Reservation Acquire command Dword 10 bits 2:0.</summary>
public enum AcquireAction : byte
{
    Acquire = 0,
    Preempt = 1,
    PreemptAndAbort = 2,
}

/// <summary>RRELA, Reservation Release command Dword 10 bits 2:0.</summary>
public enum ReleaseAction : byte
{
    Release = 0,
    Clear = 1,
}

/// <summary>CPTPL, Reservation Register command Dword 10 bits 31:30.</summary>
public enum PtplChange : byte
{
    NoChange = 0,
    Reserved = 1,
    Clear = 2,
    Set = 3,
}

/// <summary>The Reservation Notification log page's (80h) Reservation Notification Type, and its mask bit in feature 82h.</summary>
public enum ReservationNoticeType : byte
{
    RegistrationPreempted = 1,
    ReservationReleased = 2,
    ReservationPreempted = 3,
}

/// <summary>What an I/O command does to the media, as the reservation rules group commands (reads, writes).</summary>
public enum ReservationAccess : byte
{
    /// <summary>Read, Compare, Verify: refused only by the exclusive-access types.</summary>
    Read,

    /// <summary>Write, Write Zeroes, Dataset Management, Flush, Write Uncorrectable, Copy.</summary>
    Write,
}

/// <summary>One notification the engine delivers (log page 80h entry plus AEN) to every controller of <paramref name="Host"/>.</summary>
public readonly record struct ReservationNotice(UInt128 Host, ReservationNoticeType Type);

/// <summary>A registrant: a host (by its 128-bit Host Identifier) and its reservation key.</summary>
public readonly record struct Registrant(UInt128 Host, ulong Key);
