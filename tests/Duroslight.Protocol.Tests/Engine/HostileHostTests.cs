using Duroslight.Host;
using Duroslight.Protocol.Engine;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;
using Duroslight.Protocol.Wire;
using Xunit;

namespace Duroslight.Protocol.Tests.Engine;

/// <summary>
/// Hosts that owe bytes and never send them (R2T'd data, the rest of a PDU, ICReq/Connect after accept): the
/// connection closes after <see cref="TargetOptions.HostDataTimeoutMs"/> without input and gives its buffers back;
/// a queue that owes nothing is left alone. Time is the engine's injected clock, so nothing here depends on speed.
/// </summary>
public class HostileHostTests
{
    private const int Timeout = 5_000;

    [Fact]
    public void Write_whose_R2T_data_never_comes_is_dropped_after_the_timeout_and_its_buffer_returned()
    {
        var (fabric, raw, pool) = ConnectedIoQueue();
        var r2t = Assert.Single(raw.Send(RawPdus.Capsule(NvmeCommands.Write(1, 0, 32), 5, sglLength: 32 * 512)));
        Assert.Equal(PduType.R2T, r2t.Type);
        Assert.Equal(1, pool.Outstanding);

        fabric.Now += Timeout; // exactly the bound: still open
        raw.Conn.Poll(fabric.Now);
        Assert.False(raw.Conn.WantsClose);

        fabric.Now += 1;
        raw.Conn.Poll(fabric.Now);
        Assert.True(raw.Conn.WantsClose);
        Assert.True(raw.Conn.TimedOutWaitingForHost);
        Assert.Equal(0, pool.Outstanding);
        raw.Conn.OnTransportClosed();
        Assert.Equal(0, raw.Conn.InFlightStorage);
    }

    [Fact]
    public void Data_arriving_before_the_timeout_restarts_it()
    {
        var (fabric, raw, pool) = ConnectedIoQueue();
        var r2t = Assert.Single(raw.Send(RawPdus.Capsule(NvmeCommands.Write(1, 0, 16), 5, sglLength: 16 * 512)));
        var data = RawPdus.H2CData(5, r2t.Ttag, 0, new byte[16 * 512]);
        // Half of the data PDU, a pause just under the bound, then the rest: the command completes.
        fabric.Now += Timeout - 1;
        raw.Conn.Poll(fabric.Now);
        Assert.Empty(raw.Send(data[..100]));
        fabric.Now += Timeout - 1;
        raw.Conn.Poll(fabric.Now);
        Assert.False(raw.Conn.WantsClose);
        var resp = Assert.Single(raw.Send(data[100..]));
        Assert.True(resp.Cqe.Status.IsSuccess);
        Assert.Equal(0, pool.Outstanding);
        // Nothing owed now: an idle I/O queue is keep-alive's business, not this timeout's.
        fabric.Now += 100 * Timeout;
        raw.Conn.Poll(fabric.Now);
        Assert.False(raw.Conn.WantsClose);
    }

    [Fact]
    public void Host_that_stops_inside_a_capsule_is_dropped_after_the_timeout()
    {
        var (fabric, raw, pool) = ConnectedIoQueue();
        var capsule = RawPdus.Capsule(NvmeCommands.Write(1, 0, 4), 6, new byte[2048]);
        raw.Send(capsule[..(capsule.Length - 10)]); // header in, in-capsule data partly
        Assert.Equal(1, pool.Outstanding);
        fabric.Now += Timeout + 1;
        raw.Conn.Poll(fabric.Now);
        Assert.True(raw.Conn.TimedOutWaitingForHost);
        Assert.Equal(0, pool.Outstanding);

        // Half a common header holds no buffer but is owed bytes all the same.
        var (fabric2, raw2, _) = ConnectedIoQueue();
        raw2.Send(capsule[..3]);
        fabric2.Now += Timeout + 1;
        raw2.Conn.Poll(fabric2.Now);
        Assert.True(raw2.Conn.TimedOutWaitingForHost);
    }

