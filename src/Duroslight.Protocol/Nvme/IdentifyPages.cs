using System.Buffers.Binary;
using Duroslight.Protocol.Subsystems;

namespace Duroslight.Protocol.Nvme;

/// <summary>
/// Pure encoders of the Identify data structures (NVMe Base 1.4/2.0 "Identify command", NVMe-oF 1.1 fabrics fields).
/// Each writes one 4096-byte page into a caller-provided buffer (pooled by the caller; nothing here allocates) and
/// overwrites the whole page, so a recycled buffer never leaks old bytes to a host. Multi-byte fields are little-endian.
/// </summary>
public static class IdentifyPages
{
    /// <summary>Every Identify data structure is 4096 bytes.</summary>
    public const int PageSize = 4096;

    /// <summary>Active Namespace ID list capacity: 1024 four-byte NSIDs.</summary>
    public const int MaxNamespaceListEntries = PageSize / sizeof(uint);

    // ---- Identify Controller (CNS 01h) byte offsets, NVMe Base 2.0 "Identify Controller Data Structure". ----
    private const int VidOff = 0, SsvidOff = 2, SnOff = 4, SnLen = 20, MnOff = 24, MnLen = 40, FrOff = 64, FrLen = 8;
    private const int RabOff = 72, IeeeOff = 73, CmicOff = 76, MdtsOff = 77, CntlidOff = 78, VerOff = 80;
    private const int OaesOff = 92, CtrattOff = 96, CntrlTypeOff = 111;
    private const int AclOff = 258, AerlOff = 259, FrmwOff = 260, LpaOff = 261, ElpeOff = 262, NpssOff = 263;
    private const int WctempOff = 266, CctempOff = 268, KasOff = 320;
    private const int SqesOff = 512, CqesOff = 513, MaxcmdOff = 514, NnOff = 516, OncsOff = 520, VwcOff = 525;
    private const int AnattOff = 340, AnacapOff = 341, AnagrpmaxOff = 342, NanagrpidOff = 346;
    private const int SglsOff = 536, MnanOff = 540, SubnqnOff = 768, SubnqnLen = 256;
    private const int IoccszOff = 1792, IorcszOff = 1796, IcdoffOff = 1800, FcattOff = 1802, MsdbdOff = 1803, OfcsOff = 1804;
    private const int Psd0Off = 2048;

    /// <summary>CMIC bit 1: several controllers; bit 3: ANA reporting.</summary>
    public const byte CmicMultiController = 1 << 1, CmicAnaReporting = 1 << 3;
    /// <summary>ANATT: at most 10 s in the ANA change state (the state is never reported; a host waits this long at most).</summary>
    public const byte AnaTransitionTimeSeconds = 10;
    /// <summary>
    /// ANACAP: bit 0 optimized and bit 2 inaccessible are the states reported; bit 6: a namespace's ANAGRPID does
    /// not change while it is attached (it is the NSID).
    /// </summary>
    public const byte Anacap = (1 << 0) | (1 << 2) | (1 << 6);

    /// <summary>RAB: recommended arbitration burst 2^6 (what Linux nvmet and SPDK report; meaningless on fabrics).</summary>
    public const byte RecommendedArbitrationBurst = 6;
    /// <summary>ACL: 0's based, 3 = four concurrent Abort commands (the spec's recommended minimum).</summary>
    public const byte AbortCommandLimit = 3;
    /// <summary>CTRATT bit 0: the controller supports the 128-bit Host Identifier (fabrics Connect always carries one).</summary>
    public const uint CtrattHostId128 = 1u << 0;
    /// <summary>FRMW: bit 0 = slot 1 read-only, bits 3:1 = one slot.</summary>
    public const byte Frmw = (1 << 0) | (1 << 1);
    /// <summary>LPA: bit 1 Commands Supported and Effects log, bit 2 extended data (NUMDU + LPO) for Get Log Page.</summary>
    public const byte Lpa = (1 << 1) | (1 << 2);
    /// <summary>ELPE: 0's based Error Information log entries (see <see cref="LogPages.ErrorInformationEntries"/>).</summary>
    public const byte Elpe = LogPages.ErrorInformationEntries - 1;
    /// <summary>SQES: required and maximum SQ entry size both 2^6 = 64 bytes.</summary>
    public const byte Sqes = 0x66;
    /// <summary>CQES: required and maximum CQ entry size both 2^4 = 16 bytes.</summary>
    public const byte Cqes = 0x44;
    /// <summary>ONCS bit 2: Dataset Management supported.</summary>
    public const ushort OncsDatasetManagement = 1 << 2;
    /// <summary>ONCS bit 3: Write Zeroes supported.</summary>
    public const ushort OncsWriteZeroes = 1 << 3;
    /// <summary>ONCS bit 5: the Reservation commands are supported.</summary>
    public const ushort OncsReservations = 1 << 5;
    /// <summary>
    /// RESCAP (Identify Namespace byte 31): the six reservation types (bits 6:1) and IEKEY as defined from revision 1.3
    /// (bit 7: reserved in Acquire and Release). Bit 0 (Persist Through Power Loss) is <see cref="RescapPtpl"/>, claimed only
    /// where the target stores reservation records (<see cref="Target.PtplCapable"/>).
    /// </summary>
    public const byte Rescap = 0b1111_1110;

