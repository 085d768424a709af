using Duroslight.Protocol.Nvme;
using Xunit;
using static Duroslight.Protocol.Tests.Nvme.WireLayout;

namespace Duroslight.Protocol.Tests.Nvme;

/// <summary>Identify Controller (CNS 01h) wire offsets, from NVMe Base 2.0 "Identify Controller Data Structure".</summary>
public class IdentifyControllerLayoutTests
{
    private static byte[] Encode(ControllerIdentity id)
    {
        var page = Dirty(IdentifyPages.PageSize);
        IdentifyPages.Controller(page, id);
        return page;
    }

    [Fact]
    public void PageSize_is_4096() => Assert.Equal(4096, IdentifyPages.PageSize);

    [Fact]
    public void Vid_and_Ssvid_at_bytes_0_to_3_are_zero()
    {
        var p = Encode(IoController());
        Assert.Equal(0, U16(p, 0));
        Assert.Equal(0, U16(p, 2));
    }

    [Fact]
    public void Sn_at_4_is_20_ascii_bytes_space_padded()
    {
        var p = Encode(IoController());
        Assert.Equal("DL-0001".PadRight(20), Text(p, 4, 20));
    }

    [Fact]
    public void Mn_at_24_is_40_ascii_bytes_space_padded()
    {
        var p = Encode(IoController());
        Assert.Equal("Duroslight NVMe/TCP".PadRight(40), Text(p, 24, 40));
    }

    [Fact]
    public void Fr_at_64_is_8_ascii_bytes_space_padded()
    {
        var p = Encode(IoController());
        Assert.Equal("0.1.0   ", Text(p, 64, 8));
    }

    [Fact]
    public void Rab_at_72_ieee_oui_at_73_little_endian()
    {
        var p = Encode(IoController());
        Assert.Equal(6, p[72]);
        Assert.Equal([0xE4, 0xD2, 0x5C], p[73..76]);
    }

    [Fact]
    public void Cmic_at_76_bit1_follows_MultiController()
    {
        Assert.Equal(0x02, Encode(IoController())[76]);
        Assert.Equal(0x00, Encode(IoController() with { MultiController = false })[76]);
    }

    [Fact]
    public void Mdts_at_77_cntlid_at_78_ver_at_80()
    {
        var p = Encode(IoController());
        Assert.Equal(5, p[77]);
        Assert.Equal(0x1234, U16(p, 78));
        Assert.Equal(0x0002_0000u, U32(p, 80));
    }

    [Fact]
    public void Rtd3r_rtd3e_at_84_and_88_not_reported()
    {
        var p = Encode(IoController());
        Assert.Equal(0u, U32(p, 84));
        Assert.Equal(0u, U32(p, 88));
    }

    [Fact]
    public void Oaes_at_92_ctratt_at_96_has_128_bit_host_id()
    {
        var p = Encode(IoController());
        Assert.Equal(1u << 8, U32(p, 92));
        Assert.Equal(1u, U32(p, 96));
    }

    [Theory]
    [InlineData(ControllerType.Io, 1)]
    [InlineData(ControllerType.Discovery, 2)]
    [InlineData(ControllerType.Admin, 3)]
    public void Cntrltype_at_111(ControllerType type, byte expected) =>
        Assert.Equal(expected, Encode(IoController(type))[111]);

    [Fact]
    public void Oacs_256_zero_acl_258_aerl_259_frmw_260_lpa_261_elpe_262_npss_263()
    {
        var p = Encode(IoController());
        Assert.Equal(0, U16(p, 256));
        Assert.Equal(3, p[258]);
        Assert.Equal(3, p[259]);
        Assert.Equal(0x03, p[260]); // slot 1 read-only (bit 0), one slot (bits 3:1 = 1)
        Assert.Equal(0x06, p[261]); // bit 1 effects log, bit 2 extended data
        Assert.Equal(63, p[262]);   // 0's based: 64 error log entries
        Assert.Equal(0, p[263]);
    }

    [Fact]
    public void Wctemp_266_cctemp_268_kas_320()
    {
        var p = Encode(IoController());
        Assert.Equal(343, U16(p, 266));
        Assert.Equal(373, U16(p, 268));
        Assert.Equal(100, U16(p, 320));
    }

    [Fact]
    public void Sqes_512_cqes_513_maxcmd_514_nn_516()
    {
        var p = Encode(IoController());
        Assert.Equal(0x66, p[512]);
        Assert.Equal(0x44, p[513]);
        Assert.Equal(128, U16(p, 514));
        Assert.Equal(1024u, U32(p, 516));
    }

    [Fact]
    public void Oncs_at_520_dsm_write_zeroes_and_reservations()
    {
        var p = Encode(IoController());
        Assert.Equal((1 << 2) | (1 << 3) | (1 << 5), U16(p, 520));
        Assert.Equal(0, U16(p, 522)); // FUSES
    }

