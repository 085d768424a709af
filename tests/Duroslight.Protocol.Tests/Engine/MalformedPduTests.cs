using System.Buffers.Binary;
using Duroslight.Host;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;
using Duroslight.Protocol.Wire;
using Xunit;

namespace Duroslight.Protocol.Tests.Engine;

/// <summary>Protocol violations end in exactly one C2HTermReq with the right FES/FEI, echoing the header, then close.</summary>
public class MalformedPduTests
{
    [Fact]
    public void Bad_header_digest_is_FES_3()
    {
        var fabric = new Fabric();
        var raw = new RawTarget(fabric);
        raw.Send(RawPdus.ICReq(hdgst: true));
        var capsule = RawPdus.Capsule(NvmeCommands.KeepAlive(), 1, hdgst: true);
        capsule[^1] ^= 0x01;
        var term = AssertTerminated(raw, raw.Send(capsule), TermReqFes.HeaderDigestError, 0);
        Assert.Equal(capsule, term.Bytes.AsSpan(24).ToArray()); // header and its digest echoed
    }

    [Fact]
    public void Unknown_pdu_type_is_FES_1_at_byte_0()
    {
        var raw = new RawTarget(new Fabric());
        var header = Header(0x0A, 0, 24, 0, 24);
        var term = AssertTerminated(raw, raw.Send(header), TermReqFes.InvalidPduHeaderField, 0);
        Assert.Equal(header, term.Bytes.AsSpan(24).ToArray());
    }

    [Theory]
    [InlineData(PduType.CapsuleResp)]
    [InlineData(PduType.C2HData)]
    [InlineData(PduType.R2T)]
    [InlineData(PduType.ICResp)]
    public void Controller_to_host_pdu_types_are_FES_1_at_byte_0(PduType type)
    {
        var raw = new RawTarget(new Fabric());
        int hlen = PduLayout.HeaderLength(type);
        AssertTerminated(raw, raw.Send(Header((byte)type, 0, hlen, 0, hlen)), TermReqFes.InvalidPduHeaderField, 0);
    }

    [Fact]
    public void Hlen_mismatch_is_FES_1_at_byte_2()
    {
        var raw = new RawTarget(new Fabric());
        raw.Send(RawPdus.ICReq());
        AssertTerminated(raw, raw.Send(Header((byte)PduType.CapsuleCmd, 0, 70, 0, 72)), TermReqFes.InvalidPduHeaderField, 2);
    }

    [Fact]
    public void Plen_below_hlen_is_FES_1_at_byte_4()
    {
        var raw = new RawTarget(new Fabric());
        raw.Send(RawPdus.ICReq());
        AssertTerminated(raw, raw.Send(Header((byte)PduType.CapsuleCmd, 0, 72, 0, 50)), TermReqFes.InvalidPduHeaderField, 4);
    }

    [Fact]
    public void ICReq_longer_than_128_bytes_is_FES_1_at_byte_4()
    {
        var raw = new RawTarget(new Fabric());
        AssertTerminated(raw, raw.Send(Header((byte)PduType.ICReq, 0, 128, 0, 256)), TermReqFes.InvalidPduHeaderField, 4);
    }

    [Fact]
    public void Plen_beyond_the_in_capsule_limit_is_FES_5_at_byte_4()
    {
        var raw = new RawTarget(new Fabric());
        raw.Send(RawPdus.ICReq());
        AssertTerminated(raw, raw.Send(Header((byte)PduType.CapsuleCmd, 0, 72, 72, 72 + 1024 * 1024)), TermReqFes.DataTransferLimitExceeded, 4);
    }

    [Fact]
    public void H2CData_beyond_MAXH2CDATA_is_FES_5()
    {
        var fabric = new Fabric(new TargetOptions { MaxH2CData = 4096 });
        var raw = IoQueue(fabric);
        AssertTerminated(raw, raw.Send(Header((byte)PduType.H2CData, 0, 24, 24, 24 + 8192)), TermReqFes.DataTransferLimitExceeded, 4);
    }

    [Fact]
    public void H2CData_with_unknown_ttag_is_FES_1_at_byte_10()
    {
        var fabric = new Fabric();
        var raw = IoQueue(fabric);
        AssertTerminated(raw, raw.Send(RawPdus.H2CData(1, 999, 0, new byte[512])), TermReqFes.InvalidPduHeaderField, 10);
    }