    /// <summary>RESCAP bit 0, Persist Through Power Loss: set where the target stores reservation records.</summary>
    public const byte RescapPtpl = 1;
    /// <summary>VWC bit 0: a volatile write cache is present.</summary>
    public const byte VwcPresent = 1 << 0;
    /// <summary>
    /// VWC bits 2:1 = 11b: Flush supports NSID FFFFFFFFh (flush every attached namespace). NVMe Base 1.4 added the field
    /// and says controllers compliant with 1.4 or later shall not report 00b ("not indicated"); SPDK and FreeBSD report 10b
    /// (not supported), Linux nvmet still reports 00b. We report 11b, so the I/O engine must accept a Flush with NSID
    /// FFFFFFFFh and flush all namespaces attached to the controller.
    /// </summary>
    public const byte VwcFlushBroadcastSupported = 0b11 << 1;
    /// <summary>SGLS bits 1:0 = 01b: SGLs supported with no alignment or granularity requirement.</summary>
    public const uint SglsSupported = 1u << 0;
    /// <summary>SGLS bit 20: the Address field of an SGL Data Block descriptor may be an offset (in-capsule data).</summary>
    public const uint SglsAddressAsOffset = 1u << 20;
    /// <summary>SGLS bit 21: the Transport SGL Data Block descriptor (NVMe/TCP type 5h, used with R2T/H2CData/C2HData).</summary>
    public const uint SglsTransportDataBlock = 1u << 21;
    /// <summary>SGLS reported for NVMe/TCP: bits 0, 20 and 21 (Linux nvmet-tcp reports bits 0 and 20; FreeBSD nvmft all three).</summary>
    public const uint TcpSgls = SglsSupported | SglsAddressAsOffset | SglsTransportDataBlock;
    /// <summary>MSDBD: one SGL data block descriptor per command (NVMe/TCP carries a single descriptor).</summary>
    public const byte Msdbd = 1;
    /// <summary>OFCS bit 0: Disconnect command and deletion of individual I/O queues supported.</summary>
    public const ushort OfcsDisconnect = 1 << 0;
    /// <summary>
    /// WCTEMP/CCTEMP in Kelvin: 343 K (70 °C) warning and 373 K (100 °C) critical, the values NVMe 1.3d recommends and SPDK
    /// reports. The spec asks controllers that report a Composite Temperature (we do, in the SMART log) to report these.
    /// </summary>
    public const ushort WarningTemperatureKelvin = 0x157, CriticalTemperatureKelvin = 0x175;
    /// <summary>Power state 0 MP in centiwatts (MXPS = 0): 25.00 W, the value QEMU and Linux nvmet report.</summary>
    public const ushort PowerState0MaxPowerCentiwatts = 0x09C4;

