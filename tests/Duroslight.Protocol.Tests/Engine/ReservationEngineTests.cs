using System.Buffers.Binary;
using Duroslight.Host;
using Duroslight.Protocol.Engine;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Reservations;
using Duroslight.Protocol.Wire;
using Xunit;

namespace Duroslight.Protocol.Tests.Engine;

/// <summary>
/// The Reservation commands through the engine in memory, from two hosts (two host IDs, two controllers): Register,
/// Acquire, Report, a write refused with Reservation Conflict (SCT 0, SC 83h), preempt, release, and the Identify bits.
/// </summary>
public sealed class ReservationEngineTests
{
    private const string HostA = "nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-0000-0000-00000000000a";
    private const string HostB = "nqn.2014-08.org.nvmexpress:uuid:bbbbbbbb-0000-0000-0000-00000000000b";
    private static readonly Guid IdA = Guid.Parse("aaaaaaaa-1111-2222-3333-444444444444");
    private static readonly Guid IdB = Guid.Parse("bbbbbbbb-1111-2222-3333-444444444444");

    private static QueuePair IoQueueOf(Fabric f, string hostNqn, Guid hostId) => ControllerOf(f, hostNqn, hostId).Io;

    private static (QueuePair Admin, QueuePair Io) ControllerOf(Fabric f, string hostNqn, Guid hostId)
    {
        var (admin, cqe) = f.Connect(0, ConnectData.DynamicCntlid, null, hostNqn, hostId: hostId);
        Assert.True(cqe.Status.IsSuccess, cqe.Status.ToString());
        f.ExecOk(admin, NvmeCommands.PropertySet(PropertyOffset.Cc, Fabric.CcEnable));
        var (io, ioCqe) = f.Connect(1, admin.Cntlid, null, hostNqn, hostId: hostId);
        Assert.True(ioCqe.Status.IsSuccess, ioCqe.Status.ToString());
        return (admin, io);
    }

    private static byte[] Keys(ulong first, ulong second = 0)
    {
        var data = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(data, first);
        BinaryPrimitives.WriteUInt64LittleEndian(data.AsSpan(8), second);
        return data;
    }

    private static NvmeCommand Register(RegisterAction action, PtplChange ptpl = PtplChange.NoChange) =>
        new(IoOpcode.ReservationRegister, 1, (uint)action | ((uint)ptpl << 30));

    private static NvmeCommand Acquire(AcquireAction action, ReservationType type) =>
        new(IoOpcode.ReservationAcquire, 1, (uint)action | ((uint)type << 8));

    private static NvmeCommand Release(ReleaseAction action, ReservationType type) =>
        new(IoOpcode.ReservationRelease, 1, (uint)action | ((uint)type << 8));

    private static NvmeCommand Report(int bytes, bool extended = true) =>
        new(IoOpcode.ReservationReport, 1, (uint)(bytes / 4) - 1, extended ? 1u : 0);

