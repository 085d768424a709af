using System.Buffers.Binary;
using System.Text;
using Duroslight.Host;
using Duroslight.Protocol.Engine;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;
using Duroslight.Protocol.Wire;
using Xunit;
using Duroslight.Core;

namespace Duroslight.Protocol.Tests.Engine;

/// <summary>
/// What real hosts other than Linux send (issue 11), as exact PDUs: Lightbits' discovery-client (Connect with PDO 0,
/// admin SGLs shorter than the command's data, NUL-padded discovery entries, AENs re-armed from another connection)
/// and SPDK's tools (empty Host NQN, Property Get of reserved properties).
/// </summary>
public class InteropTests
{
    private const string OtherHost = "nqn.2014-08.org.nvmexpress:uuid:99999999-2222-3333-4444-555555555555";
    private const uint NoticeDiscovery = 1u << 31;

    // ---- 1. Connect capsule with PDO = 0 ----

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Connect_capsule_with_pdo_0_has_its_data_right_after_the_header(bool hdgst)
    {
        var fabric = new Fabric();
        var raw = new RawTarget(fabric);
        Assert.Equal(PduType.ICResp, Assert.Single(raw.Send(RawPdus.ICReq(hdgst))).Type);
        var capsule = ConnectCapsule(fabric.SubNqn, Fabric.HostNqn, hdgst);
        Assert.Equal(72 + (hdgst ? 4 : 0), capsule[PduLayout.OffPdo]); // what our own writer puts there
        SetPdo(capsule, 0, hdgst);

        var resp = Assert.Single(raw.Send(capsule));
        Assert.Equal(PduType.CapsuleResp, resp.Type);
        Assert.True(resp.Cqe.Status.IsSuccess, resp.Cqe.Status.ToString());
        Assert.Null(raw.Conn.SentTermination);
        Assert.False(raw.Conn.WantsClose);
        Assert.Equal(Fabric.HostNqn, Assert.Single(fabric.Target.ListControllers()).HostNqn);
    }

    [Theory]
    [InlineData(8, false)]   // inside the common header
    [InlineData(71, false)]  // the last byte of the SQE
    [InlineData(72, true)]   // where the header digest is
    public void Pdo_inside_the_header_is_still_terminated_and_the_termination_is_recorded(byte pdo, bool hdgst)
    {
        var fabric = new Fabric();
        var raw = new RawTarget(fabric);
        raw.Send(RawPdus.ICReq(hdgst));
        var capsule = ConnectCapsule(fabric.SubNqn, Fabric.HostNqn, hdgst);
        SetPdo(capsule, pdo, hdgst);

        AssertTerminatedAtPdo(raw, raw.Send(capsule));
    }

    [Fact]
    public void Pdo_past_plen_is_still_terminated()
    {
        var fabric = new Fabric();
        var raw = new RawTarget(fabric);
        raw.Send(RawPdus.ICReq());
        var capsule = RawPdus.Capsule(NvmeCommands.KeepAlive(), 1, new byte[16]); // PLEN 88
        Assert.Equal(88, BinaryPrimitives.ReadInt32LittleEndian(capsule.AsSpan(PduLayout.OffPlen)));
        SetPdo(capsule, 89, hdgst: false);

        AssertTerminatedAtPdo(raw, raw.Send(capsule));
    }

    [Fact]
    public void Termination_names_its_field_for_the_log()
    {
        var t = new Termination(TermReqFes.InvalidPduHeaderField, 3, PduType.CapsuleCmd);
        Assert.Equal("PDO", t.Field);
        Assert.Equal("C2HTermReq FES 01h (InvalidPduHeaderField) at PDO (FEI 3) of a CapsuleCmd PDU", t.ToString());
        Assert.Equal("DATAO", new Termination(TermReqFes.DataTransferOutOfRange, 12, PduType.H2CData).Field);
        Assert.Equal("byte 12", new Termination(TermReqFes.InvalidPduHeaderField, 12, null).Field);
    }