    /// <summary>
    /// Identify Controller (CNS 01h). I/O and admin controllers get the full NVM subsystem view. A discovery controller
    /// (<see cref="ControllerType.Discovery"/>) gets what Linux nvmet's discovery identify and SPDK report for one:
    /// NN = 0, ONCS = 0, VWC = 0 and OFCS = 0 (no namespaces, no I/O commands, no I/O queues to disconnect); OAES is the
    /// caller's (bit 31, Discovery Log Page Change, for a discovery controller). Everything else is encoded alike.
    /// </summary>
    public static void Controller(Span<byte> page, ControllerIdentity id)
    {
        ArgumentNullException.ThrowIfNull(id);
        page = Page(page);
        page.Clear();
        bool discovery = id.Type == ControllerType.Discovery;

        // VID, SSVID: 0, no PCI vendor ID assigned (as Linux nvmet).
        BinaryPrimitives.WriteUInt16LittleEndian(page[VidOff..], 0);
        BinaryPrimitives.WriteUInt16LittleEndian(page[SsvidOff..], 0);
        WireStrings.WriteAsciiPadded(page.Slice(SnOff, SnLen), id.SerialNumber);
        WireStrings.WriteAsciiPadded(page.Slice(MnOff, MnLen), id.ModelNumber);
        WireStrings.WriteAsciiPadded(page.Slice(FrOff, FrLen), id.FirmwareRevision);
        page[RabOff] = RecommendedArbitrationBurst;
        if (id.IeeeOui > 0xFF_FFFF)
            throw new ArgumentException($"IEEE OUI {id.IeeeOui:X} does not fit 24 bits.", nameof(id));
        page[IeeeOff] = (byte)id.IeeeOui;
        page[IeeeOff + 1] = (byte)(id.IeeeOui >> 8);
        page[IeeeOff + 2] = (byte)(id.IeeeOui >> 16);
        page[CmicOff] = (byte)((id.MultiController ? CmicMultiController : 0) | (id.AnaReporting ? CmicAnaReporting : 0));
        page[MdtsOff] = id.Mdts;
        BinaryPrimitives.WriteUInt16LittleEndian(page[CntlidOff..], id.Cntlid);
        BinaryPrimitives.WriteUInt32LittleEndian(page[VerOff..], id.Version);
        BinaryPrimitives.WriteUInt32LittleEndian(page[OaesOff..], id.Oaes);
        BinaryPrimitives.WriteUInt32LittleEndian(page[CtrattOff..], CtrattHostId128);
        page[CntrlTypeOff] = (byte)id.Type;

        page[AclOff] = AbortCommandLimit;
        page[AerlOff] = id.AerLimit;
        page[FrmwOff] = Frmw;
        page[LpaOff] = Lpa;
        page[ElpeOff] = Elpe;
        page[NpssOff] = 0; // NPSS is 0's based: one power state.
        BinaryPrimitives.WriteUInt16LittleEndian(page[WctempOff..], WarningTemperatureKelvin);
        BinaryPrimitives.WriteUInt16LittleEndian(page[CctempOff..], CriticalTemperatureKelvin);
        BinaryPrimitives.WriteUInt16LittleEndian(page[KasOff..], id.KeepAliveSupport);

        page[SqesOff] = Sqes;
        page[CqesOff] = Cqes;
        BinaryPrimitives.WriteUInt16LittleEndian(page[MaxcmdOff..], id.MaxCommands);
        BinaryPrimitives.WriteUInt32LittleEndian(page[NnOff..], discovery ? 0u : id.NamespaceCount);
        BinaryPrimitives.WriteUInt16LittleEndian(page[OncsOff..],
            discovery ? (ushort)0 : (ushort)(OncsDatasetManagement | OncsWriteZeroes | OncsReservations));
        page[VwcOff] = discovery ? (byte)0
            : (byte)(VwcFlushBroadcastSupported | (id.VolatileWriteCache ? VwcPresent : 0));
        BinaryPrimitives.WriteUInt32LittleEndian(page[SglsOff..], TcpSgls);
        if (id.AnaReporting)
        {
            page[AnattOff] = AnaTransitionTimeSeconds;
            page[AnacapOff] = Anacap;
            BinaryPrimitives.WriteUInt32LittleEndian(page[AnagrpmaxOff..], id.NamespaceCount);
            BinaryPrimitives.WriteUInt32LittleEndian(page[NanagrpidOff..], id.NamespaceCount);
        }
        // MNAN: 0 (not reported, NN is the limit) unless ANA is reported: Linux sizes its ANA log buffer from NANAGRPID
        // and MNAN, and the log lists every NSID, so MNAN must count them.
        BinaryPrimitives.WriteUInt32LittleEndian(page[MnanOff..], id.AnaReporting ? id.NamespaceCount : 0);
        WireStrings.WriteNqn(page.Slice(SubnqnOff, SubnqnLen), id.SubsystemNqn);

        // NVMe over Fabrics fields (NVMe-oF 1.1 "Identify Controller fields" at 1792).
        BinaryPrimitives.WriteUInt32LittleEndian(page[IoccszOff..], id.IoCommandCapsuleSize16);
        BinaryPrimitives.WriteUInt32LittleEndian(page[IorcszOff..], id.IoResponseCapsuleSize16);
        BinaryPrimitives.WriteUInt16LittleEndian(page[IcdoffOff..], 0); // in-capsule data right after the SQE
        page[FcattOff] = 0; // bit 0 cleared: dynamic controller model
        page[MsdbdOff] = Msdbd;
        BinaryPrimitives.WriteUInt16LittleEndian(page[OfcsOff..], discovery ? (ushort)0 : OfcsDisconnect);

        // Power State 0 descriptor: MP only; ENLAT/EXLAT 0 = not reported, operational state.
        BinaryPrimitives.WriteUInt16LittleEndian(page[Psd0Off..], PowerState0MaxPowerCentiwatts);
    }