    [Fact]
    public void Accepted_connection_without_ICReq_or_Connect_is_dropped_after_the_timeout()
    {
        var fabric = NewFabric();
        var silent = new RawTarget(fabric);
        silent.Conn.Poll(fabric.Now); // the driver's first tick starts the clock
        var afterICReq = new RawTarget(fabric);
        Assert.Single(afterICReq.Send(RawPdus.ICReq()));
        fabric.Now += Timeout + 1;
        silent.Conn.Poll(fabric.Now);
        afterICReq.Conn.Poll(fabric.Now);
        Assert.True(silent.Conn.TimedOutWaitingForHost);
        Assert.True(afterICReq.Conn.TimedOutWaitingForHost);
        Assert.Empty(fabric.Target.ListControllers());
    }

    [Fact]
    public void Admin_queue_that_times_out_releases_its_controller_and_the_io_queues_close()
    {
        var fabric = NewFabric();
        var admin = fabric.Admin();
        var io = new RawTarget(fabric);
        Assert.True(io.Handshake(1, admin.Cntlid).Status.IsSuccess);
        Assert.Single(io.Send(RawPdus.Capsule(NvmeCommands.Write(1, 0, 8), 7, sglLength: 8 * 512)));
        fabric.Now += Timeout + 1;
        io.Conn.Poll(fabric.Now);
        Assert.True(io.Conn.TimedOutWaitingForHost);
        io.Conn.OnTransportClosed();
        // The admin queue owed nothing and stays; its controller survives an I/O queue's loss.
        fabric.Pump();
        Assert.False(admin.Closed);
        Assert.Single(fabric.Target.ListControllers());
    }

    [Fact]
    public void Shard_budget_bounds_buffers_owed_by_hosts_and_waiting_writes_start_when_it_frees()
    {
        var fabric = NewFabric();
        var admin = fabric.Admin();
        var budget = new HostDataBudget(8192);
        var pool = new CountingPool();
        var hostile = new RawTarget(fabric, pool, budget);
        var honest = new RawTarget(fabric, pool, budget);
        Assert.True(hostile.Handshake(1, admin.Cntlid).Status.IsSuccess);
        Assert.True(honest.Handshake(2, admin.Cntlid).Status.IsSuccess);

        // The hostile host takes the whole budget with two 4 KiB writes whose data it never sends.
        Assert.Single(hostile.Send(RawPdus.Capsule(NvmeCommands.Write(1, 0, 8), 1, sglLength: 4096)));
        Assert.Single(hostile.Send(RawPdus.Capsule(NvmeCommands.Write(1, 8, 8), 2, sglLength: 4096)));
        Assert.Equal(8192, budget.ReservedBytes);
        // Further writes wait without a buffer, on either connection; the budget is never exceeded.
        Assert.Empty(hostile.Send(RawPdus.Capsule(NvmeCommands.Write(1, 16, 8), 3, sglLength: 4096)));
        Assert.Empty(honest.Send(RawPdus.Capsule(NvmeCommands.Write(1, 24, 1), 9, sglLength: 512)));
        Assert.Equal(2, pool.Outstanding);
        Assert.Equal(2, budget.Waits);
        Assert.Equal(8192, budget.ReservedBytes);
        // The honest queue waits through no fault of its host: its own timeout does not run.
        fabric.Now += Timeout + 1;
        honest.Conn.Poll(fabric.Now);
        Assert.False(honest.Conn.WantsClose);

        hostile.Conn.Poll(fabric.Now);
        Assert.True(hostile.Conn.TimedOutWaitingForHost);
        Assert.Equal(0, budget.ReservedBytes);

        // The next poll of the waiting queue asks for its data; the write completes.
        var r2t = Assert.Single(honest.Drain());
        Assert.Equal(PduType.R2T, r2t.Type);
        var resp = Assert.Single(honest.Send(RawPdus.H2CData(9, r2t.Ttag, 0, new byte[512])));
        Assert.True(resp.Cqe.Status.IsSuccess);
        Assert.Equal(0, budget.ReservedBytes);
        Assert.Equal(0, pool.Outstanding);
    }

