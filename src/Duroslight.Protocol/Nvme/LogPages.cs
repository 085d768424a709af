using System.Buffers.Binary;

namespace Duroslight.Protocol.Nvme;

/// <summary>
/// SMART / Health Information inputs (log 02h). Temperatures are in Kelvin; data units are thousands of 512-byte units
/// (a value of 1 means 1..1000 × 512 bytes, rounded up); command counts are completed commands.
/// </summary>
public readonly record struct SmartHealthInfo(
    ushort CompositeTemperatureKelvin,
    byte AvailableSparePercent,
    UInt128 DataUnitsRead,
    UInt128 DataUnitsWritten,
    UInt128 HostReadCommands,
    UInt128 HostWriteCommands,
    ulong PowerOnHours,
    ulong UnsafeShutdowns)
{
    /// <summary>Critical Warning bits (byte 0); 0 = healthy.</summary>
    public byte CriticalWarning { get; init; }
    /// <summary>Available Spare Threshold in percent (byte 4).</summary>
    public byte AvailableSpareThresholdPercent { get; init; } = 10;
    /// <summary>Percentage Used of the rated endurance (byte 5), may exceed 100.</summary>
    public byte PercentageUsed { get; init; }
    /// <summary>Power Cycles (bytes 112..127).</summary>
    public ulong PowerCycles { get; init; }
    /// <summary>Media and Data Integrity Errors (bytes 160..175).</summary>
    public ulong MediaErrors { get; init; }
    /// <summary>Number of Error Information Log Entries over the controller's life (bytes 176..191).</summary>
    public ulong ErrorLogEntries { get; init; }
}

/// <summary>Discovery log entry SUBTYPE (NVMe-oF 1.1 / Base 2.0 "Discovery Log Page Entry").</summary>
public enum DiscoverySubtype : byte
{
    /// <summary>A referral to another discovery service.</summary>
    Referral = 1,
    /// <summary>An NVM subsystem.</summary>
    Nvm = 2,
    /// <summary>The discovery subsystem returning this log (NVMe 2.0 / TP 8013).</summary>
    CurrentDiscovery = 3,
}

/// <summary>
/// Discovery log entry ADRFAM. Named apart from <see cref="System.Net.Sockets.AddressFamily"/>, which transport code
/// imports alongside this namespace.
/// </summary>
public enum NvmfAddressFamily : byte
{
    Ipv4 = 1,
    Ipv6 = 2,
}

/// <summary>
/// One Discovery Log Page entry for an NVMe/TCP port. <see cref="TrSvcId"/> is the TCP port as text (e.g. "4420"),
/// <see cref="TrAddr"/> the IP address as text; both ASCII. <see cref="Treq"/>: bits 1:0 secure channel (00b not
/// specified, 01b required, 10b not required), bit 2 SQ flow control disable supported.
/// </summary>
public readonly record struct DiscoveryEntry(
    DiscoverySubtype Subtype,
    ushort PortId,
    string TrSvcId,
    string TrAddr,
    string SubNqn,
    NvmfAddressFamily AdrFam,
    byte Treq,
    ushort AdminMaxSqSize)
{
    /// <summary>EFLAGS (bytes 10..11): bit 0 DUPRETINFO, bit 1 EPCSD, bit 2 NCC.</summary>
    public ushort EFlags { get; init; }
    /// <summary>TSAS for TCP, byte 0 SECTYPE: 0 = no security, 1 = TLS 1.2, 2 = TLS 1.3.</summary>
    public byte SecType { get; init; }
}

