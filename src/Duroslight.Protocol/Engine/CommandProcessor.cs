using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;

namespace Duroslight.Protocol.Engine;

/// <summary>
/// The controller command layer of one queue, as SPDK's ctrlr.c and ctrlr_bdev.c are to its tcp.c: the queue
/// transport (<see cref="TargetConnection"/>) hands it each <see cref="CommandSlot"/> twice, to
/// <see cref="Check"/> once the capsule is in (before any data is fetched) and to <see cref="Run"/> once the data
/// is in, and it answers with an NVMe status (or completes the slot later through the transport). It knows NVMe
/// commands and the controller, nothing about PDUs. Each command is validated once, in <see cref="Check"/>; the
/// decoded result waits in the slot for <see cref="Run"/>.
/// </summary>
internal sealed class CommandProcessor
{
    private readonly Target _target;
    private readonly TargetConnection _queue;
    private readonly TargetOptions _options;
    private readonly FabricsCommands _fabrics;
    private readonly AdminCommands _admin;
    private readonly IoCommands _io;

    public CommandProcessor(Target target, TargetConnection queue)
    {
        _target = target;
        _queue = queue;
        _options = target.Options;
        _fabrics = new FabricsCommands(target, queue);
        _admin = new AdminCommands(target, queue);
        _io = new IoCommands(target, queue);
    }

    /// <summary>The controller this queue belongs to, once a Connect succeeded.</summary>
    public Controller? Controller { get; private set; }

    /// <summary>AERs parked on this (admin) queue: not commands the host waits on.</summary>
    public int ParkedAers => _queue.QueueId == 0 && Controller is { } c ? c.ParkedAerCount : 0;

    /// <summary>
    /// The one validation of a command, before its data moves (bad commands move no bytes): the queue's state,
    /// the transfer bound and, for I/O, the opcode's fields and the namespace gate. What it decodes (namespace,
    /// storage request) is kept in the slot for <see cref="Run"/>. <paramref name="fetchesData"/>: the transport will
    /// ask the host for the command's data (R2T) once this passes.
    /// </summary>
    public NvmeStatus Check(CommandSlot slot, bool fetchesData)
    {
        var cmd = slot.Command;
        if (cmd.Opcode == AdminOpcode.Fabrics) return fetchesData ? CheckTransferBound(cmd) : NvmeStatus.Success;
        // Before Connect (or CC.EN) only fabrics commands run.
        if (Controller is not { IsReady: true } ctrl) return NvmeStatus.CommandSequenceError;
        if (_queue.QueueId == 0) return fetchesData ? CheckTransferBound(cmd) : NvmeStatus.Success;
        return _io.Check(slot, ctrl, fetchesData);
    }

    private NvmeStatus CheckTransferBound(in SubmissionEntry cmd) =>
        cmd.SglLength > _options.MaxTransferBytes ? NvmeStatus.DataSglLengthInvalid : NvmeStatus.Success;

    /// <summary>
    /// Runs a checked command whose data is in. Returns its status, or null when the slot completes later (a
    /// storage request, a parked AER) or was completed here (Disconnect, which also closes the queue).
    /// </summary>
    public NvmeStatus? Run(CommandSlot slot, out ulong result)
    {
        result = 0;
        var cmd = slot.Command;
        if (cmd.Opcode == AdminOpcode.Fabrics) return RunFabrics(slot, out result);
        // Check ran on this slot, but the controller may have been reset (CC.EN = 0) while its data arrived.
        var ctrl = Controller;
        if (ctrl is not { IsReady: true }) return NvmeStatus.CommandSequenceError;
        return _queue.QueueId == 0 ? _admin.Run(slot, ctrl, out result) : _io.Run(slot, ctrl);
    }

    private NvmeStatus? RunFabrics(CommandSlot slot, out ulong result)
    {
        var status = _fabrics.Run(slot, Controller, out result, out var connected, out bool disconnect);
        if (connected is not null) Controller = connected;
        if (!disconnect) return status;
        // The response goes into the output first: the driver sends it, then closes the socket.
        _queue.Complete(slot, status, result);
        _queue.Close();
        return null;
    }

    /// <summary>Timers and cross-thread work for the controller; false when the queue must close.</summary>
    public bool Poll(long nowMs)
    {
        var ctrl = Controller;
        if (ctrl is null) return true;
        if (ctrl.IsDead) return false;
        if (_queue.QueueId != 0) return true;
        if (ctrl.KeepAliveExpired(nowMs)) return false;
        ctrl.DeliverEvents();
        return true;
    }

    /// <summary>A command arrived: traffic keeps the controller alive.</summary>
    public void OnCommandArrived(long nowMs) => Controller?.Touch(nowMs);

    /// <summary>The host reused the CID of a parked AER: it no longer waits for it.</summary>
    public void RetireAer(CommandSlot slot) => Controller?.RetireAer(slot);

    /// <summary>The queue closed: the admin queue takes its controller down, an I/O queue leaves it.</summary>
    public void OnQueueClosed()
    {
        var ctrl = Controller;
        if (ctrl is null) return;
        if (_queue.QueueId != 0)
        {
            ctrl.Detach(_queue);
            return;
        }
        ctrl.DropParkedAers();
        _target.DestroyController(ctrl);
    }
}