    // ---- 2. Admin and discovery SGLs shorter than the command's data ----

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Identify_with_an_sgl_length_of_0_gets_the_whole_4096_byte_page(bool discovery)
    {
        var fabric = new Fabric();
        string subNqn = discovery ? TargetOptions.DiscoveryNqn : fabric.SubNqn;
        var raw = ConnectedAdmin(fabric, subNqn);

        var pdus = raw.Send(RawPdus.Capsule(NvmeCommands.Identify(IdentifyCns.Controller), 7, sglLength: 0));
        Assert.Equal([PduType.C2HData, PduType.CapsuleResp], pdus.Select(p => p.Type));
        Assert.Equal(7, pdus[0].Cccid);
        Assert.Equal(4096u, pdus[0].DataLength);
        var page = pdus[0].Bytes.AsSpan(pdus[0].Pdo, 4096);
        Assert.Equal(subNqn, WireStrings.ReadNqn(page.Slice(768, 256)));
        Assert.True(pdus[1].Cqe.Status.IsSuccess);
    }

    [Fact]
    public void Get_log_page_of_1024_bytes_with_an_sgl_length_of_16_gets_1024_bytes_on_discovery_and_admin_queues()
    {
        var fabric = new Fabric();
        fabric.AddVolume(); // the subsystem is listed to hosts that see a namespace in it
        fabric.Target.AddListener(new ListenerInfo("10.1.2.3", "4420", 1, IsDiscovery: false));
        var disc = ConnectedAdmin(fabric, TargetOptions.DiscoveryNqn);
        var pdus = disc.Send(RawPdus.Capsule(NvmeCommands.GetLogPage(LogPageId.Discovery, 1024), 9, sglLength: 16));
        Assert.Equal([PduType.C2HData, PduType.CapsuleResp], pdus.Select(p => p.Type));
        Assert.Equal(1024u, pdus[0].DataLength);
        Assert.Equal(1UL, BinaryPrimitives.ReadUInt64LittleEndian(pdus[0].Bytes.AsSpan(pdus[0].Pdo + 8))); // NUMREC
        Assert.True(pdus[1].Cqe.Status.IsSuccess);

        var admin = ConnectedAdmin(fabric, fabric.SubNqn);
        pdus = admin.Send(RawPdus.Capsule(NvmeCommands.GetLogPage(LogPageId.SmartHealth, 512), 10, sglLength: 16));
        Assert.Equal([PduType.C2HData, PduType.CapsuleResp], pdus.Select(p => p.Type));
        Assert.Equal(512u, pdus[0].DataLength);
    }

    [Fact]
    public void Io_queues_keep_checking_the_sgl_length_strictly()
    {
        var fabric = new Fabric();
        fabric.AddVolume();
        var admin = fabric.Admin();
        var raw = new RawTarget(fabric);
        Assert.True(raw.Handshake(qid: 1, cntlid: admin.Cntlid).Status.IsSuccess);
        // 8 blocks of 512 bytes, but an SGL of 512: refused, and no data is sent.
        var pdu = Assert.Single(raw.Send(RawPdus.Capsule(NvmeCommands.Read(1, 0, 8), 11, sglLength: 512)));
        Assert.Equal(PduType.CapsuleResp, pdu.Type);
        Assert.Equal(NvmeStatus.DataSglLengthInvalid, pdu.Cqe.Status);
    }

    // ---- 3. Discovery log entries padded with NULs ----

    [Fact]
    public void Discovery_entries_pad_trsvcid_and_traddr_with_nuls()
    {
        var fabric = new Fabric();
        fabric.AddVolume();
        fabric.Target.AddListener(new ListenerInfo("192.168.7.10", "4420", 1, IsDiscovery: false));
        var disc = ConnectedAdmin(fabric, TargetOptions.DiscoveryNqn);
        var pdus = disc.Send(RawPdus.Capsule(NvmeCommands.GetLogPage(LogPageId.Discovery, 2048), 3));
        var entry = pdus[0].Bytes.AsSpan(pdus[0].Pdo + 1024, 1024);
        Assert.Equal("4420"u8.ToArray(), entry.Slice(32, 4).ToArray());
        Assert.True(entry.Slice(36, 28).IndexOfAnyExcept((byte)0) < 0, "TRSVCID must be NUL padded");
        Assert.Equal("192.168.7.10"u8.ToArray(), entry.Slice(512, 12).ToArray());
        Assert.True(entry.Slice(524, 244).IndexOfAnyExcept((byte)0) < 0, "TRADDR must be NUL padded");
        // What a client that strips only NULs reads.
        Assert.Equal("4420", Encoding.ASCII.GetString(entry.Slice(32, 32)).TrimEnd('\0'));
    }

    // ---- 4. Discovery-log-change AEN re-armed by any discovery controller of the host ----

