using Duroslight.Host;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Tests.Engine;
using Duroslight.Protocol.Wire;
using Xunit;

namespace Duroslight.Protocol.Tests.Host;

/// <summary>The host queue's own checks, driven with hand-made target PDUs.</summary>
public class HostQueueTests
{
    [Fact]
    public void Start_sends_an_ICReq_with_the_requested_digests_and_maxr2t()
    {
        var q = new HostQueue(new HostQueueOptions { HeaderDigest = true, MaxR2T = 7 });
        Assert.Throws<InvalidOperationException>(() => q.TrySubmit(NvmeCommands.KeepAlive(), default, null, out _));
        q.Start();
        var icreq = Assert.Single(RawPdus.Split(q.PendingOutput.Span));
        Assert.Equal(PduType.ICReq, icreq.Type);
        Assert.Equal(128, icreq.Plen);
        Assert.Equal(1, icreq.Bytes[11]);
        Assert.Equal(7u, icreq.U32(12));
        Assert.Equal(HostQueueState.AwaitingICResp, q.State);
    }

    [Theory]
    [InlineData(1, 0, 131072u, false, TermReqFes.UnsupportedParameter, 8u)]
    [InlineData(0, 1, 131072u, false, TermReqFes.UnsupportedParameter, 10u)]
    [InlineData(0, 0, 2048u, false, TermReqFes.InvalidPduHeaderField, 12u)]
    [InlineData(0, 0, 4098u, false, TermReqFes.InvalidPduHeaderField, 12u)]
    [InlineData(0, 0, 131072u, true, TermReqFes.InvalidPduHeaderField, 11u)]
    public void Bad_ICResp_fails_the_queue_with_an_H2CTermReq(ushort pfv, byte cpda, uint maxH2CData, bool wrongDigest,
        TermReqFes fes, uint fei)
    {
        var q = new HostQueue(new HostQueueOptions());
        q.Start();
        q.ConsumeOutput(q.PendingOutput.Length);
        q.Receive(RawPdus.ICResp(hdgst: wrongDigest, maxH2CData: maxH2CData, cpda: cpda, pfv: pfv));
        Assert.Equal(HostQueueState.Failed, q.State);
        Assert.True(q.WantsClose);
        Assert.Equal(new FramingError(fes, fei), q.LocalTermination);
        var term = Assert.Single(RawPdus.Split(q.PendingOutput.Span));
        Assert.Equal(PduType.H2CTermReq, term.Type);
        Assert.Equal(fes, term.Fes);
    }

    [Fact]
    public void Queue_full_release_rules_and_argument_checks()
    {
        var q = Ready(new HostQueueOptions { QueueDepth = 2 });
        Assert.True(q.TrySubmit(NvmeCommands.KeepAlive(), default, "a", out var a));
        Assert.True(q.TrySubmit(NvmeCommands.KeepAlive(), default, "b", out var b));
        Assert.False(q.TrySubmit(NvmeCommands.KeepAlive(), default, "c", out _));
        Assert.Throws<InvalidOperationException>(() => q.Release(a));
        Assert.Throws<ArgumentException>(() => q.TrySubmit(new NvmeCommand(0x03), new byte[8], null, out _)); // bidirectional
        Assert.Throws<ArgumentException>(() => q.TrySubmit(NvmeCommands.Flush(1), new byte[8], null, out _)); // no data phase
        q.Receive(RawPdus.CapsuleResp(b.Cid, NvmeStatus.Success, 42));
        Assert.True(q.TryTakeCompletion(out var done));
        Assert.Same(b, done);
        Assert.Equal("b", done.UserState);
        Assert.Equal(42UL, done.Completion.Result);
        Assert.Equal(0, q.FreeSlots);
        q.Release(done);
        Assert.Equal(1, q.FreeSlots);
        Assert.Equal(HostCommandState.Outstanding, a.State);
    }

    [Fact]
    public void Connect_data_travels_in_capsule_even_when_the_limit_is_smaller()
    {
        var q = Ready(new HostQueueOptions { QueueId = 1, InCapsuleDataLimit = 0 });
        var data = ConnectData.Create(Guid.NewGuid(), 1, "nqn.2026-01.test:a", "nqn.2026-01.test:h");
        Assert.True(q.TrySubmit(NvmeCommands.Connect(1, 31), data, null, out var connect));
        Assert.True(connect.InCapsule);
        var capsule = Assert.Single(RawPdus.Split(q.PendingOutput.Span));
        Assert.Equal(72 + 1024, capsule.Plen);
        Assert.Equal(SglTypes.InCapsuleData, capsule.Bytes[8 + 39]);

        q.ConsumeOutput(q.PendingOutput.Length);
        Assert.True(q.TrySubmit(NvmeCommands.Write(1, 0, 1), new byte[512], null, out var write));
        Assert.False(write.InCapsule);
        Assert.Equal(SglTypes.TransportDataBlock, Assert.Single(RawPdus.Split(q.PendingOutput.Span)).Bytes[8 + 39]);
    }

