using System.Buffers.Binary;
using Duroslight.Protocol.Nvme;

namespace Duroslight.Host;

/// <summary>The Identify Controller fields an initiator acts on (byte offsets per NVMe Base 2.0 / NVMe-oF 1.1).</summary>
public sealed record ControllerInfo(
    ushort Cntlid,
    string SerialNumber,
    string ModelNumber,
    string FirmwareRevision,
    byte Mdts,
    uint Version,
    uint Oaes,
    ControllerType ControllerType,
    byte AerLimit,
    ushort KeepAliveSupport,
    ushort MaxCommands,
    uint NamespaceCount,
    ushort Oncs,
    byte VolatileWriteCache,
    uint Sgls,
    string SubsystemNqn,
    uint IoCommandCapsuleSize16,
    uint IoResponseCapsuleSize16,
    ushort InCapsuleDataOffset,
    byte MaxSglDataBlockDescriptors)
{
    /// <summary>Largest transfer per command in bytes (MDTS in 4 KiB units as CAP.MPSMIN = 4 KiB); 0 = no limit.</summary>
    public int MaxTransferBytes => Mdts == 0 ? 0 : 4096 << Mdts;

    public static ControllerInfo Parse(ReadOnlySpan<byte> page)
    {
        if (page.Length < IdentifyPages.PageSize) throw new ArgumentException("Identify data is 4096 bytes", nameof(page));
        return new ControllerInfo(
            Cntlid: U16(page, 78),
            SerialNumber: WireStrings.ReadAsciiPadded(page.Slice(4, 20)),
            ModelNumber: WireStrings.ReadAsciiPadded(page.Slice(24, 40)),
            FirmwareRevision: WireStrings.ReadAsciiPadded(page.Slice(64, 8)),
            Mdts: page[77],
            Version: U32(page, 80),
            Oaes: U32(page, 92),
            ControllerType: (ControllerType)page[111],
            AerLimit: page[259],
            KeepAliveSupport: U16(page, 320),
            MaxCommands: U16(page, 514),
            NamespaceCount: U32(page, 516),
            Oncs: U16(page, 520),
            VolatileWriteCache: page[525],
            Sgls: U32(page, 536),
            SubsystemNqn: WireStrings.ReadNqn(page.Slice(768, 256)),
            IoCommandCapsuleSize16: U32(page, 1792),
            IoResponseCapsuleSize16: U32(page, 1796),
            InCapsuleDataOffset: U16(page, 1800),
            MaxSglDataBlockDescriptors: page[1803]);
    }

    private static ushort U16(ReadOnlySpan<byte> b, int off) => BinaryPrimitives.ReadUInt16LittleEndian(b[off..]);
    private static uint U32(ReadOnlySpan<byte> b, int off) => BinaryPrimitives.ReadUInt32LittleEndian(b[off..]);
}

/// <summary>An active namespace as Identify Namespace (CNS 00h) and its descriptor list (CNS 03h) describe it.</summary>
public sealed record NamespaceDetails(uint Nsid, ulong BlockCount, ulong Capacity, ulong Utilization, int BlockSize, Guid Nguid, Guid? Uuid)
{
    public long SizeBytes => (long)BlockCount * BlockSize;

    /// <summary>NSZE (0), NCAP (8), NUSE (16), FLBAS (26) selecting the LBA format at 128 + 4n (LBADS at +2), NGUID (104).</summary>
    public static NamespaceDetails Parse(uint nsid, ReadOnlySpan<byte> identifyNamespace, ReadOnlySpan<byte> descriptors)
    {
        if (identifyNamespace.Length < IdentifyPages.PageSize) throw new ArgumentException("Identify data is 4096 bytes", nameof(identifyNamespace));
        int format = identifyNamespace[26] & 0xF;
        int lbads = identifyNamespace[128 + format * 4 + 2];
        return new NamespaceDetails(nsid,
            BinaryPrimitives.ReadUInt64LittleEndian(identifyNamespace),
            BinaryPrimitives.ReadUInt64LittleEndian(identifyNamespace[8..]),
            BinaryPrimitives.ReadUInt64LittleEndian(identifyNamespace[16..]),
            lbads is >= 9 and < 31 ? 1 << lbads : 0,
            new Guid(identifyNamespace.Slice(104, 16), bigEndian: true),
            FindDescriptor(descriptors, IdentifyPages.NidtUuid) is { Length: 16 } uuid ? new Guid(uuid, bigEndian: true) : null);
    }

    /// <summary>Walks the NIDT/NIDL descriptor list (CNS 03h) for one type; empty when absent.</summary>
    public static ReadOnlySpan<byte> FindDescriptor(ReadOnlySpan<byte> list, byte nidt)
    {
        int off = 0;
        while (off + 4 <= list.Length && list[off] != 0)
        {
            int len = list[off + 1];
            if (off + 4 + len > list.Length) break;
            if (list[off] == nidt) return list.Slice(off + 4, len);
            off += 4 + len;
        }
        return default;
    }
}

/// <summary>A discovery log page (70h): its generation counter and entries.</summary>
public sealed record DiscoveryLog(ulong GenerationCounter, ulong RecordCount, IReadOnlyList<DiscoveryEntry> Entries)
{
    public const int HeaderSize = LogPages.DiscoveryHeaderSize;
    public const int EntrySize = LogPages.DiscoveryEntrySize;

    /// <summary>Parses a header (GENCTR 0..7, NUMREC 8..15) and as many whole entries as <paramref name="log"/> holds.</summary>
    public static DiscoveryLog Parse(ReadOnlySpan<byte> log)
    {
        if (log.Length < HeaderSize) throw new ArgumentException("a discovery log has a 1024-byte header", nameof(log));
        ulong genctr = BinaryPrimitives.ReadUInt64LittleEndian(log);
        ulong numrec = BinaryPrimitives.ReadUInt64LittleEndian(log[8..]);
        int present = (int)Math.Min(numrec, (ulong)((log.Length - HeaderSize) / EntrySize));
        var entries = new DiscoveryEntry[present];
        for (int i = 0; i < present; i++) entries[i] = ParseEntry(log.Slice(HeaderSize + i * EntrySize, EntrySize));
        return new DiscoveryLog(genctr, numrec, entries);
    }

    /// <summary>ADRFAM 1, SUBTYPE 2, TREQ 3, PORTID 4, ASQSZ 8, EFLAGS 10, TRSVCID 32, SUBNQN 256, TRADDR 512, SECTYPE 768.</summary>
    public static DiscoveryEntry ParseEntry(ReadOnlySpan<byte> e) => new(
        (DiscoverySubtype)e[2],
        BinaryPrimitives.ReadUInt16LittleEndian(e[4..]),
        WireStrings.ReadAsciiPadded(e.Slice(32, 32)),
        WireStrings.ReadAsciiPadded(e.Slice(512, 256)),
        WireStrings.ReadNqn(e.Slice(256, 256)),
        (NvmfAddressFamily)e[1],
        e[3],
        BinaryPrimitives.ReadUInt16LittleEndian(e[8..]))
    {
        EFlags = BinaryPrimitives.ReadUInt16LittleEndian(e[10..]),
        SecType = e[768],
    };
}