    [Fact]
    public void Reading_the_log_on_a_short_connection_rearms_the_persistent_connections_aen()
    {
        var fabric = new Fabric();
        var persistent = PersistentDiscovery(fabric);

        var first = AwaitAen(fabric, persistent, () => fabric.Target.AddReferral(new Referral("10.0.0.1", "8009")));
        Assert.Equal(0x0070_F002UL, first);
        persistent.Submit(NvmeCommands.AsyncEventRequest());
        fabric.Target.AddReferral(new Referral("10.0.0.2", "8009")); // masked: the host has not read the log yet
        fabric.Pump();
        Assert.Empty(persistent.TakeCompletions());

        // The client reads the log on a separate short connection, RAE=0: it sees both referrals, so the change that
        // came while masked needs no notice of its own, but the persistent connection's notice is re-armed.
        var shortLived = fabric.Admin(TargetOptions.DiscoveryNqn);
        Assert.Equal(2, AdminTests.ReadDiscoveryLog(fabric, shortLived).Entries.Count);
        shortLived.Target.OnTransportClosed();
        fabric.Pump();
        Assert.Empty(persistent.TakeCompletions());

        fabric.Target.AddReferral(new Referral("10.0.0.3", "8009"));
        fabric.Pump();
        Assert.Equal(0x0070_F002UL, Assert.Single(persistent.TakeCompletions()).Completion.Result);
    }

    [Fact]
    public void Another_hosts_read_does_not_rearm_the_aen()
    {
        var fabric = new Fabric();
        var persistent = PersistentDiscovery(fabric);
        AwaitAen(fabric, persistent, () => fabric.Target.AddReferral(new Referral("10.0.0.1", "8009")));
        persistent.Submit(NvmeCommands.AsyncEventRequest());

        var other = fabric.Admin(TargetOptions.DiscoveryNqn, hostNqn: OtherHost);
        AdminTests.ReadDiscoveryLog(fabric, other);
        fabric.Target.AddReferral(new Referral("10.0.0.2", "8009"));
        fabric.Pump();
        Assert.Empty(persistent.TakeCompletions());
    }

    [Fact]
    public void A_change_held_back_while_masked_is_notified_when_the_host_read_an_older_log()
    {
        var fabric = new Fabric();
        var persistent = PersistentDiscovery(fabric);
        AwaitAen(fabric, persistent, () => fabric.Target.AddReferral(new Referral("10.0.0.1", "8009")));
        ulong seen = fabric.Target.DiscoveryGeneration;
        persistent.Submit(NvmeCommands.AsyncEventRequest());
        fabric.Target.AddReferral(new Referral("10.0.0.2", "8009"));
        fabric.Pump();
        Assert.Empty(persistent.TakeCompletions());

        // A read that built its log before that change (another connection, another thread) re-arms the notice:
        // the held-back change is sent now.
        fabric.Target.OnDiscoveryLogRead(Fabric.HostNqn, seen);
        fabric.Pump();
        Assert.Equal(0x0070_F002UL, Assert.Single(persistent.TakeCompletions()).Completion.Result);
    }

    // ---- 7. Empty Host NQN ----

    [Fact]
    public void Empty_host_nqn_connects_where_any_host_is_allowed_and_is_refused_where_a_list_is_set()
    {
        var fabric = new Fabric();
        var (_, anyHost) = fabric.Connect(hostNqn: "");
        Assert.True(anyHost.Status.IsSuccess, anyHost.Status.ToString());
        Assert.True(fabric.Connect(subNqn: TargetOptions.DiscoveryNqn, hostNqn: "").Cqe.Status.IsSuccess);

        fabric.Target.SetHostAccess(fabric.Target.Subsystems[0], HostAccess.Only([Fabric.HostNqn]));
        var (_, listed) = fabric.Connect(hostNqn: "");
        Assert.Equal(NvmeStatus.ConnectInvalidHost, listed.Status);
        Assert.Equal((1u << 16) | 512, (uint)listed.Result); // IPO: HOSTNQN in the Connect data
        // A malformed (non-empty) Host NQN stays invalid everywhere.
        Assert.Equal(NvmeStatus.ConnectInvalidParameters, fabric.Connect(subNqn: fabric.SubNqn + ".aux-1", hostNqn: "garbage").Cqe.Status);
    }

