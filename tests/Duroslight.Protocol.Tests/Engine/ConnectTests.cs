using System.Buffers.Binary;
using Duroslight.Host;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;
using Duroslight.Protocol.Wire;
using Xunit;

namespace Duroslight.Protocol.Tests.Engine;

/// <summary>ICReq/ICResp, Fabrics Connect on admin and I/O queues, subsystem resolution, ACLs, controller lifetime.</summary>
public class ConnectTests
{
    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public void ICResp_echoes_digests_with_pfv0_cpda0_and_maxh2cdata(bool hdgst, bool ddgst)
    {
        var fabric = new Fabric(new TargetOptions { MaxH2CData = 64 * 1024 });
        var raw = new RawTarget(fabric);
        var icresp = Assert.Single(raw.Send(RawPdus.ICReq(hdgst, ddgst, maxR2T: 3)));

        Assert.Equal(PduType.ICResp, icresp.Type);
        Assert.Equal(0, (int)icresp.Flags);
        Assert.Equal(128, icresp.Hlen);
        Assert.Equal(0, icresp.Pdo);
        Assert.Equal(128, icresp.Plen);
        Assert.Equal(0, BinaryPrimitives.ReadUInt16LittleEndian(icresp.Bytes.AsSpan(8))); // PFV
        Assert.Equal(0, icresp.Bytes[10]); // CPDA
        Assert.Equal((hdgst ? 1 : 0) | (ddgst ? 2 : 0), icresp.Bytes[11]);
        Assert.Equal(64u * 1024, icresp.U32(12)); // MAXH2CDATA
        Assert.True(icresp.Bytes.AsSpan(16).IndexOfAnyExcept((byte)0) < 0, "reserved bytes must be zero");
        Assert.False(raw.Conn.WantsClose);
    }

    [Fact]
    public void HostQueue_negotiates_with_the_engine()
    {
        var fabric = new Fabric();
        var q = fabric.Open(new HostQueueOptions { HeaderDigest = true, DataDigest = true });
        Assert.Equal(HostQueueState.Ready, q.Host.State);
        Assert.Equal(128 * 1024, q.Host.MaxH2CData);
        Assert.True(q.Host.HeaderDigest);
        Assert.True(q.Host.DataDigest);
        var icreq = Assert.Single(RawPdus.Split(q.HostOutput.ToArray()));
        Assert.Equal(PduType.ICReq, icreq.Type);
        Assert.Equal(3, icreq.Bytes[11]);
    }

    [Fact]
    public void Admin_connect_returns_a_fresh_cntlid()
    {
        var fabric = new Fabric();
        var (a, cqeA) = fabric.Connect();
        var (b, cqeB) = fabric.Connect();
        Assert.True(cqeA.Status.IsSuccess);
        Assert.True(cqeB.Status.IsSuccess);
        Assert.NotEqual(a.Cntlid, b.Cntlid);
        Assert.NotEqual(ConnectData.DynamicCntlid, a.Cntlid);
        Assert.Equal(0, cqeA.SqId);
        var listed = fabric.Target.ListControllers();
        Assert.Equal(2, listed.Count);
        Assert.Contains(listed, c => c.Cntlid == a.Cntlid && c.HostNqn == Fabric.HostNqn && c.PoolId == 0);
    }

    [Fact]
    public void Admin_connect_requires_cntlid_FFFF()
    {
        var fabric = new Fabric();
        var (_, cqe) = fabric.Connect(0, cntlid: 5);
        Assert.Equal(NvmeStatus.ConnectInvalidParameters, cqe.Status);
        Assert.Equal((1u << 16) | 16, (uint)cqe.Result); // IATTR: in data; IPO: CNTLID at byte 16
        Assert.Empty(fabric.Target.ListControllers());
    }

    [Fact]
    public void Io_queue_connects_with_the_admin_cntlid()
    {
        var fabric = new Fabric();
        var admin = fabric.Admin();
        var (io, cqe) = fabric.Connect(1, admin.Cntlid);
        Assert.True(cqe.Status.IsSuccess);
        Assert.Equal(admin.Cntlid, (ushort)cqe.Result);
        Assert.Equal(1, cqe.SqId);
        Assert.Equal(1, Assert.Single(fabric.Target.ListControllers()).IoQueues);
        Assert.Equal(1, io.Target.QueueId);
    }

