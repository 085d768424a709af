namespace Duroslight.Protocol.Engine;

/// <summary>
/// An asynchronous event as the AER completion reports it in DW0: type (bits 2:0), information (15:8) and the
/// log page to read (23:16).
/// </summary>
public readonly record struct AsyncEvent(byte Type, byte Info, byte LogPage)
{
    public const byte TypeNotice = 0x2;
    public const byte TypeIoCommandSpecific = 0x6;

    /// <summary>Reservation Log Page Available: the host reads log page 80h (not governed by feature 0Bh).</summary>
    public static readonly AsyncEvent ReservationLogAvailable = new(TypeIoCommandSpecific, 0x00, 0x80);

    /// <summary>Namespace attribute changed: the host re-reads the Changed Namespace List log.</summary>
    public static readonly AsyncEvent NamespaceAttributeChanged = new(TypeNotice, 0x00, 0x04);

    /// <summary>Asymmetric Namespace Access change: the host re-reads the ANA log page (0Ch).</summary>
    public static readonly AsyncEvent AnaChange = new(TypeNotice, 0x03, 0x0C);

    /// <summary>Discovery log page changed: a discovery host re-reads log page 70h.</summary>
    public static readonly AsyncEvent DiscoveryLogChanged = new(TypeNotice, 0xF0, 0x70);

    public uint Dw0 => Type | ((uint)Info << 8) | ((uint)LogPage << 16);

    /// <summary>The Asynchronous Event Configuration (feature 0Bh) bit that enables this notice.</summary>
    /// <remarks>0 for an event feature 0Bh does not govern (the reservation notice: feature 82h masks it instead).</remarks>
    public uint ConfigBit => LogPage switch
    {
        0x70 => 1u << 31,
        0x0C => AnaChangeConfigBit,
        0x80 => 0,
        _ => 1u << 8,
    };

    /// <summary>Feature 0Bh bit 11 and OAES bit 11: ANA change notices.</summary>
    public const uint AnaChangeConfigBit = 1u << 11;

    /// <summary>The notices an I/O controller supports and may enable: namespace attribute (bit 8) and ANA change (bit 11).</summary>
    public const uint IoNotices = (1u << 8) | AnaChangeConfigBit;
}