    [Fact]
    public void Empty_host_nqn_io_queue_joins_its_controller()
    {
        var fabric = new Fabric();
        fabric.AddVolume();
        var (admin, cqe) = fabric.Connect(hostNqn: "");
        Assert.True(cqe.Status.IsSuccess);
        fabric.ExecOk(admin, NvmeCommands.PropertySet(PropertyOffset.Cc, Fabric.CcEnable));
        var (io, ioCqe) = fabric.Connect(1, admin.Cntlid, hostNqn: "");
        Assert.True(ioCqe.Status.IsSuccess);
        fabric.ExecOk(io, NvmeCommands.Flush(1));
    }

    // ---- 8. Property Get as SPDK's tools send it ----

    [Theory]
    [InlineData(0x3Cu)]  // CMBSZ: spdk_nvme_identify
    [InlineData(0xE00u)] // PMRCAP: spdk_nvme_identify
    [InlineData(0x38u)]  // CMBLOC
    [InlineData(0x40u)]  // BPINFO
    [InlineData(0x20u)]  // NSSR (no subsystem reset)
    public void Reserved_properties_read_as_zero(uint offset)
    {
        var fabric = new Fabric();
        var (admin, _) = fabric.Connect();
        var cqe = fabric.Exec(admin, NvmeCommands.PropertyGet(offset, eightBytes: false));
        Assert.True(cqe.Status.IsSuccess, cqe.Status.ToString());
        Assert.Equal(0UL, cqe.Result);
    }

    [Theory]
    [InlineData(PropertyOffset.Cap, false)] // CAP is read in its native width
    [InlineData(PropertyOffset.Cap + 4, false)]
    [InlineData(PropertyOffset.Vs, true)]
    [InlineData(0x3Du, false)]              // misaligned
    [InlineData(0x1000u, false)]            // beyond the property space
    public void Defined_properties_in_the_wrong_width_and_bad_offsets_are_invalid(uint offset, bool eightBytes)
    {
        var fabric = new Fabric();
        var (admin, _) = fabric.Connect();
        Assert.Equal(NvmeStatus.InvalidField, fabric.Exec(admin, NvmeCommands.PropertyGet(offset, eightBytes)).Status);
    }

    [Fact]
    public void CC_and_CSTS_read_during_and_after_shutdown_as_spdk_detaches()
    {
        const uint shnNormal = 1u << 14;
        var fabric = new Fabric();
        var (admin, io) = fabric.Controller();
        // SPDK's detach: I/O queues go first, then CC is read, CC.SHN written, CSTS polled until SHST = complete.
        Assert.True(fabric.Exec(io, NvmeCommands.Disconnect()).Status.IsSuccess);
        Assert.Equal((ulong)Fabric.CcEnable, fabric.ExecOk(admin, NvmeCommands.PropertyGet(PropertyOffset.Cc, false)).Result);
        fabric.ExecOk(admin, NvmeCommands.PropertySet(PropertyOffset.Cc, Fabric.CcEnable | shnNormal));
        Assert.Equal((ulong)(Fabric.CcEnable | shnNormal), fabric.ExecOk(admin, NvmeCommands.PropertyGet(PropertyOffset.Cc, false)).Result);
        ulong csts = fabric.ExecOk(admin, NvmeCommands.PropertyGet(PropertyOffset.Csts, false)).Result;
        Assert.Equal(2UL, (csts >> 2) & 3); // SHST: shutdown complete
        Assert.Equal(1UL, csts & 1);        // RDY stays set until CC.EN is cleared
        // After shutdown every property still answers (spdk_nvme_perf reads CC again at detach).
        fabric.ExecOk(admin, NvmeCommands.PropertyGet(PropertyOffset.Cap, true));
        fabric.ExecOk(admin, NvmeCommands.PropertyGet(PropertyOffset.Vs, false));
        fabric.ExecOk(admin, NvmeCommands.PropertyGet(0x3C, false));
        fabric.ExecOk(admin, NvmeCommands.PropertySet(PropertyOffset.Cc, 0));
        Assert.Equal(0UL, fabric.ExecOk(admin, NvmeCommands.PropertyGet(PropertyOffset.Csts, false)).Result);
    }

