using Duroslight.Host;
using Duroslight.Protocol.Engine;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;
using Duroslight.Protocol.Wire;
using Xunit;

namespace Duroslight.Protocol.Tests.Engine;

/// <summary>
/// A command storage holds past <see cref="TargetOptions.StorageTimeoutMs"/> (a stalled device) is answered with
/// Command Interrupted; its buffer stays held until storage returns, its CID is free for the host at once, and the
/// late completion is dropped. Time is the engine's injected clock.
/// </summary>
public class StorageTimeoutTests
{
    private const int Timeout = 5_000;

    [Fact]
    public void A_command_storage_holds_too_long_is_answered_with_command_interrupted_and_keeps_its_buffer()
    {
        var (fabric, raw, pool) = ConnectedIoQueue(Timeout);
        raw.HoldStorage = true;
        Assert.Empty(raw.Send(RawPdus.Capsule(NvmeCommands.Read(1, 0, 8), 7, sglLength: 8 * 512)));
        Assert.Equal(1, pool.Outstanding);

        fabric.Now += Timeout; // exactly the bound: still waiting
        Assert.Empty(raw.Drain());

        fabric.Now += 1;
        var answer = Assert.Single(raw.Drain());
        Assert.Equal(PduType.CapsuleResp, answer.Type);
        Assert.Equal(7, answer.Cqe.CommandId);
        Assert.Equal(NvmeStatus.CommandInterrupted, answer.Cqe.Status);
        Assert.False(answer.Cqe.Status.Dnr);
        Assert.Equal(1, pool.Outstanding); // storage still owns the buffer
        Assert.Equal(1, raw.Conn.InFlightStorage);
        Assert.Equal(1, raw.Conn.StorageTimeouts);
        Assert.Empty(raw.Drain()); // answered once

        // The host reuses the CID at once, and may fill its whole SQ (32 entries) besides the abandoned command.
        Assert.Empty(raw.Send(RawPdus.Capsule(NvmeCommands.Read(1, 8, 1), 7, sglLength: 512)));
        for (ushort cid = 100; cid < 131; cid++)
            Assert.Empty(raw.Send(RawPdus.Capsule(NvmeCommands.Read(1, cid, 1), cid, sglLength: 512)));
        Assert.Equal(33, raw.Held.Count);

        raw.CompleteHeld(); // the abandoned one first: its late completion is dropped
        var answers = raw.Drain().FindAll(p => p.Type == PduType.CapsuleResp);
        Assert.Equal(32, answers.Count);
        Assert.All(answers, a => Assert.True(a.Cqe.Status.IsSuccess, a.Cqe.Status.ToString()));
        Assert.Single(answers, a => a.Cqe.CommandId == 7);
        Assert.Equal(0, pool.Outstanding);
        Assert.Equal(0, raw.Conn.InFlightStorage);
    }

    [Fact]
    public void A_command_storage_completes_in_time_is_answered_by_storage_alone()
    {
        var (fabric, raw, pool) = ConnectedIoQueue(Timeout);
        raw.HoldStorage = true;
        raw.Send(RawPdus.Capsule(NvmeCommands.Read(1, 0, 8), 7, sglLength: 8 * 512));
        fabric.Now += Timeout;
        raw.CompleteHeld();
        var answers = raw.Drain().FindAll(p => p.Type == PduType.CapsuleResp);
        Assert.True(Assert.Single(answers).Cqe.Status.IsSuccess);
        fabric.Now += Timeout * 2;
        Assert.Empty(raw.Drain());
        Assert.Equal(0, raw.Conn.StorageTimeouts);
        Assert.Equal(0, pool.Outstanding);
    }

    [Fact]
    public void Zero_disables_the_storage_timeout_and_closing_still_waits_for_storage()
    {
        var (fabric, raw, pool) = ConnectedIoQueue(0);
        raw.HoldStorage = true;
        raw.Send(RawPdus.Capsule(NvmeCommands.Write(1, 0, 1), 9, new byte[512]));
        fabric.Now += 1_000_000_000;
        Assert.DoesNotContain(raw.Drain(), p => p.Type == PduType.CapsuleResp);
        raw.Conn.OnTransportClosed();
        Assert.Equal(1, raw.Conn.InFlightStorage);
        raw.CompleteHeld();
        Assert.Equal(0, raw.Conn.InFlightStorage);
        Assert.Equal(0, pool.Outstanding);
    }

    [Fact]
    public void An_abandoned_command_completing_after_the_connection_closed_gives_its_buffer_back()
    {
        var (fabric, raw, pool) = ConnectedIoQueue(Timeout);
        raw.HoldStorage = true;
        raw.Send(RawPdus.Capsule(NvmeCommands.Read(1, 0, 8), 7, sglLength: 8 * 512));
        fabric.Now += Timeout + 1;
        Assert.Single(raw.Drain());
        raw.Conn.OnTransportClosed();
        Assert.Equal(1, pool.Outstanding);
        raw.CompleteHeld();
        Assert.Equal(0, pool.Outstanding);
        Assert.Equal(0, raw.Conn.InFlightStorage);
    }

    [Fact]
    public void Negative_storage_timeout_is_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new TargetOptions { StorageTimeoutMs = -1 }.Validate());
    }

    private static (Fabric, RawTarget, CountingPool) ConnectedIoQueue(int timeoutMs)
    {
        var fabric = new Fabric(new TargetOptions { StorageTimeoutMs = timeoutMs });
        fabric.AddVolume();
        var admin = fabric.Admin();
        var pool = new CountingPool();
        var raw = new RawTarget(fabric, pool);
        Assert.True(raw.Handshake(1, admin.Cntlid).Status.IsSuccess);
        return (fabric, raw, pool);
    }

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