    [Fact]
    public void CapsuleResp_for_an_unknown_or_stale_cid_is_fatal()
    {
        var q = Ready();
        Assert.True(q.TrySubmit(NvmeCommands.KeepAlive(), default, null, out var cmd));
        q.ConsumeOutput(q.PendingOutput.Length);
        ushort stale = (ushort)(cmd.Cid ^ 0x1000); // same slot, other generation
        q.Receive(RawPdus.CapsuleResp(stale, NvmeStatus.Success));
        Assert.Equal(HostQueueState.Failed, q.State);
        Assert.Equal(new FramingError(TermReqFes.InvalidPduHeaderField, 20), q.LocalTermination);
        Assert.True(q.TryTakeCompletion(out var failed));
        Assert.True(failed.TransportFailed);
        var term = Assert.Single(RawPdus.Split(q.PendingOutput.Span));
        Assert.Equal(PduType.H2CTermReq, term.Type);
        Assert.Equal(RawPdus.CapsuleResp(stale, NvmeStatus.Success), term.Bytes.AsSpan(24).ToArray());
    }

    [Fact]
    public void C2HData_in_pieces_fills_the_buffer_then_the_response_completes()
    {
        var q = Ready(new HostQueueOptions { DataDigest = true, HeaderDigest = true });
        var buffer = new byte[1024];
        Assert.True(q.TrySubmit(NvmeCommands.Read(1, 0, 2), buffer, null, out var read));
        var data = IoTests.Pattern(1024, 1);
        var stream = RawPdus.C2HData(read.Cid, 0, data.AsSpan(0, 300), PduFlags.None, true, true)
            .Concat(RawPdus.C2HData(read.Cid, 300, data.AsSpan(300), PduFlags.LastPdu, true, true))
            .Concat(RawPdus.CapsuleResp(read.Cid, NvmeStatus.Success, hdgst: true)).ToArray();
        foreach (byte b in stream) q.Receive([b]);
        Assert.True(q.TryTakeCompletion(out var done));
        Assert.True(done.Status.IsSuccess);
        Assert.Equal(1024, done.BytesTransferred);
        Assert.Equal(data, buffer);
    }

    [Fact]
    public void C2HData_SUCCESS_completes_without_a_response()
    {
        var q = Ready();
        var buffer = new byte[512];
        Assert.True(q.TrySubmit(NvmeCommands.Read(1, 0, 1), buffer, null, out var read));
        q.Receive(RawPdus.C2HData(read.Cid, 0, new byte[512], PduFlags.LastPdu | PduFlags.Success));
        Assert.True(q.TryTakeCompletion(out var done));
        Assert.True(done.Status.IsSuccess);
        Assert.Equal(read.Cid, done.Completion.CommandId);
    }

    [Fact]
    public void Bad_C2HData_digest_is_a_data_transfer_error()
    {
        var q = Ready(new HostQueueOptions { DataDigest = true });
        Assert.True(q.TrySubmit(NvmeCommands.Read(1, 0, 1), new byte[512], null, out var read));
        var c2h = RawPdus.C2HData(read.Cid, 0, new byte[512], ddgst: true);
        c2h[^1] ^= 0xFF;
        q.Receive(c2h);
        q.Receive(RawPdus.CapsuleResp(read.Cid, NvmeStatus.Success));
        Assert.True(q.TryTakeCompletion(out var done));
        Assert.Equal(NvmeStatus.DataTransferError, done.Status);
        Assert.Equal(HostQueueState.Ready, q.State);
    }

    public static TheoryData<string, TermReqFes, uint> BadC2HData => new()
    {
        { "out-of-order", TermReqFes.DataTransferOutOfRange, 12 },
        { "beyond-buffer", TermReqFes.DataTransferOutOfRange, 12 },
        { "write-command", TermReqFes.InvalidPduHeaderField, 8 },
        { "success-not-last", TermReqFes.InvalidPduHeaderField, 1 },
        { "unknown-cid", TermReqFes.InvalidPduHeaderField, 8 },
    };

    [Theory]
    [MemberData(nameof(BadC2HData))]
    public void Bad_C2HData_is_fatal(string kind, TermReqFes fes, uint fei)
    {
        var q = Ready();
        Assert.True(q.TrySubmit(NvmeCommands.Read(1, 0, 2), new byte[1024], null, out var read));
        Assert.True(q.TrySubmit(NvmeCommands.Write(1, 0, 1), new byte[512], null, out var write));
        byte[] pdu = kind switch
        {
            "out-of-order" => RawPdus.C2HData(read.Cid, 512, new byte[512]),
            "beyond-buffer" => RawPdus.C2HData(read.Cid, 0, new byte[2048]),
            "write-command" => RawPdus.C2HData(write.Cid, 0, new byte[512]),
            "success-not-last" => RawPdus.C2HData(read.Cid, 0, new byte[1024], PduFlags.Success),
            _ => RawPdus.C2HData(0x0FFF, 0, new byte[16]),
        };
        q.Receive(pdu);
        Assert.Equal(new FramingError(fes, fei), q.LocalTermination);
        Assert.Equal(2, Drain(q).Count(c => c.TransportFailed));
    }

