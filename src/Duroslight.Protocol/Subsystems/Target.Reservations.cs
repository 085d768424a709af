using Duroslight.Protocol.Engine;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Reservations;

namespace Duroslight.Protocol.Subsystems;

/// <summary>
/// Reservation commands (NVMe Base 2.0, 8.19) serialised per target: the rules are <see cref="ReservationState"/>'s;
/// here a new state is stored (PTPL), published to the I/O path, notified, and Preempt and Abort waits for the
/// preempted hosts' commands. A command that has to wait completes later through its queue
/// (<see cref="TargetConnection.PostCompletion"/>), so its shard never blocks.
/// </summary>
public sealed partial class Target
{
    /// <summary>
    /// Persist Through Power Loss: stores a namespace's reservation record (<see cref="ReservationCodec"/>) durably
    /// with its volume; the task completes once it is stored, or faults. Must not block the caller (a shard): run the
    /// write elsewhere. Null where nothing stores it: then PTPL cannot be set (RESCAP bit 0 clear). Set once before
    /// the target serves.
    /// </summary>
    public Func<NamespaceInfo, byte[], Task>? ReservationPersistence { get; set; }

    /// <summary>Whether PTPL can be set (RESCAP bit 0, Reservation Persistence feature changeable).</summary>
    public bool PtplCapable => ReservationPersistence is not null;

    /// <summary>
    /// Replaces a namespace's reservation state with one stored elsewhere (a cluster volume's record, read from etcd
    /// when this node becomes its primary). False while a change is being stored: the caller must not serve yet.
    /// </summary>
    public bool RestoreReservation(uint nsid, ReservationState state)
    {
        lock (_lock)
        {
            if (GetNamespace(nsid) is not { } ns || ns.ReservationBacklog is not null) return false;
            ns.SetReservation(state);
            return true;
        }
    }

    /// <summary>A reservation command: its rule, and the slot it completes.</summary>
    internal sealed record PendingReservation(Func<ReservationState, ReservationOutcome> Command, TargetConnection Queue, CommandSlot Slot)
    {
        public void Complete(NvmeStatus status) => Queue.PostCompletion(Slot, status);
    }

    /// <summary>
    /// Runs one reservation command on a namespace's state, after every earlier one. Returns its status, or null when
    /// the slot completes later (on <paramref name="queue"/>'s thread): its namespace's record is being stored, its
    /// own change is being stored, or it preempted and aborts other hosts' commands.
    /// </summary>
    internal NvmeStatus? Reserve(NamespaceInfo ns, Func<ReservationState, ReservationOutcome> command, TargetConnection queue, CommandSlot slot)
    {
        lock (_lock)
        {
            var pending = new PendingReservation(command, queue, slot);
            NvmeStatus? status = null;
            if (ns.ReservationBacklog is { } backlog) backlog.Enqueue(pending);
            else status = StartLocked(ns, pending);
            if (status is null) queue.Defer(slot);
            return status;
        }
    }

    /// <summary>Applies a command now, or starts storing its change (PTPL); null when it completes later.</summary>
    private NvmeStatus? StartLocked(NamespaceInfo ns, PendingReservation pending)
    {
        var before = ns.Reservation;
        var outcome = pending.Command(before);
        if (ReferenceEquals(outcome.State, before)) return ApplyLocked(ns, pending, outcome);
        // PTPL (8.19), or a shared record: the stored record changes before the command completes or anything is published.
        bool store = ns.ReservationShared || before.Ptpl || outcome.State.Ptpl;
        if (!store) return ApplyLocked(ns, pending, outcome);
        if (ReservationPersistence is not { } persist) return outcome.State.Ptpl || ns.ReservationShared ? NvmeStatus.InternalError : ApplyLocked(ns, pending, outcome);
        ns.ReservationBacklog = new Queue<PendingReservation>();
        Task stored;
        try
        {
            stored = persist(ns, ReservationCodec.Serialize(outcome.State));
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or UnauthorizedAccessException)
        {
            stored = Task.FromException(e);
        }
        stored.ContinueWith(t => OnStored(ns, pending, outcome, t.IsCompletedSuccessfully), CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        return null;
    }

    /// <summary>
    /// The record is stored (or not: Internal Error, and nothing changes); then the commands that waited meanwhile
    /// run in order, until one stores again. Any thread.
    /// </summary>
    private void OnStored(NamespaceInfo ns, PendingReservation pending, ReservationOutcome outcome, bool stored)
    {
        lock (_lock)
        {
            var status = stored ? ApplyLocked(ns, pending, outcome) : NvmeStatus.InternalError;
            if (status is { } s) pending.Complete(s);
            var backlog = ns.ReservationBacklog!;
            ns.ReservationBacklog = null;
            while (backlog.TryDequeue(out var next))
            {
                if (ns.ReservationBacklog is { } storing) storing.Enqueue(next);
                else if (StartLocked(ns, next) is { } nextStatus) next.Complete(nextStatus);
            }
        }
    }

    /// <summary>Publishes the new state and notifies; null when Preempt and Abort completes later.</summary>
    private NvmeStatus? ApplyLocked(NamespaceInfo ns, PendingReservation pending, ReservationOutcome outcome)
    {
        ns.SetReservation(outcome.State);
        // 8.19 "Reservation Notifications": every controller of the notified host that sees the namespace.
        foreach (var notice in outcome.Notices)
            foreach (var c in _controllers.Values)
                if (!c.IsDiscovery && c.ReservationHost == notice.Host && ns.IsVisibleTo(c.HostNqn)
                    && c.ReservationLog.Add(ns.Nsid, notice.Type, c.ReservationLog.MaskOf(ns.Nsid)))
                    c.PostEvent(AsyncEvent.ReservationLogAvailable);
        if (outcome.Preempted.Length == 0) return outcome.Status;
        AbortPreemptedLocked(ns, outcome.Preempted, () => pending.Complete(outcome.Status));
        return null;
    }

    /// <summary>
    /// Preempt and Abort: every I/O queue of the preempted hosts' controllers aborts its commands to the namespace on
    /// its own thread (<see cref="TargetConnection.PostAbort"/>); <paramref name="done"/> runs once all have and the
    /// commands storage already had are finished.
    /// </summary>
    private void AbortPreemptedLocked(NamespaceInfo ns, UInt128[] preempted, Action done)
    {
        var fence = new AbortFence(done);
        foreach (var c in _controllers.Values)
        {
            if (c.IsDiscovery || Array.IndexOf(preempted, c.ReservationHost) < 0) continue;
            foreach (var queue in c.IoQueues())
            {
                fence.Hold();
                if (!queue.PostAbort(ns, fence, NvmeStatus.AbortedPreemptAndAbort)) fence.Signal();
            }
        }
        fence.Signal();
    }
}
