using System.Buffers.Binary;
using Duroslight.Protocol.Subsystems;

namespace Duroslight.Protocol.Nvme;

/// <summary>
/// The Asymmetric Namespace Access log page (LID 0Ch, NVMe Base 2.0): a 16-byte header (CHGCNT, NGRPS), then one
/// 32-byte descriptor per ANA group (ANAGRPID, NNSID, CHGCNT, ANA state) followed by its NSIDs, unless the host asked
/// for groups only (RGO). Every namespace is its own group (ANAGRPID = NSID), listed in NSID order.
/// </summary>
public static class AnaLogPage
{
    public const int HeaderSize = 16, DescriptorSize = 32;

    /// <summary>LSP bit 0 of Get Log Page (CDW10 bits 11:8): Return Groups Only.</summary>
    public static bool GroupsOnly(uint cdw10) => ((cdw10 >> 8) & 1) != 0;

    public static int Size(int groups, bool groupsOnly) => HeaderSize + groups * (DescriptorSize + (groupsOnly ? 0 : sizeof(uint)));

    /// <summary>Writes the page for <paramref name="table"/> into <paramref name="page"/> (at least <see cref="Size"/> bytes, cleared by the caller).</summary>
    public static void Write(Span<byte> page, ulong changeCount, ReadOnlySpan<NamespaceInfo> table, bool groupsOnly)
    {
        if (page.Length < Size(table.Length, groupsOnly)) throw new ArgumentException("ANA log page buffer too small.", nameof(page));
        BinaryPrimitives.WriteUInt64LittleEndian(page, changeCount);
        BinaryPrimitives.WriteUInt16LittleEndian(page[8..], (ushort)table.Length);
        int off = HeaderSize;
        foreach (var ns in table)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(page[off..], ns.AnaGroupId);
            BinaryPrimitives.WriteUInt32LittleEndian(page[(off + 4)..], groupsOnly ? 0u : 1u);
            BinaryPrimitives.WriteUInt64LittleEndian(page[(off + 8)..], changeCount);
            page[off + 16] = (byte)ns.EffectiveAnaState;
            off += DescriptorSize;
            if (groupsOnly) continue;
            BinaryPrimitives.WriteUInt32LittleEndian(page[off..], ns.Nsid);
            off += sizeof(uint);
        }
    }
}