    // ---- Identify Namespace (CNS 00h) byte offsets, NVMe Base 2.0 / NVM Command Set 1.0. ----
    private const int NszeOff = 0, NcapOff = 8, NuseOff = 16, NsfeatOff = 24, NlbafOff = 25, FlbasOff = 26;
    private const int NmicOff = 30, RescapOff = 31, DlfeatOff = 33, NpwgOff = 64, NpwaOff = 66, NpdgOff = 68, NpdaOff = 70, NowsOff = 72;
    private const int AnagrpidOff = 92, NguidOff = 104, NguidLen = 16, Eui64Off = 120, Lbaf0Off = 128;

    /// <summary>NSFEAT bit 0: thin provisioning (NUSE may be less than NCAP).</summary>
    public const byte NsfeatThinProvisioning = 1 << 0;
    /// <summary>NSFEAT bit 3 (UIDREUSE): a non-zero NGUID/EUI64 of this namespace is never reused for another namespace.</summary>
    public const byte NsfeatIdentifiersNeverReused = 1 << 3;
    /// <summary>NSFEAT bit 4 (OPTPERF): NPWG, NPWA, NPDG, NPDA and NOWS are valid.</summary>
    public const byte NsfeatOptimalPerformance = 1 << 4;
    /// <summary>NMIC bit 0: the namespace may be attached to two or more controllers.</summary>
    public const byte NmicShared = 1 << 0;
    /// <summary>DLFEAT: bits 2:0 = 001b deallocated blocks read as zeroes; bit 3 Write Zeroes honours Deallocate.</summary>
    public const byte Dlfeat = 0b001 | (1 << 3);
    /// <summary>Preferred write/deallocate granularity and alignment advertised in NPWG/NPWA/NPDG/NPDA: 4 KiB.</summary>
    public const int PreferredGranularityBytes = 4096;
    /// <summary>Optimal write size advertised in NOWS: 128 KiB.</summary>
    public const int OptimalWriteSizeBytes = 128 * 1024;