    [Fact]
    public void H2CData_with_wrong_cccid_or_offset_is_fatal()
    {
        var fabric = new Fabric();
        var raw = IoQueue(fabric);
        var r2t = Assert.Single(raw.Send(RawPdus.Capsule(NvmeCommands.Write(1, 0, 32), 5, sglLength: 32 * 512)));
        Assert.Equal(PduType.R2T, r2t.Type);
        Assert.Equal(5, r2t.Cccid);
        Assert.Equal(32u * 512, r2t.DataLength);
        AssertTerminated(raw, raw.Send(RawPdus.H2CData(6, r2t.Ttag, 0, new byte[512])), TermReqFes.InvalidPduHeaderField, 8);

        var raw2 = IoQueue(fabric, qid: 2);
        var r2t2 = Assert.Single(raw2.Send(RawPdus.Capsule(NvmeCommands.Write(1, 0, 32), 5, sglLength: 32 * 512)));
        AssertTerminated(raw2, raw2.Send(RawPdus.H2CData(5, r2t2.Ttag, 512, new byte[512])), TermReqFes.DataTransferOutOfRange, 12);
    }

    [Fact]
    public void H2CData_datal_not_matching_the_pdu_is_FES_1_at_byte_16()
    {
        var fabric = new Fabric();
        var raw = IoQueue(fabric);
        var r2t = Assert.Single(raw.Send(RawPdus.Capsule(NvmeCommands.Write(1, 0, 32), 5, sglLength: 32 * 512)));
        var h2c = RawPdus.H2CData(5, r2t.Ttag, 0, new byte[512]);
        BinaryPrimitives.WriteUInt32LittleEndian(h2c.AsSpan(16), 1024);
        AssertTerminated(raw, raw.Send(h2c), TermReqFes.InvalidPduHeaderField, 16);
    }

    [Fact]
    public void CapsuleCmd_before_ICReq_is_a_sequence_error()
    {
        var raw = new RawTarget(new Fabric());
        AssertTerminated(raw, raw.Send(RawPdus.Capsule(NvmeCommands.KeepAlive(), 1)), TermReqFes.PduSequenceError, 0);
    }

    [Fact]
    public void H2CData_before_Connect_is_a_sequence_error()
    {
        var raw = new RawTarget(new Fabric());
        raw.Send(RawPdus.ICReq());
        AssertTerminated(raw, raw.Send(RawPdus.H2CData(1, 0, 0, new byte[16])), TermReqFes.PduSequenceError, 0);
    }

    [Fact]
    public void Second_ICReq_is_a_sequence_error()
    {
        var raw = new RawTarget(new Fabric());
        Assert.Equal(PduType.ICResp, Assert.Single(raw.Send(RawPdus.ICReq())).Type);
        AssertTerminated(raw, raw.Send(RawPdus.ICReq()), TermReqFes.PduSequenceError, 0);
    }

    [Fact]
    public void ICReq_with_pfv_1_or_bad_hpda_or_digest_bits_is_refused()
    {
        var pfv = RawPdus.ICReq();
        pfv[8] = 1;
        var raw = new RawTarget(new Fabric());
        AssertTerminated(raw, raw.Send(pfv), TermReqFes.UnsupportedParameter, 8);

        var hpda = RawPdus.ICReq(hpda: 32);
        raw = new RawTarget(new Fabric());
        AssertTerminated(raw, raw.Send(hpda), TermReqFes.InvalidPduHeaderField, 10);

        var dgst = RawPdus.ICReq();
        dgst[11] = 4;
        raw = new RawTarget(new Fabric());
        AssertTerminated(raw, raw.Send(dgst), TermReqFes.InvalidPduHeaderField, 11);
    }

    [Fact]
    public void Missing_negotiated_digest_flags_are_FES_1_at_byte_1()
    {
        var raw = new RawTarget(new Fabric());
        raw.Send(RawPdus.ICReq(hdgst: true));
        AssertTerminated(raw, raw.Send(RawPdus.Capsule(NvmeCommands.KeepAlive(), 1, hdgst: false)), TermReqFes.InvalidPduHeaderField, 1);

        raw = new RawTarget(new Fabric());
        raw.Send(RawPdus.ICReq(ddgst: true));
        var noDataDigest = RawPdus.Capsule(NvmeCommands.Write(1, 0, 1), 1, new byte[512], ddgst: false);
        AssertTerminated(raw, raw.Send(noDataDigest), TermReqFes.InvalidPduHeaderField, 1);
    }

    [Fact]
    public void Host_TermReq_closes_without_an_answer()
    {
        var fabric = new Fabric();
        var raw = new RawTarget(fabric);
        Assert.True(raw.Handshake().Status.IsSuccess);
        var term = new byte[PduLayout.TermReqHeaderSize];
        PduWriter.TermReq(term, PduType.H2CTermReq, TermReqFes.InvalidPduHeaderField, 0, default);
        Assert.Empty(raw.Send(term));
        Assert.True(raw.Conn.WantsClose);
        Assert.Empty(fabric.Target.ListControllers()); // the admin queue took its controller with it
    }

    [Fact]
    public void Input_after_the_TermReq_is_ignored()
    {
        var raw = new RawTarget(new Fabric());
        AssertTerminated(raw, raw.Send(Header(0x0A, 0, 24, 0, 24)), TermReqFes.InvalidPduHeaderField, 0);
        Assert.Empty(raw.Send(RawPdus.ICReq(), Header(0x0B, 0, 24, 0, 24)));
        raw.Conn.Poll(1_000_000);
        Assert.Empty(raw.Drain());
    }