/// <summary>
/// Pure encoders of the log pages the target returns (NVMe Base 1.4/2.0 "Get Log Page", NVMe-oF 1.1 discovery log).
/// All write into caller-provided buffers, overwrite what they own, and never allocate. Multi-byte fields are
/// little-endian, including the 128-bit SMART counters. Get Log Page offset/length windowing is
/// <see cref="CopyWindow"/>'s job: encode the whole page once, then copy the host's window.
/// </summary>
public static class LogPages
{
    /// <summary>Size of one Error Information log entry.</summary>
    public const int ErrorInformationEntrySize = 64;
    /// <summary>Entries the controller reports in ELPE (0's based there): 64 entries = 4096 bytes.</summary>
    public const int ErrorInformationEntries = 64;
    /// <summary>SMART / Health Information and Firmware Slot Information logs are 512 bytes.</summary>
    public const int SmartHealthSize = 512, FirmwareSlotSize = 512;
    /// <summary>Changed Namespace List and Commands Supported and Effects logs are 4096 bytes.</summary>
    public const int ChangedNamespaceListSize = 4096, CommandsSupportedAndEffectsSize = 4096;
    /// <summary>Changed Namespace List capacity; past it the list is the single entry FFFFFFFFh.</summary>
    public const int MaxChangedNamespaces = 1024;

    /// <summary>
    /// Error Information log (01h) with no errors recorded: every entry zero. An entry whose Error Count is 0 is empty,
    /// so a zero-filled buffer of any length (normally (ELPE+1) × 64 bytes, or the host's window) is the whole answer.
    /// </summary>
    public static void ErrorInformation(Span<byte> dst) => dst.Clear();

    /// <summary>SMART / Health Information log (02h), 512 bytes.</summary>
    public static void SmartHealth(Span<byte> dst512, in SmartHealthInfo info)
    {
        Span<byte> d = Fixed(dst512, SmartHealthSize);
        d.Clear();
        d[0] = info.CriticalWarning;
        BinaryPrimitives.WriteUInt16LittleEndian(d[1..], info.CompositeTemperatureKelvin);
        d[3] = info.AvailableSparePercent;
        d[4] = info.AvailableSpareThresholdPercent;
        d[5] = info.PercentageUsed;
        BinaryPrimitives.WriteUInt128LittleEndian(d[32..], info.DataUnitsRead);
        BinaryPrimitives.WriteUInt128LittleEndian(d[48..], info.DataUnitsWritten);
        BinaryPrimitives.WriteUInt128LittleEndian(d[64..], info.HostReadCommands);
        BinaryPrimitives.WriteUInt128LittleEndian(d[80..], info.HostWriteCommands);
        // 96: Controller Busy Time, left 0.
        BinaryPrimitives.WriteUInt128LittleEndian(d[112..], info.PowerCycles);
        BinaryPrimitives.WriteUInt128LittleEndian(d[128..], info.PowerOnHours);
        BinaryPrimitives.WriteUInt128LittleEndian(d[144..], info.UnsafeShutdowns);
        BinaryPrimitives.WriteUInt128LittleEndian(d[160..], info.MediaErrors);
        BinaryPrimitives.WriteUInt128LittleEndian(d[176..], info.ErrorLogEntries);
        // 192..: warning/critical temperature time and sensors 1-8 left 0 (not implemented).
    }

    /// <summary>
    /// Firmware Slot Information log (03h), 512 bytes: AFI = 01h (slot 1 active, no different image pending for the
    /// next reset), FRS1 at byte 8 = the firmware revision (8 ASCII bytes, space padded), other slots zero (FRMW reports
    /// one slot). Linux nvmet returns all zeroes here, which leaves AFI naming no active slot.
    /// </summary>
    public static void FirmwareSlot(Span<byte> dst512, string firmwareRevision)
    {
        Span<byte> d = Fixed(dst512, FirmwareSlotSize);
        d.Clear();
        d[0] = 0x01;
        WireStrings.WriteAsciiPadded(d.Slice(8, 8), firmwareRevision);
    }