    /// <summary>
    /// Identify Namespace (CNS 00h) for an active namespace. NSZE = NCAP = block count; NUSE = the storage layer's
    /// allocated blocks when it supplies them (clamped to NCAP), else NSZE. One LBA format (NLBAF = 0, FLBAS = 0) with
    /// LBADS = log2(block size) and no metadata.
    /// <para>NSFEAT: bit 0 (thin provisioning) only when <see cref="NamespaceInfo.AllocatedBlocks"/> is supplied, since
    /// only then can NUSE be smaller than NCAP; bit 3 (UIDREUSE) when the NGUID is non-zero: the NGUID is the volume UUID,
    /// created fresh per volume, so no other namespace ever carries it (the spec requires the bit cleared when NGUID and
    /// EUI64 are both zero); bit 4 (OPTPERF) with NPWG = NPWA = NPDG = NPDA = 4 KiB and NOWS = 128 KiB in blocks (0's
    /// based), a flash-friendly hint Linux turns into physical block size/io_opt/discard granularity. NSFEAT bit 1
    /// (NAWUN/NAWUPF/NACWU valid) stays clear: atomicity beyond one block is a storage-layer promise this layer cannot make.</para>
    /// <para>Callers answer an inactive NSID with an all-zero page instead.</para>
    /// </summary>
    public static void Namespace(Span<byte> page, NamespaceInfo ns, bool ptplCapable = false)
    {
        ArgumentNullException.ThrowIfNull(ns);
        page = Page(page);
        page.Clear();
        if (ns.BlockCount < 0) throw new ArgumentException("Negative block count.", nameof(ns));
        if (ns.BlockSize < 512 || !System.Numerics.BitOperations.IsPow2(ns.BlockSize))
            throw new ArgumentException($"Block size {ns.BlockSize} is not a power of two >= 512.", nameof(ns));

        ulong nsze = (ulong)ns.BlockCount;
        ulong nuse = nsze;
        if (ns.AllocatedBlocks is { } allocated)
            nuse = (ulong)Math.Clamp(allocated(), 0L, ns.BlockCount);
        BinaryPrimitives.WriteUInt64LittleEndian(page[NszeOff..], nsze);
        BinaryPrimitives.WriteUInt64LittleEndian(page[NcapOff..], nsze);
        BinaryPrimitives.WriteUInt64LittleEndian(page[NuseOff..], nuse);

        byte nsfeat = NsfeatOptimalPerformance;
        if (ns.AllocatedBlocks is not null) nsfeat |= NsfeatThinProvisioning;
        if (ns.VolumeId != Guid.Empty) nsfeat |= NsfeatIdentifiersNeverReused;
        page[NsfeatOff] = nsfeat;
        page[NlbafOff] = 0;
        page[FlbasOff] = 0;
        page[NmicOff] = NmicShared;
        page[RescapOff] = (byte)(Rescap | (ptplCapable ? RescapPtpl : 0));
        page[DlfeatOff] = Dlfeat;

        ushort granularity = ZeroBasedBlocks(PreferredGranularityBytes, ns.BlockSize);
        BinaryPrimitives.WriteUInt16LittleEndian(page[NpwgOff..], granularity);
        BinaryPrimitives.WriteUInt16LittleEndian(page[NpwaOff..], granularity);
        BinaryPrimitives.WriteUInt16LittleEndian(page[NpdgOff..], granularity);
        BinaryPrimitives.WriteUInt16LittleEndian(page[NpdaOff..], granularity);
        BinaryPrimitives.WriteUInt16LittleEndian(page[NowsOff..], ZeroBasedBlocks(OptimalWriteSizeBytes, ns.BlockSize));
        BinaryPrimitives.WriteUInt32LittleEndian(page[AnagrpidOff..], ns.AnaGroupId);

        WriteNguid(page.Slice(NguidOff, NguidLen), ns.VolumeId);
        BinaryPrimitives.WriteUInt64LittleEndian(page[Eui64Off..], 0); // EUI64 not assigned

        // LBA Format 0: MS (2 bytes) = 0, LBADS (byte 2) = log2(block size), RP (byte 3 bits 1:0) = 00b best.
        page[Lbaf0Off + 2] = (byte)ns.BlockShift;
    }

    /// <summary>
    /// Active Namespace ID list (CNS 02h, and CNS 07h with CSI 0): the NSIDs greater than <paramref name="startAfter"/>
    /// in increasing order, at most 1024, the rest of the page zero. <paramref name="ascendingNsids"/> must be strictly
    /// increasing. (NSID FFFFFFFEh/FFFFFFFFh in the command are Invalid Namespace; that check is the engine's.)
    /// Returns the number of NSIDs written.
    /// </summary>
    public static int ActiveNamespaceList(Span<byte> page, ReadOnlySpan<uint> ascendingNsids, uint startAfter)
    {
        page = Page(page);
        page.Clear();
        int count = 0;
        uint previous = 0;
        for (int i = 0; i < ascendingNsids.Length; i++)
        {
            uint nsid = ascendingNsids[i];
            if (i > 0 && nsid <= previous)
                throw new ArgumentException("NSIDs must be strictly ascending.", nameof(ascendingNsids));
            previous = nsid;
            if (nsid <= startAfter) continue;
            if (count == MaxNamespaceListEntries) break;
            BinaryPrimitives.WriteUInt32LittleEndian(page[(count * sizeof(uint))..], nsid);
            count++;
        }
        return count;
    }