    [Fact]
    public void A_command_reusing_the_cid_of_a_parked_aer_retires_the_aer_as_spdk_detaches()
    {
        var fabric = new Fabric();
        var raw = ConnectedAdmin(fabric, fabric.SubNqn);
        Assert.Empty(raw.Send(RawPdus.Capsule(NvmeCommands.AsyncEventRequest(), 3)));
        // SPDK's detach: AERs aborted on the host only, then Property Get CC with the AER's CID 3.
        var resp = Assert.Single(raw.Send(RawPdus.Capsule(NvmeCommands.PropertyGet(PropertyOffset.Cc, false), 3)));
        Assert.Equal(PduType.CapsuleResp, resp.Type);
        Assert.True(resp.Cqe.Status.IsSuccess, resp.Cqe.Status.ToString());
        Assert.Equal(3, resp.Cqe.CommandId);
        Assert.Equal((ulong)Fabric.CcEnable, resp.Cqe.Result);
        // The retired AER no longer counts: four more can be parked, the fifth is over the limit.
        for (ushort cid = 10; cid < 14; cid++) Assert.Empty(raw.Send(RawPdus.Capsule(NvmeCommands.AsyncEventRequest(), cid)));
        Assert.Equal(NvmeStatus.AsyncEventRequestLimitExceeded, Assert.Single(raw.Send(RawPdus.Capsule(NvmeCommands.AsyncEventRequest(), 14))).Cqe.Status);
        // (A CID of a running command that is not an AER is still a conflict: IoTests.)
    }

    private static QueuePair PersistentDiscovery(Fabric fabric)
    {
        var disc = fabric.Admin(TargetOptions.DiscoveryNqn);
        fabric.ExecOk(disc, NvmeCommands.SetFeatures(FeatureId.AsyncEventConfiguration, NoticeDiscovery));
        disc.Submit(NvmeCommands.AsyncEventRequest());
        fabric.Pump();
        Assert.Empty(disc.TakeCompletions());
        return disc;
    }

    private static ulong AwaitAen(Fabric fabric, QueuePair disc, Action change)
    {
        change();
        fabric.Pump();
        var done = Assert.Single(disc.TakeCompletions());
        ulong result = done.Completion.Result;
        disc.Host.Release(done);
        return result;
    }

    private static byte[] ConnectCapsule(string subNqn, string hostNqn, bool hdgst)
    {
        var data = ConnectData.Create(HostIds.Default, ConnectData.DynamicCntlid, subNqn, hostNqn);
        return RawPdus.Capsule(NvmeCommands.Connect(0, 31), 1, data, hdgst: hdgst);
    }

    /// <summary>Rewrites PDO (and the header digest, which covers it).</summary>
    private static void SetPdo(byte[] pdu, byte pdo, bool hdgst)
    {
        pdu[PduLayout.OffPdo] = pdo;
        if (hdgst) BinaryPrimitives.WriteUInt32LittleEndian(pdu.AsSpan(PduLayout.CapsuleCmdHeaderSize), Crc32C.Compute(pdu.AsSpan(0, PduLayout.CapsuleCmdHeaderSize)));
    }

    private static void AssertTerminatedAtPdo(RawTarget raw, List<RawPdu> pdus)
    {
        var term = Assert.Single(pdus);
        Assert.Equal(PduType.C2HTermReq, term.Type);
        Assert.Equal(TermReqFes.InvalidPduHeaderField, term.Fes);
        Assert.Equal((uint)PduLayout.OffPdo, term.Fei);
        Assert.True(raw.Conn.WantsClose);
        Assert.Equal(new Termination(TermReqFes.InvalidPduHeaderField, PduLayout.OffPdo, PduType.CapsuleCmd), raw.Conn.SentTermination);
    }

    /// <summary>A raw admin queue connected to <paramref name="subNqn"/> with CC.EN set.</summary>
    private static RawTarget ConnectedAdmin(Fabric fabric, string subNqn)
    {
        var raw = new RawTarget(fabric);
        raw.Send(RawPdus.ICReq());
        var data = ConnectData.Create(HostIds.Default, ConnectData.DynamicCntlid, subNqn, Fabric.HostNqn);
        Assert.True(Assert.Single(raw.Send(RawPdus.Capsule(NvmeCommands.Connect(0, 31), 1, data))).Cqe.Status.IsSuccess);
        Assert.True(Assert.Single(raw.Send(RawPdus.Capsule(NvmeCommands.PropertySet(PropertyOffset.Cc, Fabric.CcEnable), 2))).Cqe.Status.IsSuccess);
        return raw;
    }
}