    /// <summary>
    /// Changed Namespace List log (04h), 4096 bytes: up to 1024 NSIDs, zero-terminated; more than 1024 changes are
    /// reported as a single FFFFFFFFh entry. Returns the entries written.
    /// </summary>
    public static int ChangedNamespaceList(Span<byte> dst4096, ReadOnlySpan<uint> nsids)
    {
        Span<byte> d = Fixed(dst4096, ChangedNamespaceListSize);
        d.Clear();
        if (nsids.Length > MaxChangedNamespaces)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(d, 0xFFFF_FFFF);
            return 1;
        }
        for (int i = 0; i < nsids.Length; i++)
            BinaryPrimitives.WriteUInt32LittleEndian(d[(i * 4)..], nsids[i]);
        return nsids.Length;
    }

    /// <summary>Commands Supported and Effects bit 0: command supported.</summary>
    public const uint EffectsCsupp = 1u << 0;
    /// <summary>Bit 1: the command may change logical block content.</summary>
    public const uint EffectsLbcc = 1u << 1;
    /// <summary>Bit 2: may change namespace capabilities.</summary>
    public const uint EffectsNcc = 1u << 2;
    /// <summary>Bit 3: may change the namespace inventory.</summary>
    public const uint EffectsNic = 1u << 3;
    /// <summary>Bit 4: may change controller capabilities.</summary>
    public const uint EffectsCcc = 1u << 4;

    /// <summary>
    /// Commands Supported and Effects log (05h), 4096 bytes: ACS[256] dwords at 0, IOCS[256] dwords at 1024, the rest
    /// reserved. Lists exactly the commands the target implements.
    /// <list type="bullet">
    /// <item>I/O and admin controllers, admin: Get Log Page, Identify, Abort, Set Features, Get Features, Asynchronous
    /// Event Request, Keep Alive, all CSUPP only. No Set Features the target supports changes namespace or controller
    /// capabilities or the namespace inventory, so NCC/NIC/CCC stay clear (Linux nvmet and SPDK agree). The Fabrics
    /// opcode 7Fh is not listed: its commands are defined by the fabrics spec, not this log.</item>
    /// <item>I/O controllers, NVM I/O: Flush and Read CSUPP; Write, Write Zeroes and Dataset Management CSUPP|LBCC
    /// (deallocation changes what a later read returns). Admin controllers list no I/O commands.</item>
    /// <item>Discovery controllers: Get Log Page, Identify, Set Features, Get Features, Asynchronous Event Request and
    /// Keep Alive (the set Linux nvmet's discovery controller parses; no Abort), no I/O commands.</item>
    /// </list>
    /// </summary>
    public static void CommandsSupportedAndEffects(Span<byte> dst4096, ControllerType type)
    {
        Span<byte> d = Fixed(dst4096, CommandsSupportedAndEffectsSize);
        d.Clear();
        Span<byte> acs = d[..1024];
        Span<byte> iocs = d.Slice(1024, 1024);

        Effect(acs, AdminOpcode.GetLogPage, EffectsCsupp);
        Effect(acs, AdminOpcode.Identify, EffectsCsupp);
        Effect(acs, AdminOpcode.SetFeatures, EffectsCsupp);
        Effect(acs, AdminOpcode.GetFeatures, EffectsCsupp);
        Effect(acs, AdminOpcode.AsyncEventRequest, EffectsCsupp);
        Effect(acs, AdminOpcode.KeepAlive, EffectsCsupp);
        if (type == ControllerType.Discovery) return;

        Effect(acs, AdminOpcode.Abort, EffectsCsupp);
        if (type != ControllerType.Io) return;

        Effect(iocs, IoOpcode.Flush, EffectsCsupp);
        Effect(iocs, IoOpcode.Read, EffectsCsupp);
        Effect(iocs, IoOpcode.Write, EffectsCsupp | EffectsLbcc);
        Effect(iocs, IoOpcode.WriteZeroes, EffectsCsupp | EffectsLbcc);
        Effect(iocs, IoOpcode.ReservationRegister, EffectsCsupp);
        Effect(iocs, IoOpcode.ReservationReport, EffectsCsupp);
        Effect(iocs, IoOpcode.ReservationAcquire, EffectsCsupp);
        Effect(iocs, IoOpcode.ReservationRelease, EffectsCsupp);
        Effect(iocs, IoOpcode.DatasetManagement, EffectsCsupp | EffectsLbcc);
    }

    // ---- Discovery log page (70h), NVMe-oF 1.1 "Discovery Log Page". ----
    /// <summary>Size of the discovery log header and of each entry.</summary>
    public const int DiscoveryHeaderSize = 1024, DiscoveryEntrySize = 1024;
    /// <summary>TRTYPE for NVMe/TCP.</summary>
    public const byte TrTypeTcp = 3;
    /// <summary>CNTLID in a discovery entry under the dynamic controller model.</summary>
    public const ushort DynamicControllerId = 0xFFFF;

    /// <summary>Bytes of a discovery log holding <paramref name="entries"/> records.</summary>
    public static int DiscoveryLogSize(int entries) => DiscoveryHeaderSize + DiscoveryEntrySize * entries;

    /// <summary>
    /// Discovery log (70h): header GENCTR (0..7), NUMREC (8..15), RECFMT (16..17) = 0, then entry i at 1024 + 1024·i:
    /// TRTYPE 0 = 3 (TCP), ADRFAM 1, SUBTYPE 2, TREQ 3, PORTID 4..5, CNTLID 6..7 = FFFFh, ASQSZ 8..9, EFLAGS 10..11,
    /// TRSVCID 32..63 (ASCII, NUL padded), SUBNQN 256..511 (NUL padded), TRADDR 512..767 (ASCII, NUL padded),
    /// TSAS 768..1023 (TCP: SECTYPE at 768). <paramref name="dst"/> must hold <see cref="DiscoveryLogSize"/> bytes;
    /// returns the bytes written. Serve the host's offset/length with <see cref="CopyWindow"/>.
    /// </summary>
    public static int DiscoveryLog(Span<byte> dst, ulong genctr, ReadOnlySpan<DiscoveryEntry> entries)
    {
        int size = DiscoveryLogSize(entries.Length);
        Span<byte> d = Fixed(dst, size);
        d.Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(d, genctr);
        BinaryPrimitives.WriteUInt64LittleEndian(d[8..], (ulong)entries.Length);
        BinaryPrimitives.WriteUInt16LittleEndian(d[16..], 0); // RECFMT 0
        for (int i = 0; i < entries.Length; i++)
        {
            ref readonly DiscoveryEntry e = ref entries[i];
            Span<byte> r = d.Slice(DiscoveryHeaderSize + DiscoveryEntrySize * i, DiscoveryEntrySize);
            r[0] = TrTypeTcp;
            r[1] = (byte)e.AdrFam;
            r[2] = (byte)e.Subtype;
            r[3] = e.Treq;
            BinaryPrimitives.WriteUInt16LittleEndian(r[4..], e.PortId);
            BinaryPrimitives.WriteUInt16LittleEndian(r[6..], DynamicControllerId);
            BinaryPrimitives.WriteUInt16LittleEndian(r[8..], e.AdminMaxSqSize);
            BinaryPrimitives.WriteUInt16LittleEndian(r[10..], e.EFlags);
            WireStrings.WriteAscii(r.Slice(32, 32), e.TrSvcId, 0);
            WireStrings.WriteNqn(r.Slice(256, 256), e.SubNqn);
            WireStrings.WriteAscii(r.Slice(512, 256), e.TrAddr, 0);
            r[768] = e.SecType;
        }
        return size;
    }

    /// <summary>
    /// Copies the Get Log Page window [<paramref name="offset"/>, offset + dst.Length) of <paramref name="full"/> into
    /// <paramref name="dst"/> and zero-fills whatever lies past the end of the log. Returns false, writing nothing,
    /// when the offset is beyond the log (offset &gt; length): the spec says the controller should then fail the command
    /// with Invalid Field in Command. An offset equal to the length is valid and yields all zeroes.
    /// Checking that the offset is dword-aligned (LPOL bits 1:0) and that the page supports offsets is the engine's job.
    /// </summary>
    public static bool CopyWindow(ReadOnlySpan<byte> full, ulong offset, Span<byte> dst)
    {
        if (offset > (ulong)full.Length) return false;
        ReadOnlySpan<byte> rest = full[(int)offset..];
        int n = Math.Min(rest.Length, dst.Length);
        rest[..n].CopyTo(dst);
        dst[n..].Clear();
        return true;
    }

    private static void Effect(Span<byte> table, byte opcode, uint effects) =>
        BinaryPrimitives.WriteUInt32LittleEndian(table[(opcode * 4)..], effects);

    private static Span<byte> Fixed(Span<byte> dst, int size)
    {
        if (dst.Length < size)
            throw new ArgumentException($"This log page needs {size} bytes; got {dst.Length}.", nameof(dst));
        return dst[..size];
    }
}
