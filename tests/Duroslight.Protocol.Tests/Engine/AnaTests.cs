using System.Buffers.Binary;
using System.Diagnostics;
using Duroslight.Host;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;
using Duroslight.Protocol.Wire;
using Xunit;

namespace Duroslight.Protocol.Tests.Engine;

/// <summary>Asymmetric Namespace Access in memory: identify fields, the ANA log page, the path status and the ANA change notice.</summary>
public sealed class AnaTests
{
    private const uint NoticeAna = 1u << 11, NoticeDiscovery = 1u << 31;
    private const ulong AnaChangeDw0 = 0x000C_0302; // notice (2h), ANA change (03h), log page 0Ch

    [Fact]
    public void Io_controllers_report_ANA_with_one_group_per_namespace_and_discovery_controllers_do_not()
    {
        var fabric = new Fabric();
        fabric.AddVolume(7);
        var admin = fabric.Admin();
        var page = new byte[4096];
        fabric.ExecOk(admin, NvmeCommands.Identify(IdentifyCns.Controller), page);
        Assert.Equal((1 << 1) | (1 << 3), page[76]); // CMIC: multi-controller, ANA reporting
        Assert.Equal(10, page[340]); // ANATT
        Assert.Equal(0x45, page[341]); // ANACAP: optimized, inaccessible, ANAGRPID fixed while attached
        Assert.Equal(Target.MaxNamespaces, BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(342))); // ANAGRPMAX
        Assert.Equal(Target.MaxNamespaces, BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(346))); // NANAGRPID
        Assert.Equal(Target.MaxNamespaces, BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(540))); // MNAN
        Assert.NotEqual(0u, BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(92)) & NoticeAna); // OAES bit 11

        fabric.ExecOk(admin, NvmeCommands.Identify(IdentifyCns.Namespace, 7), page);
        Assert.Equal(7u, BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(92))); // ANAGRPID = NSID
        Assert.Equal(1, page[30] & 1); // NMIC: shared

        var disc = fabric.Admin(TargetOptions.DiscoveryNqn);
        fabric.ExecOk(disc, NvmeCommands.Identify(IdentifyCns.Controller), page);
        Assert.Equal(0, page[76] & (1 << 3));
        Assert.Equal(0, page[341]);
    }

    [Fact]
    public void The_ANA_log_page_lists_each_group_with_its_state_and_NSID_and_counts_changes()
    {
        var fabric = new Fabric();
        fabric.AddVolume(1);
        fabric.AddVolume(5);
        var admin = fabric.Admin();
        var log = GetLog(fabric, admin, AnaLogPage.Size(2, groupsOnly: false));
        Assert.Equal(0UL, BinaryPrimitives.ReadUInt64LittleEndian(log));
        Assert.Equal(2, BinaryPrimitives.ReadUInt16LittleEndian(log.AsSpan(8)));
        Assert.Equal([(1u, 1u, AnaState.Optimized, 1u), (5u, 1u, AnaState.Optimized, 5u)], Groups(log, 2, groupsOnly: false));

        Assert.True(fabric.Target.SetAnaState(5, AnaState.Inaccessible));
        Assert.False(fabric.Target.SetAnaState(5, AnaState.Inaccessible));
        log = GetLog(fabric, admin, AnaLogPage.Size(2, groupsOnly: false));
        Assert.Equal(1UL, BinaryPrimitives.ReadUInt64LittleEndian(log));
        Assert.Equal([(1u, 1u, AnaState.Optimized, 1u), (5u, 1u, AnaState.Inaccessible, 5u)], Groups(log, 2, groupsOnly: false));

        // RGO (LSP bit 0): descriptors only, no NSID lists, NNSID 0.
        var cmd = NvmeCommands.GetLogPage(LogPageId.AsymmetricNamespaceAccess, AnaLogPage.Size(2, groupsOnly: true));
        var groups = new byte[AnaLogPage.Size(2, groupsOnly: true)];
        fabric.ExecOk(admin, cmd with { Cdw10 = cmd.Cdw10 | 1u << 8 }, groups);
        Assert.Equal([(1u, 0u, AnaState.Optimized, 0u), (5u, 0u, AnaState.Inaccessible, 0u)], Groups(groups, 2, groupsOnly: true));
    }

    [Fact]
    public void The_backend_subsystem_admits_only_listed_nodes_and_serves_a_namespace_whose_path_is_inaccessible_to_hosts()
    {
        const string Backend = "nqn.2026-11.io.duroslight:default.replication";
        var fabric = new Fabric(new TargetOptions { BackendNqn = Backend });
        fabric.AddVolume(1);
        fabric.Target.SetAnaState(1, AnaState.Inaccessible); // a secondary replica
        Assert.DoesNotContain(fabric.Target.Subsystems, s => s.IsBackend); // not a host-facing (or discovered) subsystem
        Assert.False(fabric.Connect(subNqn: Backend).Cqe.Status.IsSuccess); // no node listed yet

        fabric.Target.SetHostAccess(fabric.Target.Backend!, HostAccess.Only([Fabric.HostNqn]));
        var io = fabric.Io(fabric.Admin(Backend), subNqn: Backend);
        var block = new byte[512];
        block.AsSpan().Fill(0x5A);
        fabric.ExecOk(io, NvmeCommands.Write(1, 3, 1), block);
        fabric.ExecOk(io, NvmeCommands.Flush(1));
        var back = new byte[512];
        fabric.ExecOk(io, NvmeCommands.Read(1, 3, 1), back);
        Assert.Equal(block, back);

        // The same host on the default subsystem: the path status, as for any host.
        var (_, hostIo) = fabric.Controller();
        Assert.Equal(NvmeStatus.AsymmetricAccessInaccessible, fabric.Exec(hostIo, NvmeCommands.Read(1, 3, 1), back).Status);
    }

    [Fact]
    public void Io_to_an_inaccessible_group_gets_the_path_status_and_runs_again_once_optimized()
    {
        var fabric = new Fabric();
        var (_, io) = fabric.Controller();
        var block = new byte[512];
        fabric.Target.SetAnaState(1, AnaState.Inaccessible);
        Assert.Equal(NvmeStatus.AsymmetricAccessInaccessible, fabric.Exec(io, NvmeCommands.Read(1, 0, 1), block).Status);
        Assert.Equal(NvmeStatus.AsymmetricAccessInaccessible, fabric.Exec(io, NvmeCommands.Write(1, 0, 1), block).Status);
        Assert.Equal(NvmeStatus.AsymmetricAccessInaccessible, fabric.Exec(io, NvmeCommands.WriteZeroes(1, 0, 1)).Status);
        Assert.Equal(NvmeStatus.AsymmetricAccessInaccessible, fabric.Exec(io, NvmeCommands.Flush(1)).Status);
        var status = fabric.Exec(io, NvmeCommands.Read(1, 0, 1), block).Status;
        Assert.Equal((StatusCodeType.PathRelated, (byte)0x02, false), (status.Sct, status.Sc, status.Dnr)); // retryable elsewhere
        fabric.ExecOk(io, NvmeCommands.Flush(uint.MaxValue));
        Assert.Equal(NvmeStatus.InvalidNamespaceOrFormat, fabric.Exec(io, NvmeCommands.Read(9, 0, 1), block).Status);

        fabric.Target.SetAnaState(1, AnaState.Optimized);
        block.AsSpan().Fill(0x5A);
        fabric.ExecOk(io, NvmeCommands.Write(1, 0, 1), block);
        var back = new byte[512];
        fabric.ExecOk(io, NvmeCommands.Read(1, 0, 1), back);
        Assert.Equal(block, back);
    }

    [Fact]
    public void An_aux_subsystem_reports_and_enforces_the_same_ANA_state_as_the_default_one()
    {
        // Aux subsystems expose the default subsystem's namespaces: a secondary replica is inaccessible through them too.
        var fabric = new Fabric();
        string aux = fabric.SubNqn + ".aux-2";
        fabric.AddVolume(1);
        fabric.Target.SetAnaState(1, AnaState.Inaccessible);
        var admin = fabric.Admin(aux);
        var log = GetLog(fabric, admin, AnaLogPage.Size(1, groupsOnly: false));
        Assert.Equal([(1u, 1u, AnaState.Inaccessible, 1u)], Groups(log, 1, groupsOnly: false));
        var io = fabric.Io(admin, subNqn: aux);
        var block = new byte[512];
        Assert.Equal(NvmeStatus.AsymmetricAccessInaccessible, fabric.Exec(io, NvmeCommands.Read(1, 0, 1), block).Status);

        fabric.Target.SetAnaState(1, AnaState.Optimized);
        fabric.ExecOk(io, NvmeCommands.Read(1, 0, 1), block);
    }

    [Fact]
    public void A_write_to_an_inaccessible_group_is_refused_before_its_data_is_asked_for()
    {
        var fabric = new Fabric();
        var (_, io) = fabric.Controller();
        fabric.Target.SetAnaState(1, AnaState.Inaccessible);
        var data = new byte[64 * 512]; // beyond in-capsule data: the target would send an R2T for it
        Assert.Equal(NvmeStatus.AsymmetricAccessInaccessible, fabric.Exec(io, NvmeCommands.Write(1, 0, 64), data).Status);
        Assert.DoesNotContain(PduType.R2T, RawPdus.Split(io.TargetOutput.ToArray()).Select(p => p.Type));

        fabric.Target.SetAnaState(1, AnaState.Optimized);
        fabric.ExecOk(io, NvmeCommands.Write(1, 0, 64), data);
        Assert.Contains(PduType.R2T, RawPdus.Split(io.TargetOutput.ToArray()).Select(p => p.Type));
    }

    [Fact]
    public void A_primary_whose_lease_fence_is_down_answers_inaccessible_reports_it_and_acknowledges_no_write_admitted_before()
    {
        var fabric = new Fabric();
        var fence = fabric.Target.Fence;
        fabric.AddVolume(1, fence: fence); // a cluster replica: served under the node's lease
        fabric.AddVolume(2); // a volume the cluster does not know: never fenced
        var (admin, io) = fabric.Controller();
        var block = new byte[512];
        fabric.ExecOk(io, NvmeCommands.Write(1, 0, 1), block);

        // Admitted while the fence held, completed by storage after it went down: not acknowledged.
        io.HoldStorage = true;
        io.Submit(NvmeCommands.Write(1, 1, 1), block);
        fabric.Pump();
        Assert.Single(io.Held);
        fence.Close();
        io.CompleteHeld();
        io.HoldStorage = false;
        fabric.Pump();
        var late = Assert.Single(io.TakeCompletions());
        Assert.Equal(NvmeStatus.AsymmetricAccessInaccessible, late.Completion.Status);
        io.Host.Release(late);

        // Fenced: every command to the primary's namespace gets the path status, the log page says inaccessible.
        Assert.Equal(NvmeStatus.AsymmetricAccessInaccessible, fabric.Exec(io, NvmeCommands.Read(1, 0, 1), block).Status);
        Assert.Equal(NvmeStatus.AsymmetricAccessInaccessible, fabric.Exec(io, NvmeCommands.Write(1, 0, 1), block).Status);
        Assert.Equal([(1u, 1u, AnaState.Inaccessible, 1u), (2u, 1u, AnaState.Optimized, 2u)], Groups(GetLog(fabric, admin, AnaLogPage.Size(2, false)), 2, false));
        fabric.ExecOk(io, NvmeCommands.Write(2, 0, 1), block);

        // A renewal moves the deadline: served again.
        fence.HoldUntil(Stopwatch.GetTimestamp() + 60 * Stopwatch.Frequency);
        fabric.ExecOk(io, NvmeCommands.Write(1, 0, 1), block);
        Assert.Equal([(1u, 1u, AnaState.Optimized, 1u), (2u, 1u, AnaState.Optimized, 2u)], Groups(GetLog(fabric, admin, AnaLogPage.Size(2, false)), 2, false));
    }

    [Fact]
    public void A_quiesce_for_a_drain_refuses_new_and_waiting_writes_with_the_path_status_and_completes_after_the_executing_ones()
    {
        var fabric = new Fabric();
        fabric.AddVolume(1);
        var (admin, io) = fabric.Controller();

        // One write that storage executes (held), one whose R2T'd data the host has not sent yet.
        io.HoldStorage = true;
        var executing = io.Submit(NvmeCommands.Write(1, 0, 1), Filled(512, 0xEE));
        fabric.Pump();
        Assert.Single(io.Held);
        var owed = new List<byte[]>();
        io.HostToTargetFilter = bytes =>
        {
            if (bytes[0] != (byte)PduType.H2CData) return bytes;
            owed.Add(bytes);
            return [];
        };
        var waiting = io.Submit(NvmeCommands.Write(1, 8, 64), Filled(64 * 512, 0xDD));
        fabric.Pump();
        Assert.NotEmpty(owed);

        var quiesced = fabric.Target.QuiesceAsync(1, AnaState.Inaccessible);
        fabric.Pump();
        Assert.False(quiesced.IsCompleted);
        Assert.Equal([(1u, 1u, AnaState.Inaccessible, 1u)], Groups(GetLog(fabric, admin, AnaLogPage.Size(1, false)), 1, false));

        // The owed data arrives: that write is refused with the path status (the host retries it on the new primary).
        io.HostToTargetFilter = null;
        foreach (var bytes in owed) io.Target.Receive(bytes, fabric.Now);
        fabric.Pump();
        var refused = Assert.Single(io.TakeCompletions());
        Assert.Same(waiting, refused);
        Assert.Equal(NvmeStatus.AsymmetricAccessInaccessible, refused.Completion.Status);
        io.Host.Release(refused);
        Assert.False(quiesced.IsCompleted);

        // Storage finishes the executing write (acknowledged: it is on every replica); only then is the quiesce done.
        io.CompleteHeld();
        io.HoldStorage = false;
        fabric.Pump();
        var done = Assert.Single(io.TakeCompletions());
        Assert.Same(executing, done);
        Assert.True(done.Completion.Status.IsSuccess);
        io.Host.Release(done);
        Assert.True(quiesced.IsCompletedSuccessfully);
        Assert.Equal(NvmeStatus.AsymmetricAccessInaccessible, fabric.Exec(io, NvmeCommands.Write(1, 0, 1), new byte[512]).Status);
        var volume = fabric.Storage.Volume(fabric.Target.GetNamespace(1)!.VolumeId);
        Assert.Equal(0xEE, volume[0]);
        Assert.Equal(0, volume[8 * 512]); // the refused write wrote nothing
    }

    private static byte[] Filled(int length, byte value)
    {
        var data = new byte[length];
        Array.Fill(data, value);
        return data;
    }

    [Fact]
    public void A_replica_applies_forwarded_writes_only_from_its_primary_whatever_its_own_fence_says()
    {
        const string Backend = "nqn.2026-11.io.duroslight:default.replication";
        var fabric = new Fabric(new TargetOptions { BackendNqn = Backend });
        var ns = fabric.AddVolume(1, fence: fabric.Target.Fence);
        fabric.Target.SetHostAccess(fabric.Target.Backend!, HostAccess.Only([Fabric.HostNqn]));
        var io = fabric.Io(fabric.Admin(Backend), subNqn: Backend);
        var block = new byte[512];

        // A secondary of the connected node: its forwarded writes apply, whatever this node's own fence says.
        fabric.Target.SetAnaState(1, AnaState.Inaccessible);
        fabric.Target.Fence.Close();
        ns.ForwardsOnlyFrom = Fabric.HostNqn;
        fabric.ExecOk(io, NvmeCommands.Write(1, 0, 1), block);

        // Another node is primary now (or this one is): the connected node was deposed, its late forwards are refused.
        ns.ForwardsOnlyFrom = "nqn.2026-11.io.duroslight:cluster:c:node-02";
        Assert.Equal(NvmeStatus.AsymmetricAccessInaccessible, fabric.Exec(io, NvmeCommands.Write(1, 0, 1), block).Status);
        Assert.Equal(NvmeStatus.AsymmetricAccessInaccessible, fabric.Exec(io, NvmeCommands.WriteZeroes(1, 0, 1)).Status);
    }

    [Fact]
    public void An_ANA_change_is_noticed_once_per_log_read_and_only_when_enabled()
    {
        var fabric = new Fabric();
        fabric.AddVolume(1);
        var quiet = fabric.Admin();
        quiet.Submit(NvmeCommands.AsyncEventRequest());
        var admin = fabric.Admin();
        fabric.ExecOk(admin, NvmeCommands.SetFeatures(FeatureId.AsyncEventConfiguration, NoticeAna));
        Assert.Equal(NoticeAna, (uint)fabric.ExecOk(admin, NvmeCommands.GetFeatures(FeatureId.AsyncEventConfiguration)).Result);
        admin.Submit(NvmeCommands.AsyncEventRequest());
        admin.Submit(NvmeCommands.AsyncEventRequest());

        fabric.Target.SetAnaState(1, AnaState.Inaccessible);
        fabric.Pump();
        Assert.Equal(AnaChangeDw0, Assert.Single(admin.TakeCompletions()).Completion.Result);
        Assert.Empty(quiet.TakeCompletions()); // notice not enabled there

        fabric.Target.SetAnaState(1, AnaState.Optimized);
        fabric.Pump();
        Assert.Empty(admin.TakeCompletions()); // held until the host reads the log with RAE=0
        GetLog(fabric, admin, AnaLogPage.Size(1, groupsOnly: false));
        fabric.Target.SetAnaState(1, AnaState.Inaccessible);
        fabric.Pump();
        Assert.Equal(AnaChangeDw0, Assert.Single(admin.TakeCompletions()).Completion.Result);
    }

    [Fact]
    public void Peer_listeners_join_the_discovery_log_and_a_change_notifies_discovery_controllers()
    {
        var fabric = new Fabric();
        fabric.AddVolume(); // the subsystem is listed to hosts that see a namespace in it
        fabric.Target.AddListener(new ListenerInfo("127.0.0.1", "4420", 1, IsDiscovery: false));
        var disc = fabric.Admin(TargetOptions.DiscoveryNqn);
        fabric.ExecOk(disc, NvmeCommands.SetFeatures(FeatureId.AsyncEventConfiguration, NoticeDiscovery));
        Assert.Single(AdminTests.ReadDiscoveryLog(fabric, disc).Entries);
        disc.Submit(NvmeCommands.AsyncEventRequest());

        ListenerInfo[] peers = [new("127.0.0.2", "4420", 3, false), new("127.0.0.3", "4421", 5, false)];
        Assert.True(fabric.Target.SetPeerListeners(peers));
        fabric.Pump();
        Assert.Single(disc.TakeCompletions());
        var log = AdminTests.ReadDiscoveryLog(fabric, disc);
        Assert.Equal([("127.0.0.1", "4420", 1), ("127.0.0.2", "4420", 3), ("127.0.0.3", "4421", 5)],
            log.Entries.Select(e => (e.TrAddr, e.TrSvcId, (int)e.PortId)));
        Assert.All(log.Entries, e => Assert.Equal(fabric.SubNqn, e.SubNqn));
        Assert.False(fabric.Target.SetPeerListeners([.. peers]));

        disc.Submit(NvmeCommands.AsyncEventRequest());
        Assert.True(fabric.Target.SetPeerListeners([peers[0]]));
        fabric.Pump();
        Assert.Single(disc.TakeCompletions());
        Assert.Equal(2, AdminTests.ReadDiscoveryLog(fabric, disc).Entries.Count);
    }

    private static byte[] GetLog(Fabric fabric, QueuePair admin, int length)
    {
        var page = new byte[length];
        fabric.ExecOk(admin, NvmeCommands.GetLogPage(LogPageId.AsymmetricNamespaceAccess, length), page);
        return page;
    }

    private static List<(uint Group, uint Count, AnaState State, uint Nsid)> Groups(byte[] log, int groups, bool groupsOnly)
    {
        var list = new List<(uint, uint, AnaState, uint)>();
        int off = AnaLogPage.HeaderSize;
        for (int i = 0; i < groups; i++)
        {
            uint grp = BinaryPrimitives.ReadUInt32LittleEndian(log.AsSpan(off));
            uint count = BinaryPrimitives.ReadUInt32LittleEndian(log.AsSpan(off + 4));
            var state = (AnaState)log[off + 16];
            off += AnaLogPage.DescriptorSize;
            uint nsid = 0;
            if (!groupsOnly)
            {
                nsid = BinaryPrimitives.ReadUInt32LittleEndian(log.AsSpan(off));
                off += 4;
            }
            list.Add((grp, count, state, nsid));
        }
        return list;
    }
}