    [Fact]
    public void Budget_counts_size_classes_and_lets_one_oversized_write_run_alone()
    {
        var budget = new HostDataBudget(4096);
        Assert.Equal(4096, HostDataBudget.Cost(512));
        Assert.Equal(16384, HostDataBudget.Cost(3 * 4096));
        Assert.True(budget.TryReserve(3 * 4096)); // nothing reserved: larger than the budget, still runs
        Assert.False(budget.TryReserve(1));
        budget.Release(3 * 4096);
        Assert.Equal(0, budget.ReservedBytes);
        Assert.True(budget.TryReserve(4096));
    }

    [Fact]
    public void Write_before_Connect_is_refused_without_an_R2T_or_a_buffer()
    {
        var fabric = NewFabric();
        var pool = new CountingPool();
        var raw = new RawTarget(fabric, pool);
        Assert.Single(raw.Send(RawPdus.ICReq()));
        var resp = Assert.Single(raw.Send(RawPdus.Capsule(NvmeCommands.Write(1, 0, 2048), 4, sglLength: 1 << 20)));
        Assert.Equal(PduType.CapsuleResp, resp.Type);
        Assert.Equal(NvmeStatus.CommandSequenceError, resp.Cqe.Status);
        Assert.Equal(0, pool.Outstanding);
    }

    /// <summary>Each I/O command is checked once, when its capsule is in: a failing one moves no data at all.</summary>
    [Theory]
    [InlineData(0x81, 1u, 0u, nameof(NvmeStatus.InvalidOpcode))] // vendor-specific opcode, host-to-controller data
    [InlineData(IoOpcode.Write, 7u, 0u, nameof(NvmeStatus.InvalidNamespaceOrFormat))]
    [InlineData(IoOpcode.Write, 1u, 4095u, nameof(NvmeStatus.LbaOutOfRange))] // 2 blocks from the last one
    [InlineData(IoOpcode.DatasetManagement, 7u, 0u, nameof(NvmeStatus.InvalidNamespaceOrFormat))]
    public void Io_command_failing_its_check_is_answered_without_an_R2T_or_a_buffer(byte opcode, uint nsid, uint slba, string expected)
    {
        var (_, raw, pool) = ConnectedIoQueue();
        var cmd = new NvmeCommand(opcode, nsid, Cdw10: slba, Cdw12: 1); // 2 blocks (or 2 DSM ranges)
        var resp = Assert.Single(raw.Send(RawPdus.Capsule(cmd, 9, sglLength: 2 * 512)));
        Assert.Equal(PduType.CapsuleResp, resp.Type);
        Assert.Equal(typeof(NvmeStatus).GetField(expected)!.GetValue(null), resp.Cqe.Status);
        Assert.Equal(0, pool.Outstanding);
    }

    [Fact]
    public void Zero_disables_the_timeout()
    {
        var fabric = new Fabric(new TargetOptions { HostDataTimeoutMs = 0 });
        fabric.AddVolume();
        var raw = new RawTarget(fabric);
        raw.Send(RawPdus.ICReq()[..10]);
        fabric.Now += 1_000_000_000;
        raw.Conn.Poll(fabric.Now);
        Assert.False(raw.Conn.WantsClose);
    }

    [Fact]
    public void Negative_timeout_is_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new TargetOptions { HostDataTimeoutMs = -1 }.Validate());
    }

    private static Fabric NewFabric()
    {
        var fabric = new Fabric(new TargetOptions { HostDataTimeoutMs = Timeout });
        fabric.AddVolume();
        return fabric;
    }

    private static (Fabric, RawTarget, CountingPool) ConnectedIoQueue()
    {
        var fabric = NewFabric();
        var admin = fabric.Admin();
        var pool = new CountingPool();
        var raw = new RawTarget(fabric, pool);
        Assert.True(raw.Handshake(1, admin.Cntlid).Status.IsSuccess);
        Assert.Equal(0, pool.Outstanding);
        return (fabric, raw, pool);
    }

    /// <summary>Counts buffers rented and not yet returned.</summary>
    private sealed class CountingPool : IDataBufferPool
    {
        public int Outstanding { get; private set; }

        public Memory<byte> Rent(int length)
        {
            Outstanding++;
            return new byte[length];
        }

        public void Return(Memory<byte> buffer) => Outstanding--;
    }
}