    [Fact]
    public void Two_hosts_register_one_holds_write_exclusive_and_the_other_hosts_write_conflicts()
    {
        var f = new Fabric();
        f.AddVolume();
        var a = IoQueueOf(f, HostA, IdA);
        var b = IoQueueOf(f, HostB, IdB);

        f.ExecOk(a, Register(RegisterAction.Register), Keys(0, 0xA));
        f.ExecOk(b, Register(RegisterAction.Register), Keys(0, 0xB));
        Assert.Equal(NvmeStatus.ReservationConflict, f.Exec(b, Register(RegisterAction.Register), Keys(0, 0xC)).Status);
        f.ExecOk(a, Acquire(AcquireAction.Acquire, ReservationType.WriteExclusive), Keys(0xA));

        // B reads but may not write; A writes.
        f.ExecOk(b, NvmeCommands.Read(1, 0, 1), new byte[512]);
        var refused = f.Exec(b, NvmeCommands.Write(1, 0, 1), new byte[512]);
        Assert.Equal(StatusCodeType.Generic, refused.Status.Sct);
        Assert.Equal(0x83, refused.Status.Sc);
        Assert.Equal(NvmeStatus.ReservationConflict, f.Exec(b, NvmeCommands.WriteZeroes(1, 0, 1)).Status);
        f.ExecOk(a, NvmeCommands.Write(1, 0, 1), new byte[512]);

        // Report (extended): both registrants with their 128-bit host IDs, A holding.
        var page = new byte[3 * 64];
        f.ExecOk(b, Report(page.Length), page);
        Assert.Equal((byte)ReservationType.WriteExclusive, page[4]);
        Assert.Equal(2, BinaryPrimitives.ReadUInt16LittleEndian(page.AsSpan(5)));
        var holders = new Dictionary<UInt128, (byte Rcsts, ulong Key)>();
        for (int i = 1; i <= 2; i++)
            holders[BinaryPrimitives.ReadUInt128LittleEndian(page.AsSpan(i * 64 + 16))] = (page[i * 64 + 2], BinaryPrimitives.ReadUInt64LittleEndian(page.AsSpan(i * 64 + 8)));
        Assert.Equal(((byte)1, 0xAul), holders[ReservationCommands.HostOf(IdA)]);
        Assert.Contains(new[] { 1, 2 }, i => page.AsSpan(i * 64 + 16, 16).SequenceEqual(IdA.ToByteArray(bigEndian: true))); // the host's HOSTID bytes
        Assert.Equal(((byte)0, 0xBul), holders[ReservationCommands.HostOf(IdB)]);
        Assert.Equal(NvmeStatus.HostIdentifierInconsistentFormat, f.Exec(b, Report(64, extended: false), new byte[64]).Status);

        // B preempts A: B holds, A is unregistered and now conflicts on writes.
        f.ExecOk(b, Acquire(AcquireAction.Preempt, ReservationType.WriteExclusive), Keys(0xB, 0xA));
        f.ExecOk(b, NvmeCommands.Write(1, 0, 1), new byte[512]);
        Assert.Equal(NvmeStatus.ReservationConflict, f.Exec(a, NvmeCommands.Write(1, 0, 1), new byte[512]).Status);

        // Release ends it: A writes again.
        f.ExecOk(b, Release(ReleaseAction.Release, ReservationType.WriteExclusive), Keys(0xB));
        f.ExecOk(a, NvmeCommands.Write(1, 0, 1), new byte[512]);
        Assert.Equal(NvmeStatus.InvalidField, f.Exec(a, Register(RegisterAction.Register, PtplChange.Set), Keys(0, 0xA)).Status);
    }

    [Fact]
    public void A_preempted_host_gets_the_reservation_log_page_and_its_aen_unless_masked()
    {
        var f = new Fabric();
        f.AddVolume();
        var (adminA, a) = ControllerOf(f, HostA, IdA);
        var (adminB, b) = ControllerOf(f, HostB, IdB);
        var (adminC, c) = ControllerOf(f, "nqn.2014-08.org.nvmexpress:uuid:cccccccc-0000-0000-0000-00000000000c", Guid.Parse("cccccccc-1111-2222-3333-444444444444"));
        var aer = adminA.Submit(NvmeCommands.AsyncEventRequest());
        f.Pump();
        f.ExecOk(a, Register(RegisterAction.Register), Keys(0, 0xA));
        f.ExecOk(b, Register(RegisterAction.Register), Keys(0, 0xB));
        f.ExecOk(c, Register(RegisterAction.Register), Keys(0, 0xC));
        f.ExecOk(adminC, NvmeCommands.SetFeatures(0x82, 1u << 1) with { Nsid = 1 }); // C masks Registration Preempted
        Assert.Equal(1u << 1, (uint)f.ExecOk(adminC, NvmeCommands.GetFeatures(0x82) with { Nsid = 1 }).Result);
        f.ExecOk(a, Acquire(AcquireAction.Acquire, ReservationType.ExclusiveAccess), Keys(0xA));

        // B clears: A and C were preempted (Reservation Preempted, type 3); then B registers again and C is preempted by key.
        f.ExecOk(b, Release(ReleaseAction.Clear, ReservationType.ExclusiveAccess), Keys(0xB));
        var done = Assert.Single(adminA.TakeCompletions());
        Assert.Same(aer, done);
        Assert.Equal(0x0080_0006u, (uint)done.Completion.Result); // I/O command specific, log page 80h
        var entry = new byte[64];
        f.ExecOk(adminA, NvmeCommands.GetLogPage(0x80, 64), entry);
        Assert.Equal(1ul, BinaryPrimitives.ReadUInt64LittleEndian(entry));
        Assert.Equal((byte)ReservationNoticeType.ReservationPreempted, entry[8]);
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(entry.AsSpan(12)));
        f.ExecOk(adminA, NvmeCommands.GetLogPage(0x80, 64), entry);
        Assert.Equal(0, entry[8]); // empty once read
        f.ExecOk(adminC, NvmeCommands.GetLogPage(0x80, 64), entry);
        Assert.Equal((byte)ReservationNoticeType.ReservationPreempted, entry[8]); // not masked