    [Fact]
    public void Vwc_at_525_present_bit0_and_flush_broadcast_supported_bits_2_1()
    {
        Assert.Equal(0x07, Encode(IoController())[525]);
        Assert.Equal(0x06, Encode(IoController() with { VolatileWriteCache = false })[525]);
    }

    [Fact]
    public void Awun_awupf_acwu_are_zero_single_block_atomicity()
    {
        var p = Encode(IoController());
        Assert.Equal(0, U16(p, 526));
        Assert.Equal(0, U16(p, 528));
        Assert.Equal(0, U16(p, 532));
    }

    [Fact]
    public void Sgls_at_536_bits_0_20_21_mnan_at_540_zero()
    {
        var p = Encode(IoController());
        Assert.Equal((1u << 0) | (1u << 20) | (1u << 21), U32(p, 536));
        Assert.Equal(0, p[536] & 0x04); // bit 2 Keyed SGL Data Block is RDMA-only
        Assert.Equal(0u, U32(p, 540));
    }

    [Fact]
    public void Subnqn_at_768_is_256_bytes_nul_padded()
    {
        var p = Encode(IoController());
        const string nqn = "nqn.2024-01.io.duroslight:subsys1";
        Assert.Equal(nqn, Text(p, 768, nqn.Length));
        Assert.True(AllZero(p, 768 + nqn.Length, 1024));
        Assert.True(AllZero(p, 1024, 1792)); // reserved
    }

    [Fact]
    public void Fabrics_fields_at_1792_ioccsz_iorcsz_icdoff_fcatt_msdbd_ofcs()
    {
        var p = Encode(IoController());
        Assert.Equal((64u + 8192) / 16, U32(p, 1792));
        Assert.Equal(1u, U32(p, 1796));
        Assert.Equal(0, U16(p, 1800));  // ICDOFF
        Assert.Equal(0, p[1802]);       // FCATT bit 0 clear: dynamic controller model
        Assert.Equal(1, p[1803]);       // MSDBD
        Assert.Equal(1, U16(p, 1804));  // OFCS bit 0: Disconnect supported
        Assert.True(AllZero(p, 1806, 2048));
    }

    [Fact]
    public void Power_state_0_at_2048_reports_max_power_only()
    {
        var p = Encode(IoController());
        Assert.Equal(0x09C4, U16(p, 2048)); // MP, centiwatts
        Assert.Equal(0, p[2051]);            // MXPS 0 (0.01 W units), NOPS 0 (operational)
        Assert.Equal(0u, U32(p, 2052));      // ENLAT not reported
        Assert.Equal(0u, U32(p, 2056));      // EXLAT not reported
        Assert.True(AllZero(p, 2048 + 32, 4096)); // PSD1..31 and vendor specific
    }

    [Fact]
    public void Reserved_ranges_are_cleared_in_a_dirty_buffer()
    {
        var p = Encode(IoController());
        Assert.True(AllZero(p, 100, 111));
        Assert.True(AllZero(p, 112, 256));
        Assert.True(AllZero(p, 270, 320));
        Assert.True(AllZero(p, 322, 512));
        Assert.True(AllZero(p, 544, 768));
    }

    [Fact]
    public void Larger_buffer_only_first_4096_bytes_written()
    {
        var buf = Dirty(5000);
        IdentifyPages.Controller(buf, IoController());
        Assert.All(buf[4096..], b => Assert.Equal(0xA5, b));
    }

    [Fact]
    public void Short_buffer_is_rejected() =>
        Assert.Throws<ArgumentException>(() => IdentifyPages.Controller(new byte[4095], IoController()));

    [Fact]
    public void Discovery_controller_has_no_namespaces_no_io_commands_and_keeps_oaes_bit31()
    {
        var id = IoController(ControllerType.Discovery) with
        {
            SubsystemNqn = "nqn.2014-08.org.nvmexpress.discovery",
            Oaes = 1u << 31,
        };
        var p = Encode(id);
        Assert.Equal(2, p[111]);
        Assert.Equal(0u, U32(p, 516));     // NN
        Assert.Equal(0, U16(p, 520));      // ONCS
        Assert.Equal(0, p[525]);           // VWC
        Assert.Equal(0, U16(p, 1804));     // OFCS
        Assert.Equal(1u << 31, U32(p, 92)); // OAES: discovery log change notices
        Assert.Equal(0x06, p[261]);        // LPA
        Assert.Equal(0x1234, U16(p, 78));
        Assert.Equal("nqn.2014-08.org.nvmexpress.discovery", WireStrings.ReadNqn(p.AsSpan(768, 256)));
    }

    [Fact]
    public void Overlong_or_non_ascii_serial_is_rejected()
    {
        Assert.Throws<ArgumentException>(() => Encode(IoController() with { SerialNumber = new string('x', 21) }));
        Assert.Throws<ArgumentException>(() => Encode(IoController() with { ModelNumber = "café" }));
        Assert.Throws<ArgumentException>(() => Encode(IoController() with { IeeeOui = 0x1_000000 }));
    }
}
