using Duroslight.Protocol.Nvme;
using Xunit;
using static Duroslight.Protocol.Tests.Nvme.WireLayout;

namespace Duroslight.Protocol.Tests.Nvme;

/// <summary>Log page wire offsets, from NVMe Base 2.0 "Get Log Page" and NVMe-oF 1.1 "Discovery Log Page".</summary>
public class LogPagesLayoutTests
{
    [Fact]
    public void Error_information_entry_is_64_bytes_and_empty_log_is_zero()
    {
        Assert.Equal(64, LogPages.ErrorInformationEntrySize);
        var buf = Dirty(LogPages.ErrorInformationEntrySize * LogPages.ErrorInformationEntries);
        LogPages.ErrorInformation(buf);
        Assert.True(AllZero(buf, 0, buf.Length)); // Error Count (bytes 0..7) 0 = empty entry
    }

    [Fact]
    public void Smart_health_field_offsets_and_128_bit_little_endian_counters()
    {
        var info = new SmartHealthInfo(
            CompositeTemperatureKelvin: 310,
            AvailableSparePercent: 100,
            DataUnitsRead: (UInt128)0x0102030405060708 << 64 | 0x1112131415161718,
            DataUnitsWritten: 2,
            HostReadCommands: 3,
            HostWriteCommands: 4,
            PowerOnHours: 5,
            UnsafeShutdowns: 6)
        {
            CriticalWarning = 0x04,
            PercentageUsed = 7,
            PowerCycles = 8,
            MediaErrors = 9,
            ErrorLogEntries = 10,
        };
        var b = Dirty(512);
        LogPages.SmartHealth(b, info);
        Assert.Equal(0x04, b[0]);
        Assert.Equal(310, U16(b, 1));
        Assert.Equal(100, b[3]);
        Assert.Equal(10, b[4]); // available spare threshold default
        Assert.Equal(7, b[5]);
        Assert.True(AllZero(b, 6, 32));
        Assert.Equal(0x18, b[32]); // least significant byte first
        Assert.Equal(0x01, b[47]); // most significant byte last
        Assert.Equal(info.DataUnitsRead, U128(b, 32));
        Assert.Equal((UInt128)2, U128(b, 48));
        Assert.Equal((UInt128)3, U128(b, 64));
        Assert.Equal((UInt128)4, U128(b, 80));
        Assert.Equal(UInt128.Zero, U128(b, 96)); // controller busy time
        Assert.Equal((UInt128)8, U128(b, 112));
        Assert.Equal((UInt128)5, U128(b, 128));
        Assert.Equal((UInt128)6, U128(b, 144));
        Assert.Equal((UInt128)9, U128(b, 160));
        Assert.Equal((UInt128)10, U128(b, 176));
        Assert.True(AllZero(b, 192, 512));
    }

    [Fact]
    public void Firmware_slot_afi_at_0_frs1_at_8()
    {
        var b = Dirty(512);
        LogPages.FirmwareSlot(b, "0.1.0");
        Assert.Equal(0x01, b[0]); // bits 2:0 active slot 1, bits 6:4 no pending slot
        Assert.True(AllZero(b, 1, 8));
        Assert.Equal("0.1.0   ", Text(b, 8, 8));
        Assert.True(AllZero(b, 16, 512)); // FRS2..7 and reserved
    }

    [Fact]
    public void Changed_namespace_list_up_to_1024_then_ffffffff()
    {
        var b = Dirty(4096);
        Assert.Equal(2, LogPages.ChangedNamespaceList(b, [3, 8]));
        Assert.Equal(3u, U32(b, 0));
        Assert.Equal(8u, U32(b, 4));
        Assert.True(AllZero(b, 8, 4096));

        uint[] full = Enumerable.Range(1, 1024).Select(i => (uint)i).ToArray();
        Assert.Equal(1024, LogPages.ChangedNamespaceList(b, full));
        Assert.Equal(1024u, U32(b, 4092));

        uint[] over = Enumerable.Range(1, 1025).Select(i => (uint)i).ToArray();
        Assert.Equal(1, LogPages.ChangedNamespaceList(b, over));
        Assert.Equal(0xFFFF_FFFFu, U32(b, 0));
        Assert.True(AllZero(b, 4, 4096));
    }

