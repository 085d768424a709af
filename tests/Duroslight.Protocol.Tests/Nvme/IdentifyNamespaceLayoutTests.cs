using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;
using Xunit;
using static Duroslight.Protocol.Tests.Nvme.WireLayout;

namespace Duroslight.Protocol.Tests.Nvme;

/// <summary>
/// Identify Namespace (CNS 00h), Active Namespace ID list (CNS 02h), Namespace Identification Descriptor list
/// (CNS 03h) and the CSI 0 pages (CNS 05h/06h); offsets from NVMe Base 2.0 and the NVM Command Set 1.0.
/// </summary>
public class IdentifyNamespaceLayoutTests
{
    private static byte[] Encode(NamespaceInfo ns)
    {
        var page = Dirty(IdentifyPages.PageSize);
        IdentifyPages.Namespace(page, ns);
        return page;
    }

    [Fact]
    public void Nsze_0_ncap_8_nuse_16_without_allocation_info()
    {
        var p = Encode(Namespace(blocks: 2_000_000));
        Assert.Equal(2_000_000ul, U64(p, 0));
        Assert.Equal(2_000_000ul, U64(p, 8));
        Assert.Equal(2_000_000ul, U64(p, 16));
    }

    [Fact]
    public void Nuse_comes_from_allocated_blocks_clamped_to_ncap()
    {
        Assert.Equal(1234ul, U64(Encode(Namespace(allocated: () => 1234)), 16));
        Assert.Equal(2_000_000ul, U64(Encode(Namespace(allocated: () => 9_000_000)), 16));
        Assert.Equal(0ul, U64(Encode(Namespace(allocated: () => -5)), 16));
    }

    [Fact]
    public void Nsfeat_at_24_thin_only_with_allocation_info_uidreuse_and_optperf()
    {
        Assert.Equal((1 << 0) | (1 << 3) | (1 << 4), Encode(Namespace(allocated: () => 1))[24]);
        Assert.Equal((1 << 3) | (1 << 4), Encode(Namespace())[24]);
        Assert.Equal(0, Encode(Namespace())[24] & 0x02); // NSABP: NAWUN/NAWUPF/NACWU not claimed
        var zeroId = new NamespaceInfo(1, Guid.Empty, 10, 512);
        Assert.Equal(1 << 4, Encode(zeroId)[24]); // UIDREUSE must be clear when NGUID and EUI64 are zero
    }

    [Fact]
    public void Nlbaf_25_flbas_26_zero_nmic_30_shared_dlfeat_33()
    {
        var p = Encode(Namespace());
        Assert.Equal(0, p[25]);
        Assert.Equal(0, p[26]);
        Assert.Equal(0, p[27]); // MC
        Assert.Equal(0, p[28]); // DPC
        Assert.Equal(0, p[29]); // DPS
        Assert.Equal(1, p[30]);
        Assert.Equal(0x09, p[33]); // bits 2:0 = 001b read zeroes, bit 3 Write Zeroes deallocates
    }

    [Fact]
    public void Atomic_fields_34_to_47_are_zero()
    {
        var p = Encode(Namespace());
        Assert.True(AllZero(p, 34, 48)); // NAWUN NAWUPF NACWU NABSN NABO NABSPF NOIOB
        Assert.True(AllZero(p, 48, 64)); // NVMCAP not reported
    }

    [Theory]
    [InlineData(512, 7, 255)]
    [InlineData(4096, 0, 31)]
    [InlineData(65536, 0, 1)]
    public void Npwg_64_npwa_66_npdg_68_npda_70_nows_72_zero_based_blocks(int blockSize, ushort granularity, ushort nows)
    {
        var p = Encode(Namespace(blockSize: blockSize));
        Assert.Equal(granularity, U16(p, 64));
        Assert.Equal(granularity, U16(p, 66));
        Assert.Equal(granularity, U16(p, 68));
        Assert.Equal(granularity, U16(p, 70));
        Assert.Equal(nows, U16(p, 72));
    }

    [Fact]
    public void Nguid_at_104_equals_the_uuid_in_big_endian_order_eui64_at_120_zero()
    {
        var p = Encode(Namespace());
        Assert.Equal(VolumeIdBigEndian, p[104..120]);
        Assert.Equal(0ul, U64(p, 120));
        Assert.Equal(Namespace().Nsid, U32(p, 92)); // ANAGRPID: one ANA group per namespace
        Assert.Equal(0, p[99]);       // NSATTR
    }