    [Fact]
    public void Io_queue_connect_refuses_unknown_cntlid_other_host_duplicate_qid_and_unready_controller()
    {
        var fabric = new Fabric();
        var (notEnabled, _) = fabric.Connect();
        Assert.Equal(NvmeStatus.CommandSequenceError, fabric.Connect(1, notEnabled.Cntlid).Cqe.Status);

        var admin = fabric.Admin();
        var (_, wrongId) = fabric.Connect(1, (ushort)(admin.Cntlid + 100));
        Assert.Equal(NvmeStatus.ConnectInvalidParameters, wrongId.Status);
        Assert.Equal((1u << 16) | 16, (uint)wrongId.Result);

        var otherHost = fabric.Connect(1, admin.Cntlid, hostNqn: "nqn.2014-08.org.nvmexpress:uuid:other").Cqe;
        Assert.Equal(NvmeStatus.ConnectInvalidParameters, otherHost.Status);

        fabric.Io(admin, 1);
        var duplicate = fabric.Connect(1, admin.Cntlid).Cqe;
        Assert.Equal(NvmeStatus.ConnectInvalidParameters, duplicate.Status);
        Assert.Equal(42u, (uint)duplicate.Result); // IPO: QID in the SQE
    }

    [Fact]
    public void Io_queue_beyond_the_granted_number_of_queues_is_refused()
    {
        var fabric = new Fabric();
        var admin = fabric.Admin();
        fabric.ExecOk(admin, NvmeCommands.SetFeatures(FeatureId.NumberOfQueues, 1 | 1u << 16)); // two queues
        Assert.True(fabric.Connect(2, admin.Cntlid).Cqe.Status.IsSuccess);
        Assert.Equal(NvmeStatus.ConnectInvalidParameters, fabric.Connect(3, admin.Cntlid).Cqe.Status);
    }

    [Fact]
    public void Aux_subsystem_1_accepts_connections_with_its_own_cntlids()
    {
        var fabric = new Fabric();
        string aux1 = fabric.SubNqn + ".aux-1";
        var admin = fabric.Admin(aux1);
        var io = fabric.Io(admin, 1, subNqn: aux1);
        Assert.False(io.Closed);
        var snap = Assert.Single(fabric.Target.ListControllers());
        Assert.Equal(1, snap.PoolId);
        Assert.Equal(aux1, snap.SubsystemNqn);
    }

    [Theory]
    [InlineData(".aux-0")]
    [InlineData(":aux-0")]
    [InlineData(".aux-5")]
    [InlineData(":aux-5")]
    [InlineData(":aux-9")]
    [InlineData(":aux-01")]
    [InlineData(":aux-x")]
    [InlineData(".aux-x")]
    [InlineData(":garbage")]
    public void Unknown_subsystem_nqn_is_ConnectInvalidParameters_pointing_at_SUBNQN(string suffix)
    {
        var fabric = new Fabric();
        var (_, cqe) = fabric.Connect(subNqn: fabric.SubNqn + suffix);
        Assert.Equal(StatusCodeType.CommandSpecific, cqe.Status.Sct);
        Assert.Equal(0x82, cqe.Status.Sc);
        Assert.Equal((1u << 16) | 256, (uint)cqe.Result);
    }

    [Fact]
    public void Garbage_subsystem_and_host_nqns_are_refused()
    {
        var fabric = new Fabric();
        Assert.Equal(NvmeStatus.ConnectInvalidParameters, fabric.Connect(subNqn: "garbage").Cqe.Status);
        var badHost = fabric.Connect(hostNqn: "garbage").Cqe;
        Assert.Equal(NvmeStatus.ConnectInvalidParameters, badHost.Status);
        Assert.Equal((1u << 16) | 512, (uint)badHost.Result);
    }

    [Fact]
    public void Host_not_in_the_acl_gets_ConnectInvalidHost_84h()
    {
        var fabric = new Fabric();
        fabric.Target.SetHostAccess(fabric.Target.Subsystems[0], HostAccess.Only(["nqn.2014-08.org.nvmexpress:uuid:allowed"]));
        var (_, cqe) = fabric.Connect();
        Assert.Equal(StatusCodeType.CommandSpecific, cqe.Status.Sct);
        Assert.Equal(0x84, cqe.Status.Sc);
        Assert.Equal((1u << 16) | 512, (uint)cqe.Result);
        // aux-1 still allows anyone.
        Assert.True(fabric.Connect(subNqn: fabric.SubNqn + ".aux-1").Cqe.Status.IsSuccess);
    }

    [Fact]
    public void Revoking_host_access_tears_down_its_controller()
    {
        var fabric = new Fabric();
        var (admin, io) = fabric.Controller();
        fabric.Target.SetHostAccess(fabric.Target.Subsystems[0], HostAccess.Only(["nqn.2014-08.org.nvmexpress:uuid:other"]));
        fabric.Pump();
        Assert.True(admin.Closed);
        Assert.True(io.Closed);
        Assert.DoesNotContain(fabric.Target.ListControllers(), c => c.PoolId == 0);
    }