    [Fact]
    public void R2T_is_answered_and_bad_R2Ts_are_fatal()
    {
        var q = Ready(new HostQueueOptions { InCapsuleDataLimit = 0 });
        var data = IoTests.Pattern(8192, 2);
        Assert.True(q.TrySubmit(NvmeCommands.Write(1, 0, 16), data, null, out var write));
        q.ConsumeOutput(q.PendingOutput.Length);
        q.Receive(RawPdus.R2T(write.Cid, 77, 0, 4096));
        var h2c = Assert.Single(RawPdus.Split(q.PendingOutput.Span));
        Assert.Equal(PduType.H2CData, h2c.Type);
        Assert.Equal(77, h2c.Ttag);
        Assert.Equal(4096u, h2c.DataLength);
        Assert.Equal(data.AsSpan(0, 4096).ToArray(), h2c.Bytes.AsSpan(h2c.Pdo, 4096).ToArray());
        q.ConsumeOutput(q.PendingOutput.Length);

        q.Receive(RawPdus.R2T(write.Cid, 78, 0, 4096)); // asks again for data already sent
        Assert.Equal(new FramingError(TermReqFes.DataTransferOutOfRange, 12), q.LocalTermination);
    }

    [Fact]
    public void R2T_for_in_capsule_or_read_commands_is_fatal()
    {
        var q = Ready();
        Assert.True(q.TrySubmit(NvmeCommands.Write(1, 0, 1), new byte[512], null, out var write));
        q.Receive(RawPdus.R2T(write.Cid, 1, 0, 512));
        Assert.Equal(new FramingError(TermReqFes.InvalidPduHeaderField, 8), q.LocalTermination);

        q = Ready();
        Assert.True(q.TrySubmit(NvmeCommands.Write(1, 0, 32), new byte[16384], null, out var big));
        q.Receive(RawPdus.R2T(big.Cid, 1, 8192, 16384));
        Assert.Equal(new FramingError(TermReqFes.DataTransferOutOfRange, 12), q.LocalTermination);
    }

    [Fact]
    public void Target_TermReq_fails_the_queue_without_answering()
    {
        var q = Ready();
        Assert.True(q.TrySubmit(NvmeCommands.KeepAlive(), default, null, out _));
        q.ConsumeOutput(q.PendingOutput.Length);
        var term = new byte[PduLayout.TermReqHeaderSize + 8];
        int n = PduWriter.TermReq(term, PduType.C2HTermReq, TermReqFes.HeaderDigestError, 0, new byte[8]);
        q.Receive(term.AsSpan(0, n));
        Assert.Equal(HostQueueState.Failed, q.State);
        Assert.Equal(TermReqFes.HeaderDigestError, q.PeerTermination);
        Assert.Null(q.LocalTermination);
        Assert.True(q.PendingOutput.IsEmpty);
        Assert.True(Assert.Single(Drain(q)).TransportFailed);
    }

    [Fact]
    public void Transport_close_fails_outstanding_commands_but_keeps_finished_ones()
    {
        var q = Ready();
        Assert.True(q.TrySubmit(NvmeCommands.KeepAlive(), default, null, out var a));
        Assert.True(q.TrySubmit(NvmeCommands.KeepAlive(), default, null, out _));
        q.Receive(RawPdus.CapsuleResp(a.Cid, NvmeStatus.InvalidField));
        q.OnTransportClosed();
        var done = Drain(q);
        Assert.Equal(2, done.Count);
        Assert.Equal(NvmeStatus.InvalidField, done[0].Status);
        Assert.False(done[0].TransportFailed);
        Assert.True(done[1].TransportFailed);
        Assert.Throws<InvalidOperationException>(() => q.TrySubmit(NvmeCommands.KeepAlive(), default, null, out _));
    }

    private static HostQueue Ready(HostQueueOptions? options = null)
    {
        var q = new HostQueue(options ?? new HostQueueOptions());
        q.Start();
        q.ConsumeOutput(q.PendingOutput.Length);
        q.Receive(RawPdus.ICResp(q.Options.HeaderDigest, q.Options.DataDigest));
        Assert.Equal(HostQueueState.Ready, q.State);
        return q;
    }

    private static List<HostCommand> Drain(HostQueue q)
    {
        var list = new List<HostCommand>();
        while (q.TryTakeCompletion(out var c)) list.Add(c);
        return list;
    }
}