    [Theory]
    [InlineData(512, 9)]
    [InlineData(4096, 12)]
    public void Lbaf0_at_128_has_lbads_log2_block_size_no_metadata(int blockSize, byte lbads)
    {
        var p = Encode(Namespace(blockSize: blockSize));
        Assert.Equal(0, U16(p, 128)); // MS
        Assert.Equal(lbads, p[130]);  // LBADS
        Assert.Equal(0, p[131]);      // RP best
        Assert.True(AllZero(p, 132, 4096));
    }

    [Fact]
    public void Bad_block_size_is_rejected()
    {
        Assert.Throws<ArgumentException>(() => Encode(new NamespaceInfo(1, VolumeId, 10, 256)));
        Assert.Throws<ArgumentException>(() => Encode(new NamespaceInfo(1, VolumeId, 10, 1000)));
    }

    [Fact]
    public void Active_namespace_list_entries_are_4_byte_le_and_zero_terminated()
    {
        var page = Dirty(4096);
        int n = IdentifyPages.ActiveNamespaceList(page, [1, 2, 5, 9], startAfter: 1);
        Assert.Equal(3, n);
        Assert.Equal(2u, U32(page, 0));
        Assert.Equal(5u, U32(page, 4));
        Assert.Equal(9u, U32(page, 8));
        Assert.True(AllZero(page, 12, 4096));
    }

    [Fact]
    public void Active_namespace_list_caps_at_1024_entries()
    {
        uint[] ids = Enumerable.Range(1, 1500).Select(i => (uint)i).ToArray();
        var page = Dirty(4096);
        Assert.Equal(1024, IdentifyPages.ActiveNamespaceList(page, ids, 0));
        Assert.Equal(1u, U32(page, 0));
        Assert.Equal(1024u, U32(page, 4092));
        Assert.Equal(1024, IdentifyPages.MaxNamespaceListEntries);
    }

    [Fact]
    public void Active_namespace_list_rejects_unsorted_input() =>
        Assert.Throws<ArgumentException>(() => IdentifyPages.ActiveNamespaceList(new byte[4096], [3, 2], 0));

    [Fact]
    public void Descriptor_list_nguid_then_uuid_then_csi_then_zeroes()
    {
        var page = Dirty(4096);
        int used = IdentifyPages.NamespaceDescriptors(page, Namespace());
        Assert.Equal(20 + 20 + 5, used);
        // NGUID: NIDT 2, NIDL 16, 2 reserved, 16 bytes
        Assert.Equal([2, 16, 0, 0], page[0..4]);
        Assert.Equal(VolumeIdBigEndian, page[4..20]);
        // UUID: NIDT 3, NIDL 16
        Assert.Equal([3, 16, 0, 0], page[20..24]);
        Assert.Equal(VolumeIdBigEndian, page[24..40]);
        // CSI: NIDT 4, NIDL 1, value 0 = NVM Command Set
        Assert.Equal([4, 1, 0, 0, 0], page[40..45]);
        Assert.True(AllZero(page, 45, 4096));
    }

    [Fact]
    public void Descriptor_nguid_matches_identify_namespace_nguid()
    {
        var ns = Namespace();
        var desc = new byte[4096];
        IdentifyPages.NamespaceDescriptors(desc, ns);
        Assert.Equal(Encode(ns)[104..120], desc[4..20]);
    }

    [Fact]
    public void Descriptor_list_for_zero_uuid_has_only_csi()
    {
        var page = Dirty(4096);
        Assert.Equal(5, IdentifyPages.NamespaceDescriptors(page, new NamespaceInfo(1, Guid.Empty, 10, 512)));
        Assert.Equal([4, 1, 0, 0, 0], page[0..5]);
        Assert.True(AllZero(page, 5, 4096));
    }

    [Fact]
    public void Nvm_command_set_controller_and_namespace_pages_are_zero()
    {
        var page = Dirty(4096);
        IdentifyPages.NvmCommandSetController(page);
        Assert.True(AllZero(page, 0, 4096)); // VSL 0, WZSL 1, WUSL 2, DMRL 3, DMRSL 4..7, DMSL 8..15: no limits
        page = Dirty(4096);
        IdentifyPages.NvmCommandSetNamespace(page);
        Assert.True(AllZero(page, 0, 4096));
    }
}