    [Fact]
    public void Commands_supported_and_effects_io_controller()
    {
        var b = Dirty(4096);
        LogPages.CommandsSupportedAndEffects(b, ControllerType.Io);
        // ACS[opcode] at opcode*4, IOCS[opcode] at 1024 + opcode*4; bit 0 CSUPP, bit 1 LBCC.
        byte[] admin = [0x02, 0x06, 0x08, 0x09, 0x0A, 0x0C, 0x18];
        for (int op = 0; op < 256; op++)
            Assert.Equal(admin.Contains((byte)op) ? 1u : 0u, U32(b, op * 4));
        Assert.Equal(0u, U32(b, 0x7F * 4)); // Fabrics is not listed
        var io = new Dictionary<int, uint> { [0x00] = 1, [0x01] = 3, [0x02] = 1, [0x08] = 3, [0x09] = 3, [0x0D] = 1, [0x0E] = 1, [0x11] = 1, [0x15] = 1 };
        for (int op = 0; op < 256; op++)
            Assert.Equal(io.GetValueOrDefault(op), U32(b, 1024 + op * 4));
        Assert.True(AllZero(b, 2048, 4096));
    }

    [Fact]
    public void Commands_supported_and_effects_discovery_controller()
    {
        var b = Dirty(4096);
        LogPages.CommandsSupportedAndEffects(b, ControllerType.Discovery);
        byte[] admin = [0x02, 0x06, 0x09, 0x0A, 0x0C, 0x18];
        for (int op = 0; op < 256; op++)
            Assert.Equal(admin.Contains((byte)op) ? 1u : 0u, U32(b, op * 4));
        Assert.True(AllZero(b, 1024, 4096)); // no I/O commands
    }

    [Fact]
    public void Commands_supported_and_effects_admin_controller_has_no_io()
    {
        var b = Dirty(4096);
        LogPages.CommandsSupportedAndEffects(b, ControllerType.Admin);
        Assert.Equal(1u, U32(b, 0x08 * 4)); // Abort
        Assert.True(AllZero(b, 1024, 4096));
    }

    private static readonly DiscoveryEntry Nvm = new(
        DiscoverySubtype.Nvm, PortId: 7, TrSvcId: "4420", TrAddr: "192.168.1.10",
        SubNqn: "nqn.2024-01.io.duroslight:subsys1", AdrFam: NvmfAddressFamily.Ipv4, Treq: 0x02, AdminMaxSqSize: 32);

    private static readonly DiscoveryEntry Self = new(
        DiscoverySubtype.CurrentDiscovery, PortId: 7, TrSvcId: "8009", TrAddr: "fe80::1",
        SubNqn: "nqn.2014-08.org.nvmexpress.discovery", AdrFam: NvmfAddressFamily.Ipv6, Treq: 0x02, AdminMaxSqSize: 32)
    { EFlags = 0x3 };

    [Fact]
    public void Discovery_log_size_is_1024_header_plus_1024_per_entry()
    {
        Assert.Equal(1024, LogPages.DiscoveryLogSize(0));
        Assert.Equal(3072, LogPages.DiscoveryLogSize(2));
    }

    [Fact]
    public void Discovery_header_genctr_0_numrec_8_recfmt_16()
    {
        var b = Dirty(LogPages.DiscoveryLogSize(2) + 100);
        Assert.Equal(3072, LogPages.DiscoveryLog(b, genctr: 0x1122334455667788, [Nvm, Self]));
        Assert.Equal(0x1122334455667788ul, U64(b, 0));
        Assert.Equal(2ul, U64(b, 8));
        Assert.Equal(0, U16(b, 16));
        Assert.True(AllZero(b, 18, 1024));
        Assert.All(b[3072..], x => Assert.Equal(0xA5, x)); // nothing written past the log
    }