    /// <summary>Namespace Identification Descriptor types (NIDT).</summary>
    public const byte NidtEui64 = 1, NidtNguid = 2, NidtUuid = 3, NidtCsi = 4;

    /// <summary>Command Set Identifier of the NVM Command Set.</summary>
    public const byte CsiNvm = 0;

    /// <summary>
    /// Namespace Identification Descriptor list (CNS 03h): NGUID (NIDT 2, NIDL 16) and UUID (NIDT 3, NIDL 16), both the
    /// volume UUID in RFC 4122 byte order and equal to the Identify Namespace NGUID, then CSI (NIDT 4, NIDL 1, 0 = NVM).
    /// Each descriptor is NIDT, NIDL, two reserved bytes, then NIDL bytes; a zero NIDT ends the list. A zero volume UUID
    /// yields only the CSI descriptor (zero identifiers must not be reported). Returns the bytes used.
    /// </summary>
    public static int NamespaceDescriptors(Span<byte> page, NamespaceInfo ns)
    {
        ArgumentNullException.ThrowIfNull(ns);
        page = Page(page);
        page.Clear();
        int off = 0;
        if (ns.VolumeId != Guid.Empty)
        {
            off = Descriptor(page, off, NidtNguid, 16);
            WriteNguid(page.Slice(off - 16, 16), ns.VolumeId);
            off = Descriptor(page, off, NidtUuid, 16);
            WriteNguid(page.Slice(off - 16, 16), ns.VolumeId);
        }
        off = Descriptor(page, off, NidtCsi, 1);
        page[off - 1] = CsiNvm;
        return off;
    }

    /// <summary>
    /// I/O Command Set specific Identify Controller for the NVM Command Set (CNS 06h, CSI 0): all zero. VSL, WZSL and
    /// WUSL 0 mean no Verify/Write Zeroes/Write Uncorrectable size limit beyond MDTS, DMRL 0 no limit on ranges per
    /// Dataset Management command (a host then uses the 256 the command format allows) and DMRSL/DMSL 0 no limit on
    /// range or total size. Linux nvmet answers the same. The engine must therefore accept a Write Zeroes of any NLB
    /// (up to 65536 blocks) and a Dataset Management command with up to 256 ranges of any length.
    /// </summary>
    public static void NvmCommandSetController(Span<byte> page) => Page(page).Clear();

    /// <summary>
    /// I/O Command Set specific Identify Namespace for the NVM Command Set (CNS 05h, CSI 0): all zero (no logical block
    /// storage tag mask, no protection information, no extended LBA formats), as Linux nvmet answers.
    /// </summary>
    public static void NvmCommandSetNamespace(Span<byte> page) => Page(page).Clear();

    /// <summary>The volume UUID as NGUID/UUID bytes: RFC 4122 order (big-endian fields), i.e. the UUID's text order.</summary>
    private static void WriteNguid(Span<byte> dst, Guid id)
    {
        if (!id.TryWriteBytes(dst, bigEndian: true, out _))
            throw new ArgumentException("NGUID field too small.", nameof(dst));
    }

    private static int Descriptor(Span<byte> page, int off, byte nidt, byte nidl)
    {
        page[off] = nidt;
        page[off + 1] = nidl;
        // bytes off+2..off+3 reserved (already zero)
        return off + 4 + nidl;
    }

    private static ushort ZeroBasedBlocks(int bytes, int blockSize) =>
        (ushort)Math.Min(ushort.MaxValue, Math.Max(1, bytes / blockSize) - 1);

    private static Span<byte> Page(Span<byte> page)
    {
        if (page.Length < PageSize)
            throw new ArgumentException($"An Identify page needs {PageSize} bytes; got {page.Length}.", nameof(page));
        return page[..PageSize];
    }
}