    [Fact]
    public void Connect_with_zero_sqsize_or_twice_is_refused()
    {
        var fabric = new Fabric();
        var raw = new RawTarget(fabric);
        raw.Send(RawPdus.ICReq());
        var data = ConnectData.Create(HostIds.Default, 0xFFFF, fabric.SubNqn, Fabric.HostNqn);
        var zero = Assert.Single(raw.Send(RawPdus.Capsule(NvmeCommands.Connect(0, 0), 1, data)));
        Assert.Equal(NvmeStatus.ConnectInvalidParameters, zero.Cqe.Status);
        Assert.True(Assert.Single(raw.Send(RawPdus.Capsule(NvmeCommands.Connect(0, 31), 2, data))).Cqe.Status.IsSuccess);
        var again = Assert.Single(raw.Send(RawPdus.Capsule(NvmeCommands.Connect(0, 31), 3, data)));
        Assert.Equal(NvmeStatus.CommandSequenceError, again.Cqe.Status);
    }

    [Fact]
    public void Keep_alive_expiry_destroys_the_controller_and_its_io_queues()
    {
        var fabric = new Fabric();
        fabric.AddVolume();
        var admin = fabric.Admin(katoMs: 1000);
        var io = fabric.Io(admin);

        fabric.Now += 900;
        fabric.Pump();
        Assert.False(admin.Closed);
        fabric.ExecOk(admin, NvmeCommands.KeepAlive()); // traffic re-arms the timer

        fabric.Now += 900;
        fabric.Pump();
        Assert.False(admin.Closed);

        fabric.Now += 100; // exactly KATO since the Keep Alive: still alive
        fabric.Pump();
        Assert.False(admin.Closed);

        fabric.Now += 1;
        fabric.Pump();
        Assert.True(admin.Closed);
        Assert.True(io.Closed);
        Assert.Equal(HostQueueState.Failed, io.Host.State);
        Assert.Empty(fabric.Target.ListControllers());
    }

    [Fact]
    public void Io_commands_also_count_as_keep_alive_traffic()
    {
        var fabric = new Fabric();
        fabric.AddVolume();
        var admin = fabric.Admin(katoMs: 1000);
        var io = fabric.Io(admin);
        for (int i = 0; i < 5; i++)
        {
            fabric.Now += 800;
            fabric.ExecOk(io, NvmeCommands.Flush(1));
        }
        Assert.False(admin.Closed);
    }

    [Fact]
    public void Io_queues_close_when_the_admin_queue_closes()
    {
        var fabric = new Fabric();
        var (admin, io) = fabric.Controller();
        var io2 = fabric.Io(admin, 2);
        admin.Target.OnTransportClosed();
        fabric.Pump();
        Assert.True(io.Closed);
        Assert.True(io2.Closed);
        Assert.True(io.Target.WantsClose);
        Assert.Empty(fabric.Target.ListControllers());
    }

    [Fact]
    public void Closing_an_io_queue_leaves_the_controller()
    {
        var fabric = new Fabric();
        var (admin, io) = fabric.Controller();
        io.Target.OnTransportClosed();
        fabric.Pump();
        Assert.False(admin.Closed);
        Assert.Equal(0, Assert.Single(fabric.Target.ListControllers()).IoQueues);
        // The queue ID is free again.
        fabric.Io(admin, 1);
    }

    [Fact]
    public void Disconnect_command_answers_then_closes()
    {
        var fabric = new Fabric();
        var (admin, io) = fabric.Controller();
        var cqe = fabric.Exec(io, NvmeCommands.Disconnect());
        Assert.True(cqe.Status.IsSuccess);
        Assert.True(io.Closed);
        Assert.False(admin.Closed);
        Assert.True(fabric.Exec(admin, NvmeCommands.Disconnect()).Status.IsSuccess);
        Assert.True(admin.Closed);
        Assert.Empty(fabric.Target.ListControllers());
    }

    [Fact]
    public void Cntlids_are_recycled_after_disconnect()
    {
        // With a pool of two IDs, a leak would refuse the third connect (ConnectControllerBusy).
        var fabric = new Fabric(new TargetOptions { MaxControllersPerPool = 2 });
        var keep = fabric.Admin();
        for (int i = 0; i < 6; i++)
        {
            var transient = fabric.Admin();
            Assert.NotEqual(keep.Cntlid, transient.Cntlid);
            ushort old = transient.Cntlid;
            transient.Target.OnTransportClosed();
            fabric.Pump();
            Assert.Single(fabric.Target.ListControllers());
            // The dead controller's ID no longer admits I/O queues.
            Assert.Equal(NvmeStatus.ConnectInvalidParameters, fabric.Connect(1, old).Cqe.Status);
        }
    }
}