        f.ExecOk(b, Register(RegisterAction.Register), Keys(0, 0xB));
        f.ExecOk(c, Register(RegisterAction.Register), Keys(0, 0xC));
        f.ExecOk(b, Acquire(AcquireAction.Preempt, ReservationType.WriteExclusive), Keys(0xB, 0xC));
        f.ExecOk(adminC, NvmeCommands.GetLogPage(0x80, 64), entry);
        Assert.Equal(0, entry[8]); // Registration Preempted is masked for C
    }

    [Fact]
    public void Identify_advertises_reservations_and_a_masked_namespace_refuses_them()
    {
        var f = new Fabric();
        f.AddVolume();
        var (admin, io) = f.Controller();
        var ctrl = new byte[4096];
        f.ExecOk(admin, NvmeCommands.Identify(IdentifyCns.Controller), ctrl);
        Assert.NotEqual(0, BinaryPrimitives.ReadUInt16LittleEndian(ctrl.AsSpan(520)) & IdentifyPages.OncsReservations);
        var ns = new byte[4096];
        f.ExecOk(admin, NvmeCommands.Identify(IdentifyCns.Namespace, 1), ns);
        Assert.Equal(IdentifyPages.Rescap, ns[31]);
        f.Target.SetNamespaceHosts(1, Duroslight.Protocol.Subsystems.HostAccess.Only(["nqn.other"]));
        Assert.Equal(NvmeStatus.InvalidNamespaceOrFormat, f.Exec(io, Register(RegisterAction.Register), Keys(0, 1)).Status);
        Assert.Equal(NvmeStatus.InvalidNamespaceOrFormat, f.Exec(io, NvmeCommands.Read(1, 0, 1), new byte[512]).Status);
        Assert.Empty(ActiveNamespaces(f, admin));
    }

    private static NvmeCommand SetPersistence(bool ptpl) => new(AdminOpcode.SetFeatures, 1, 0x83, ptpl ? 1u : 0u);

    private static NvmeCommand GetPersistence(uint select = 0) => new(AdminOpcode.GetFeatures, 1, 0x83 | (select << 8));

    private static (int Count, byte Type, Dictionary<UInt128, (byte Rcsts, ulong Key)> Entries) ReportOf(Fabric f, QueuePair q)
    {
        var page = new byte[4 * 64];
        f.ExecOk(q, Report(page.Length), page);
        var entries = new Dictionary<UInt128, (byte, ulong)>();
        int count = BinaryPrimitives.ReadUInt16LittleEndian(page.AsSpan(5));
        for (int i = 1; i <= count; i++)
            entries[BinaryPrimitives.ReadUInt128LittleEndian(page.AsSpan(i * 64 + 16))] = (page[i * 64 + 2], BinaryPrimitives.ReadUInt64LittleEndian(page.AsSpan(i * 64 + 8)));
        return (count, page[4], entries);
    }

    [Fact]
    public void Without_a_store_ptpl_cannot_be_set_and_rescap_does_not_claim_it()
    {
        var f = new Fabric();
        f.AddVolume();
        var (admin, io) = ControllerOf(f, HostA, IdA);
        var ns = new byte[4096];
        f.ExecOk(admin, NvmeCommands.Identify(IdentifyCns.Namespace, 1), ns);
        Assert.Equal(0, ns[31] & IdentifyPages.RescapPtpl);
        Assert.Equal(NvmeStatus.InvalidField, f.Exec(admin, SetPersistence(true)).Status);
        Assert.Equal(NvmeStatus.InvalidField, f.Exec(io, Register(RegisterAction.Register, PtplChange.Set), Keys(0, 0xA)).Status);
        Assert.Equal(2ul, f.Exec(admin, GetPersistence(select: 3)).Result); // namespace specific, not changeable
        f.ExecOk(admin, SetPersistence(false));
        Assert.Equal(0ul, f.Exec(admin, GetPersistence()).Result);
    }

    [Fact]
    public void With_ptpl_every_change_is_stored_before_completion_and_a_restart_restores_it()
    {
        var f = new Fabric();
        var volume = f.AddVolume();
        var stored = new List<byte[]>();
        f.Target.ReservationPersistence = (n, record) =>
        {
            Assert.Same(volume, n);
            stored.Add(record);
            return Task.CompletedTask;
        };
        var (adminA, a) = ControllerOf(f, HostA, IdA);
        var b = IoQueueOf(f, HostB, IdB);
        var ns = new byte[4096];
        f.ExecOk(adminA, NvmeCommands.Identify(IdentifyCns.Namespace, 1), ns);
        Assert.Equal(IdentifyPages.Rescap | IdentifyPages.RescapPtpl, ns[31]);
        Assert.Equal(6ul, f.Exec(adminA, GetPersistence(select: 3)).Result);

        // Without PTPL nothing is stored; CPTPL = 10b sets it and stores the record in the same command.
        f.ExecOk(b, Register(RegisterAction.Register), Keys(0, 0xB));
        Assert.Empty(stored);
        f.ExecOk(a, Register(RegisterAction.Register, PtplChange.Set), Keys(0, 0xA));
        Assert.Single(stored);
        Assert.Equal(1ul, f.Exec(adminA, GetPersistence()).Result);
        f.ExecOk(a, Acquire(AcquireAction.Acquire, ReservationType.WriteExclusive), Keys(0xA));
        Assert.Equal(2, stored.Count);

        // A refused store fails the command and changes nothing.
        f.Target.ReservationPersistence = (_, _) => Task.FromException(new IOException("disk gone"));
        Assert.Equal(NvmeStatus.InternalError, f.Exec(b, Register(RegisterAction.Unregister), Keys(0xB)).Status);
        Assert.Equal(2, ReportOf(f, b).Count);

        // The restart: the last record restores registrants, holder and type.
        var restarted = new Fabric();
        restarted.AddVolume(reservation: ReservationCodec.Deserialize(stored[^1]).AfterPowerLoss());
        var (admin2, a2) = ControllerOf(restarted, HostA, IdA);
        var b2 = IoQueueOf(restarted, HostB, IdB);
        var report = ReportOf(restarted, b2);
        Assert.Equal(2, report.Count);
        Assert.Equal((byte)ReservationType.WriteExclusive, report.Type);
        Assert.Equal(((byte)1, 0xAul), report.Entries[ReservationCommands.HostOf(IdA)]);
        Assert.Equal(((byte)0, 0xBul), report.Entries[ReservationCommands.HostOf(IdB)]);
        Assert.Equal(NvmeStatus.ReservationConflict, restarted.Exec(b2, NvmeCommands.Write(1, 0, 1), new byte[512]).Status);
        restarted.ExecOk(a2, NvmeCommands.Write(1, 0, 1), new byte[512]);
        Assert.Equal(1ul, restarted.Exec(admin2, GetPersistence()).Result);

        // Set Features 83h clears PTPL (stored too): the next restart starts empty.
        f.Target.ReservationPersistence = (_, record) =>
        {
            stored.Add(record);
            return Task.CompletedTask;
        };
        f.ExecOk(adminA, SetPersistence(false));
        Assert.Equal(3, stored.Count);
        Assert.Same(ReservationState.Empty, ReservationCodec.Deserialize(stored[^1]).AfterPowerLoss());
        Assert.Equal(0ul, f.Exec(adminA, GetPersistence()).Result);
        f.ExecOk(b, Register(RegisterAction.Unregister), Keys(0xB));
        Assert.Equal(3, stored.Count); // PTPL clear: no store
    }

    [Fact]
    public void A_shared_namespace_stores_every_change_before_it_applies_and_takes_a_restored_state_whole()
    {
        var f = new Fabric();
        f.AddVolume(sharedReservation: true);
        var (_, a) = ControllerOf(f, HostA, IdA);
        var b = IoQueueOf(f, HostB, IdB);
        // No store to write to: a change cannot be made shared, so it fails and changes nothing.
        Assert.Equal(NvmeStatus.InternalError, f.Exec(a, Register(RegisterAction.Register), Keys(0, 0xA)).Status);
        Assert.Equal(0, ReportOf(f, b).Count);

        var stored = new List<byte[]>();
        f.Target.ReservationPersistence = (_, record) =>
        {
            stored.Add(record);
            return Task.CompletedTask;
        };
        // PTPL clear, and still every change is stored (the cluster's record), in order.
        f.ExecOk(a, Register(RegisterAction.Register), Keys(0, 0xA));
        f.ExecOk(b, Register(RegisterAction.Register), Keys(0, 0xB));
        f.ExecOk(a, Acquire(AcquireAction.Acquire, ReservationType.WriteExclusive), Keys(0xA));
        Assert.Equal(3, stored.Count);
        Assert.Equal(2, ReservationCodec.Deserialize(stored[^1]).Registrants.Count);
        Assert.Equal(NvmeStatus.ReservationConflict, f.Exec(b, NvmeCommands.Write(1, 0, 1), new byte[512]).Status);
        // A refused store fails the command and changes nothing.
        f.Target.ReservationPersistence = (_, _) => Task.FromException(new IOException("etcd gone"));
        Assert.Equal(NvmeStatus.InternalError, f.Exec(a, Release(ReleaseAction.Release, ReservationType.WriteExclusive), Keys(0xA)).Status);
        Assert.Equal(NvmeStatus.ReservationConflict, f.Exec(b, NvmeCommands.Write(1, 0, 1), new byte[512]).Status);

        // The record another primary stored replaces this node's state whole (this node becomes primary).
        Assert.True(f.Target.RestoreReservation(1, ReservationCodec.Deserialize(stored[0])));
        var report = ReportOf(f, b);
        Assert.Equal(1, report.Count);
        Assert.Equal(0, report.Type);
        f.ExecOk(b, NvmeCommands.Write(1, 0, 1), new byte[512]);
        Assert.False(f.Target.RestoreReservation(9, ReservationState.Empty)); // no such namespace
    }

    [Fact]
    public void A_ptpl_change_completes_once_stored_while_the_queue_serves_other_commands_and_a_failed_store_changes_nothing()
    {
        var f = new Fabric();
        f.AddVolume();
        var stores = new Queue<TaskCompletionSource>();
        f.Target.ReservationPersistence = (_, _) =>
        {
            var store = new TaskCompletionSource();
            stores.Enqueue(store);
            return store.Task;
        };
        var a = IoQueueOf(f, HostA, IdA);
        var b = IoQueueOf(f, HostB, IdB);

        var register = a.Submit(Register(RegisterAction.Register, PtplChange.Set), Keys(0, 0xA));
        f.Pump();
        Assert.Single(stores);
        Assert.Empty(a.TakeCompletions());
        // Not durable yet: not published, and the other queue keeps going; a second reservation command waits its turn.
        Assert.Equal(0, ReportOf(f, b).Count);
        f.ExecOk(b, NvmeCommands.Write(1, 0, 1), new byte[512]);
        var second = b.Submit(Register(RegisterAction.Register), Keys(0, 0xB));
        f.Pump();
        Assert.Empty(b.TakeCompletions());
        Assert.Single(stores);

        stores.Dequeue().SetResult();
        f.Pump();
        Assert.True(Single(a, register).Status.IsSuccess);
        Assert.Equal(1, ReportOf(f, a).Count);
        // Then B's Register ran: PTPL is set now, so its change is stored in turn, and that store fails.
        Assert.Empty(b.TakeCompletions());
        stores.Dequeue().SetException(new IOException("disk gone"));
        f.Pump();
        Assert.Equal(NvmeStatus.InternalError, Single(b, second).Status);
        var report = ReportOf(f, b);
        Assert.Equal(1, report.Count);
        Assert.False(report.Entries.ContainsKey(ReservationCommands.HostOf(IdB)));
    }

    [Fact]
    public void Preempt_and_abort_aborts_the_preempted_hosts_waiting_commands_and_completes_after_its_executing_ones()
    {
        var f = new Fabric();
        f.AddVolume();
        var a = IoQueueOf(f, HostA, IdA);
        var b = IoQueueOf(f, HostB, IdB);
        f.ExecOk(a, Register(RegisterAction.Register), Keys(0, 0xA));
        f.ExecOk(b, Register(RegisterAction.Register), Keys(0, 0xB));
        f.ExecOk(b, Acquire(AcquireAction.Acquire, ReservationType.ExclusiveAccess), Keys(0xB));

        // B: one write that storage executes (held), one write whose R2T'd data the host has not sent yet.
        b.HoldStorage = true;
        var executing = b.Submit(NvmeCommands.Write(1, 0, 1), Filled(512, 0xEE));
        f.Pump();
        Assert.Single(b.Held);
        var owed = new List<byte[]>();
        b.HostToTargetFilter = bytes =>
        {
            if (bytes[0] != (byte)PduType.H2CData) return bytes;
            owed.Add(bytes);
            return [];
        };
        var waiting = b.Submit(NvmeCommands.Write(1, 8, 64), Filled(64 * 512, 0xDD));
        f.Pump();
        Assert.NotEmpty(owed);

        var acquire = a.Submit(Acquire(AcquireAction.PreemptAndAbort, ReservationType.ExclusiveAccess), Keys(0xA, 0xB));
        f.Pump();
        Assert.Empty(a.TakeCompletions());

        // The owed data arrives: that write ends aborted, and storage never sees it.
        b.HostToTargetFilter = null;
        foreach (var bytes in owed) b.Target.Receive(bytes, f.Now);
        f.Pump();
        Assert.Equal(NvmeStatus.AbortedPreemptAndAbort, Single(b, waiting).Status);
        Assert.Single(b.Held);
        Assert.Empty(a.TakeCompletions());

        // Storage finishes the executing write (its own status); only then does the Acquire complete.
        b.CompleteHeld();
        f.Pump();
        Assert.True(Single(b, executing).Status.IsSuccess);
        Assert.True(Single(a, acquire).Status.IsSuccess);
        b.HoldStorage = false;
        Assert.Equal(NvmeStatus.ReservationConflict, f.Exec(b, NvmeCommands.Read(1, 0, 1), new byte[512]).Status);
        var volume = f.Storage.Volume(f.Target.GetNamespace(1)!.VolumeId);
        Assert.Equal(0xEE, volume[0]);
        Assert.Equal(0, volume[8 * 512]); // the aborted write wrote nothing
    }

    [Fact]
    public void Preempt_without_abort_does_not_wait_for_the_preempted_hosts_commands()
    {
        var f = new Fabric();
        f.AddVolume();
        var a = IoQueueOf(f, HostA, IdA);
        var b = IoQueueOf(f, HostB, IdB);
        f.ExecOk(a, Register(RegisterAction.Register), Keys(0, 0xA));
        f.ExecOk(b, Register(RegisterAction.Register), Keys(0, 0xB));
        f.ExecOk(b, Acquire(AcquireAction.Acquire, ReservationType.ExclusiveAccess), Keys(0xB));
        b.HoldStorage = true;
        var executing = b.Submit(NvmeCommands.Write(1, 0, 1), new byte[512]);
        f.Pump();

        f.ExecOk(a, Acquire(AcquireAction.Preempt, ReservationType.ExclusiveAccess), Keys(0xA, 0xB));
        Assert.Single(b.Held);
        b.CompleteHeld();
        f.Pump();
        Assert.True(Single(b, executing).Status.IsSuccess);
    }

    [Fact]
    public void Preempt_and_abort_ends_a_write_waiting_for_the_shard_budget_and_one_owing_r2t_data()
    {
        var f = new Fabric();
        f.AddVolume();
        var a = IoQueueOf(f, HostA, IdA);
        // Host B: the default host ID, one I/O queue driven PDU by PDU, with a shard budget of one 4 KiB write.
        var adminB = f.Admin();
        var b = new RawTarget(f, budget: new HostDataBudget(4096));
        Assert.True(b.Handshake(1, adminB.Cntlid).Status.IsSuccess);
        var hostB = ReservationCommands.HostOf(HostIds.Default);
        Assert.True(Assert.Single(b.Send(RawPdus.Capsule(Register(RegisterAction.Register), 1, Keys(0, 0xB)))).Cqe.Status.IsSuccess);
        f.ExecOk(a, Register(RegisterAction.Register), Keys(0, 0xA));

        var r2t = Assert.Single(b.Send(RawPdus.Capsule(NvmeCommands.Write(1, 0, 8), 2, sglLength: 4096)));
        Assert.Equal(PduType.R2T, r2t.Type);
        Assert.Empty(b.Send(RawPdus.Capsule(NvmeCommands.Write(1, 8, 8), 3, sglLength: 4096))); // waits for the budget

        var acquire = a.Submit(Acquire(AcquireAction.PreemptAndAbort, ReservationType.ExclusiveAccess), Keys(0xA, 0xB));
        f.Pump();
        var aborted = Assert.Single(b.Drain());
        Assert.Equal((ushort)3, aborted.Cqe.CommandId);
        Assert.Equal(NvmeStatus.AbortedPreemptAndAbort, aborted.Cqe.Status);
        f.Pump();
        Assert.True(Single(a, acquire).Status.IsSuccess); // nothing of B's was executing
        Assert.False(f.Target.GetNamespace(1)!.Reservation.IsRegistrant(hostB));

        var late = Assert.Single(b.Send(RawPdus.H2CData(2, r2t.Ttag, 0, Filled(4096, 0xBB))));
        Assert.Equal(NvmeStatus.AbortedPreemptAndAbort, late.Cqe.Status);
        Assert.Empty(f.Storage.Log);
    }

    private static byte[] Filled(int length, byte value)
    {
        var data = new byte[length];
        Array.Fill(data, value);
        return data;
    }

    /// <summary>The one completion <paramref name="q"/> has, which must be <paramref name="expected"/>'s.</summary>
    private static CompletionEntry Single(QueuePair q, HostCommand expected)
    {
        var done = Assert.Single(q.TakeCompletions());
        Assert.Same(expected, done);
        var cqe = done.Completion;
        q.Host.Release(done);
        return cqe;
    }

    private static List<uint> ActiveNamespaces(Fabric f, QueuePair admin)
    {
        var page = new byte[4096];
        f.ExecOk(admin, NvmeCommands.Identify(IdentifyCns.ActiveNamespaceList), page);
        var ids = new List<uint>();
        for (int i = 0; i < 1024 && BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(i * 4)) != 0; i++) ids.Add(BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(i * 4)));
        return ids;
    }
}