    [Fact]
    public void Header_split_byte_by_byte_still_terminates_once()
    {
        var raw = new RawTarget(new Fabric());
        raw.Send(RawPdus.ICReq(hdgst: true));
        var capsule = RawPdus.Capsule(NvmeCommands.KeepAlive(), 1, hdgst: true);
        capsule[^2] ^= 0x10;
        var outputs = new List<RawPdu>();
        foreach (byte b in capsule) outputs.AddRange(raw.Send([b]));
        AssertTerminated(raw, outputs, TermReqFes.HeaderDigestError, 0);
    }

    [Fact]
    public void Host_queue_reports_the_targets_TermReq_and_fails_its_commands()
    {
        var fabric = new Fabric();
        var (_, io) = fabric.Controller();
        var pending = io.Submit(NvmeCommands.Flush(1));
        // Damage the header digest flag on the way: the target terminates, the host sees the C2HTermReq.
        io.HostToTargetFilter = bytes =>
        {
            bytes[2] = 71;
            return bytes;
        };
        fabric.Pump();
        Assert.True(io.Closed);
        Assert.Equal(HostQueueState.Failed, io.Host.State);
        Assert.Equal(TermReqFes.InvalidPduHeaderField, io.Host.PeerTermination);
        var done = Assert.Single(io.TakeCompletions());
        Assert.Same(pending, done);
        Assert.True(done.TransportFailed);
    }

    [Fact]
    public void Admin_data_with_an_empty_sgl_sends_no_zero_length_C2HData()
    {
        var fabric = new Fabric();
        var raw = new RawTarget(fabric);
        Assert.True(raw.Handshake().Status.IsSuccess);
        raw.Send(RawPdus.Capsule(NvmeCommands.PropertySet(PropertyOffset.Cc, Fabric.CcEnable), 2));
        var pdus = raw.Send(RawPdus.Capsule(NvmeCommands.Identify(IdentifyCns.Controller), 3, sglLength: 0));
        Assert.All(pdus.Where(p => p.Type == PduType.C2HData), p => Assert.NotEqual(0u, p.DataLength));
        Assert.Equal(PduType.CapsuleResp, pdus[^1].Type);
        Assert.False(raw.Conn.WantsClose);
    }

    [Fact]
    public void Maxr2t_FFFFFFFF_still_gets_R2Ts()
    {
        var fabric = new Fabric();
        fabric.AddVolume();
        var admin = fabric.Admin();
        var raw = new RawTarget(fabric);
        Assert.Equal(PduType.ICResp, Assert.Single(raw.Send(RawPdus.ICReq(maxR2T: uint.MaxValue))).Type);
        var data = ConnectData.Create(HostIds.Default, admin.Cntlid, fabric.SubNqn, Fabric.HostNqn);
        Assert.True(Assert.Single(raw.Send(RawPdus.Capsule(NvmeCommands.Connect(1, 31), 1, data))).Cqe.Status.IsSuccess);
        var r2ts = raw.Send(RawPdus.Capsule(NvmeCommands.Write(1, 0, 32), 2, sglLength: 32 * 512));
        Assert.NotEmpty(r2ts);
        Assert.All(r2ts, p => Assert.Equal(PduType.R2T, p.Type));
    }

    /// <summary>An I/O queue connection (raw) of a fresh enabled controller with namespace 1.</summary>
    private static RawTarget IoQueue(Fabric fabric, ushort qid = 1)
    {
        if (fabric.Target.GetNamespace(1) is null) fabric.AddVolume();
        var admin = fabric.Pairs.Count > 0 ? fabric.Pairs[0] : fabric.Admin();
        var raw = new RawTarget(fabric);
        Assert.True(raw.Handshake(qid, admin.Cntlid).Status.IsSuccess);
        return raw;
    }

    private static byte[] Header(byte type, byte flags, int hlen, int pdo, int plen)
    {
        var h = new byte[8];
        h[0] = type;
        h[1] = flags;
        h[2] = (byte)hlen;
        h[3] = (byte)pdo;
        BinaryPrimitives.WriteInt32LittleEndian(h.AsSpan(4), plen);
        return h;
    }

    private static RawPdu AssertTerminated(RawTarget raw, List<RawPdu> output, TermReqFes fes, uint fei)
    {
        var term = Assert.Single(output, p => p.Type == PduType.C2HTermReq);
        Assert.Same(term, output[^1]);
        Assert.Equal(fes, term.Fes);
        Assert.Equal(fei, term.Fei);
        Assert.Equal(24, term.Hlen);
        Assert.InRange(term.Plen, 24, 24 + PduLayout.TermReqMaxData);
        Assert.True(raw.Conn.WantsClose);
        return term;
    }
}