    [Fact]
    public void Discovery_entry_field_offsets()
    {
        var b = Dirty(LogPages.DiscoveryLogSize(2));
        LogPages.DiscoveryLog(b, 1, [Nvm, Self]);
        const int e = 1024;
        Assert.Equal(3, b[e + 0]);           // TRTYPE TCP
        Assert.Equal(1, b[e + 1]);           // ADRFAM IPv4
        Assert.Equal(2, b[e + 2]);           // SUBTYPE NVM subsystem
        Assert.Equal(0x02, b[e + 3]);        // TREQ
        Assert.Equal(7, U16(b, e + 4));      // PORTID
        Assert.Equal(0xFFFF, U16(b, e + 6)); // CNTLID dynamic
        Assert.Equal(32, U16(b, e + 8));     // ASQSZ
        Assert.Equal(0, U16(b, e + 10));     // EFLAGS
        Assert.True(AllZero(b, e + 12, e + 32));
        Assert.Equal("4420".PadRight(32, '\0'), Text(b, e + 32, 32)); // TRSVCID NUL padded (as the kernel target)
        Assert.True(AllZero(b, e + 64, e + 256));
        Assert.Equal("nqn.2024-01.io.duroslight:subsys1", WireStrings.ReadNqn(b.AsSpan(e + 256, 256)));
        Assert.True(AllZero(b, e + 256 + 33, e + 512));               // SUBNQN NUL padded
        Assert.Equal("192.168.1.10".PadRight(256, '\0'), Text(b, e + 512, 256)); // TRADDR NUL padded
        Assert.Equal(0, b[e + 768]);                                  // TSAS SECTYPE none
        Assert.True(AllZero(b, e + 769, e + 1024));

        const int s = 2048;
        Assert.Equal(2, b[s + 1]);   // IPv6
        Assert.Equal(3, b[s + 2]);   // current discovery subsystem
        Assert.Equal(3, U16(b, s + 10));
        Assert.Equal("8009".PadRight(32, '\0'), Text(b, s + 32, 32));
        Assert.Equal("fe80::1".PadRight(256, '\0'), Text(b, s + 512, 256));
    }

    [Fact]
    public void Discovery_entry_rejects_overlong_transport_fields()
    {
        var b = new byte[LogPages.DiscoveryLogSize(1)];
        Assert.Throws<ArgumentException>(() => LogPages.DiscoveryLog(b, 0, [Nvm with { TrSvcId = new string('1', 33) }]));
        Assert.Throws<ArgumentException>(() => LogPages.DiscoveryLog(b, 0, [Nvm with { SubNqn = "nqn." + new string('a', 220) }]));
        Assert.Throws<ArgumentException>(() => LogPages.DiscoveryLog(new byte[2047], 0, [Nvm]));
    }

    [Fact]
    public void Copy_window_offsets_past_the_end_fail_and_at_the_end_yield_zeroes()
    {
        byte[] full = [1, 2, 3, 4, 5, 6, 7, 8];
        var dst = Dirty(4);
        Assert.True(LogPages.CopyWindow(full, 6, dst));
        Assert.Equal([7, 8, 0, 0], dst);
        dst = Dirty(4);
        Assert.True(LogPages.CopyWindow(full, 8, dst));
        Assert.Equal([0, 0, 0, 0], dst);
        dst = Dirty(4);
        Assert.False(LogPages.CopyWindow(full, 9, dst));
        Assert.All(dst, x => Assert.Equal(0xA5, x));
        Assert.False(LogPages.CopyWindow(full, ulong.MaxValue, dst));
    }
}
