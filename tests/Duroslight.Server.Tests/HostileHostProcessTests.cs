using System.Diagnostics;
using System.Net.Sockets;
using Duroslight.Host;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;
using Duroslight.Protocol.Wire;
using Duroslight.Tests.Shared;
using Xunit;

namespace Duroslight.Server.Tests;

/// <summary>
/// Hostile and broken hosts against the real `duroslight serve` process on loopback: hosts that stall owing data,
/// connection storms, and running out of file descriptors. Each ends with an honest host doing verified I/O.
/// </summary>
public sealed class HostileHostProcessTests
{
    private const string Nqn = TargetOptions.DefaultSubsystemNqn;
    private const string HostNqn = "nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-0000-0000-00000000f00d";
    /// <summary>Set with --host-data-timeout (default 15 s) so the stall tests also prove the setting reaches the engine.</summary>
    private const int DataTimeoutMs = 4000;

    /// <summary>Set with --host-data-budget (default 256 MiB): 1 MiB writes beyond it wait for their R2T.</summary>
    private const int BudgetMiB = 64;
    private static readonly Guid HostId = Guid.Parse("5eed5eed-0000-4000-8000-00000000f00d");

    [Fact]
    public async Task Hosts_that_stall_owing_data_are_dropped_after_the_data_timeout_and_others_keep_working()
    {
        using var dir = new TempDir();
        using var server = await ServerProcess.StartAsync(Args(dir.Path));
        await using var honest = await NvmeTcpController.ConnectAsync("127.0.0.1", server.IoPort, Nqn, HostNqn);

        // 1: a write whose R2T'd 64 KiB never come, on an I/O queue of the honest host's controller.
        using var admin = await RawSocket.ConnectAsync(server.IoPort);
        ushort cntlid = await admin.AdminAsync(HostId, HostNqn, ioQueues: 1);
        using var writer = await RawSocket.ConnectAsync(server.IoPort);
        await writer.HandshakeAsync();
        var connect = await writer.CommandAsync(NvmeCommands.Connect(1, 31), 1, ConnectData.Create(HostId, cntlid, Nqn, HostNqn));
        Assert.True(CompletionEntry.Read(connect.Bytes.AsSpan(8, 16)).Status.IsSuccess, $"I/O Connect failed: {CompletionEntry.Read(connect.Bytes.AsSpan(8, 16)).Status} {connect.Type} {Convert.ToHexString(connect.Bytes)}");
        // Started before any stalled host's last byte, so no drop can come sooner than the timeout after it.
        var stalledSince = Stopwatch.StartNew();
        await writer.SendAsync(RawSocket.Capsule(NvmeCommands.Write(1, 0, 16), 2, sglLength: 64 * 1024)); // 16 blocks of 4 KiB
        Assert.Equal(PduType.R2T, (await writer.ReadPduAsync()).Type);
        // 2: half a capsule header after ICReq. 3: a socket that never says anything.
        using var midPdu = await RawSocket.ConnectAsync(server.IoPort);
        await midPdu.HandshakeAsync();
        await midPdu.SendAsync(RawSocket.Capsule(NvmeCommands.KeepAlive(), 3)[..20]);
        using var silent = await RawSocket.ConnectAsync(server.IoPort);

        // The bound is the timeout plus a tick; allow a loaded machine four times that.
        var bound = TimeSpan.FromMilliseconds(DataTimeoutMs * 4);
        await Task.WhenAll(writer.WaitClosedAsync(bound), midPdu.WaitClosedAsync(bound), silent.WaitClosedAsync(bound));
        Assert.True(stalledSince.ElapsedMilliseconds >= DataTimeoutMs - 500, $"closed after {stalledSince.ElapsedMilliseconds} ms");
        await Eventually.Until(() => server.Output.Contains("owed data"), "a log line for the dropped hosts");

        await VerifiedIo(honest, 40);
        Assert.False(server.HasExited);
    }

    /// <summary>
    /// A flood: 40 queues each send 31 writes of 1 MiB (1,240 MiB asked for) and never send data. The shard hands out
    /// R2Ts (and buffers) for at most its budget (64 MiB here); the rest wait holding no buffer; all are dropped after the
    /// data timeout and an honest host's I/O then works.
    /// </summary>
    [Fact]
    public async Task A_flood_of_stalled_writers_gets_buffers_for_at_most_the_shard_budget()
    {
        using var dir = new TempDir();
        using var server = await ServerProcess.StartAsync(Args(dir.Path));
        var owners = new List<RawSocket>();
        var floods = new List<RawSocket>();
        int r2ts = 0, r2tsAtFirstDrop = -1;
        try
        {
            const int WritesPerQueue = 31;
            for (int c = 0; c < 2; c++)
            {
                var owner = await RawSocket.ConnectAsync(server.IoPort);
                owners.Add(owner);
                ushort cntlid = await owner.AdminAsync(HostId, HostNqn, ioQueues: 20);
                for (ushort qid = 1; qid <= 20; qid++)
                {
                    var s = await RawSocket.ConnectAsync(server.IoPort);
                    floods.Add(s);
                    await s.HandshakeAsync();
                    var connect = await s.CommandAsync(NvmeCommands.Connect(qid, 31), 1, ConnectData.Create(HostId, cntlid, Nqn, HostNqn));
                    Assert.True(CompletionEntry.Read(connect.Bytes.AsSpan(8, 16)).Status.IsSuccess, $"I/O Connect qid {qid} failed");
                    var burst = new List<byte>();
                    for (ushort cid = 10; cid < 10 + WritesPerQueue; cid++)
                        burst.AddRange(RawSocket.Capsule(NvmeCommands.Write(1, 0, 256), cid, sglLength: 1 << 20));
                    await s.SendAsync([.. burst]);
                }
            }
            // Count R2Ts until the first queue is dropped: after that, freed budget goes to queues about to go too.
            var readers = floods.Select(s => s.CountR2TsUntilClosedAsync(() =>
            {
                Interlocked.Increment(ref r2ts);
            }, () => Interlocked.CompareExchange(ref r2tsAtFirstDrop, Volatile.Read(ref r2ts), -1), TimeSpan.FromMilliseconds(DataTimeoutMs * 4)));
            await Task.WhenAll(readers);
        }
        finally
        {
            foreach (var s in floods) s.Dispose();
            foreach (var s in owners) s.Dispose();
        }
        const int budgetWrites = BudgetMiB;
        Assert.InRange(r2tsAtFirstDrop, 1, budgetWrites);
        Console.WriteLine($"flood: {r2tsAtFirstDrop} of 1240 stalled 1 MiB writes got an R2T before the first drop (budget {budgetWrites} MiB)");
        await using var honest = await NvmeTcpController.ConnectAsync("127.0.0.1", server.IoPort, Nqn, HostNqn);
        await VerifiedIo(honest, 100);
        Assert.False(server.HasExited, server.Output);
    }

    [Fact]
    public async Task Connection_storm_leaves_no_descriptor_behind_and_the_process_serving()
    {
        using var dir = new TempDir();
        using var server = await ServerProcess.StartAsync(Args(dir.Path));
        int baseline = server.OpenDescriptors;
        const int Connections = 3000, Parallel = 16;
        byte[] halfICReq = RawSocket.ICReq()[..40];
        var storm = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, Parallel).Select(async lane =>
        {
            for (int i = lane; i < Connections; i += Parallel)
            {
                using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                await s.ConnectAsync("127.0.0.1", server.IoPort);
                // A third close at once, a third after half an ICReq, a third after a whole one (answered).
                if (i % 3 == 1) await s.SendAsync(halfICReq);
                if (i % 3 == 2)
                {
                    await s.SendAsync(RawSocket.ICReq());
                    var icresp = new byte[128];
                    int got = 0;
                    while (got < 128) got += await s.ReceiveAsync(icresp.AsMemory(got));
                }
            }
        }));
        storm.Stop();
        await Eventually.Until(() => server.OpenDescriptors <= baseline + 2, $"descriptors back to {baseline} + 2",
            TimeSpan.FromSeconds(60));

        await using var host = await NvmeTcpController.ConnectAsync("127.0.0.1", server.IoPort, Nqn, HostNqn);
        await VerifiedIo(host, 10);
        Assert.False(server.HasExited, server.Output);
        Console.WriteLine($"storm: {Connections} connections in {storm.ElapsedMilliseconds} ms");
    }

    [Fact]
    public async Task Out_of_descriptors_refuses_connections_cleanly_and_recovers()
    {
        using var dir = new TempDir();
        const int Limit = 256;
        using var server = await ServerProcess.StartAsync(Limit, Args(dir.Path));
        int free = Limit - server.OpenDescriptors;
        Assert.True(free > 16, $"only {free} descriptors free at start");

        // More connections than descriptors left: each sends ICReq; held ones get ICResp, refused ones see the
        // connection end at once, instead of waiting in the backlog.
        var sockets = new List<RawSocket>();
        int answered = 0, refused = 0;
        try
        {
            for (int i = 0; i < free + 40; i++)
            {
                var s = await RawSocket.ConnectAsync(server.IoPort);
                sockets.Add(s);
                await s.SendAsync(RawSocket.ICReq());
            }
            var outcomes = await Task.WhenAll(sockets.Select(s => s.ICRespOrEndAsync(TimeSpan.FromSeconds(60))));
            answered = outcomes.Count(o => o);
            refused = outcomes.Count(o => !o);
            Assert.True(refused >= 40 - 8, $"{refused} refused, {answered} answered, {free} descriptors were free");
            Assert.True(answered > 0);
            Console.WriteLine($"descriptors: {free} free at start, {answered} answered, {refused} refused");
            Assert.False(server.HasExited, server.Output);
            await Eventually.Until(() => server.Output.Contains("errno 24"), "the EMFILE log line");
        }
        finally
        {
            foreach (var s in sockets) s.Dispose();
        }

        // Recovery: descriptors come back and an honest host gets in.
        await Eventually.Until(() => server.OpenDescriptors < Limit - 16, "descriptors given back", TimeSpan.FromSeconds(60));
        await using var host = await NvmeTcpController.ConnectAsync("127.0.0.1", server.IoPort, Nqn, HostNqn);
        await VerifiedIo(host, 20);
    }

    /// <summary>
    /// The pool limit at a scale CI affords (bench/README.md has the full 2030): every controller holds an I/O queue
    /// and does verified I/O at once, the next Connect gets Connect Controller Busy, and a freed ID is reused.
    /// </summary>
    [Fact]
    public async Task A_full_pool_refuses_the_next_controller_while_io_runs_and_recovers()
    {
        using var dir = new TempDir();
        const int Max = 24;
        using var server = await ServerProcess.StartAsync([.. Args(dir.Path), "--max-controllers", $"{Max}"]);
        var hosts = new List<NvmeTcpController>();
        try
        {
            for (int i = 0; i < Max; i++)
                hosts.Add(await NvmeTcpController.ConnectAsync("127.0.0.1", server.IoPort, Nqn, HostNqn));
            var io = hosts.Select((h, i) => VerifiedIo(h, (ulong)(i * 64))).ToList();
            var refused = await Assert.ThrowsAnyAsync<NvmeException>(() =>
                NvmeTcpController.ConnectAsync("127.0.0.1", server.IoPort, Nqn, HostNqn));
            Assert.Equal(NvmeStatus.ConnectControllerBusy, refused.Status);
            await Task.WhenAll(io);

            await hosts[0].DisposeAsync();
            hosts.RemoveAt(0);
            // The freed ID returns once the target has torn the controller down.
            NvmeTcpController? again = null;
            await Eventually.Until(async () =>
            {
                try
                {
                    again = await NvmeTcpController.ConnectAsync("127.0.0.1", server.IoPort, Nqn, HostNqn);
                    return true;
                }
                catch (NvmeException e) when (e.Status == NvmeStatus.ConnectControllerBusy)
                {
                    return false;
                }
            }, "a controller ID freed", TimeSpan.FromSeconds(60));
            hosts.Add(again!);
            await VerifiedIo(again!, 3000);
        }
        finally
        {
            foreach (var h in hosts) await h.DisposeAsync();
        }
    }

    private static string[] Args(string dir) => ["--store", "memory", "--volume-size", "16M", "--data-dir", dir, "--cores", "0",
        "--host-data-timeout", $"{DataTimeoutMs}", "--host-data-budget", $"{BudgetMiB}M"];

    private static async Task VerifiedIo(NvmeTcpController host, ulong slba)
    {
        var data = new byte[8 * 4096]; // 4 KiB blocks: R2T, not in-capsule
        Random.Shared.NextBytes(data);
        await host.WriteAsync(1, slba, 8, data);
        var seen = new byte[data.Length];
        await host.ReadAsync(1, slba, 8, seen);
        Assert.Equal(data, seen);
    }
}

/// <summary>A TCP connection that speaks raw NVMe/TCP PDUs (no digests).</summary>
internal sealed class RawSocket : IDisposable
{
    private readonly Socket _socket = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);

    public static async Task<RawSocket> ConnectAsync(int port)
    {
        var s = new RawSocket();
        await s._socket.ConnectAsync("127.0.0.1", port);
        return s;
    }

    public static byte[] ICReq()
    {
        var b = new byte[PduLayout.ICReqSize];
        PduWriter.ICReq(b, 0, false, false, 0);
        return b;
    }

    public static byte[] Capsule(NvmeCommand c, ushort cid, ReadOnlySpan<byte> inCapsule = default, uint? sglLength = null)
    {
        Span<byte> sqe = stackalloc byte[SubmissionEntry.Size];
        byte type = inCapsule.Length > 0 ? SglTypes.InCapsuleData : SglTypes.TransportDataBlock;
        SubmissionEntryWriter.Write(sqe, c.Opcode, cid, c.Nsid, type, sglLength ?? (uint)inCapsule.Length,
            c.Cdw10, c.Cdw11, c.Cdw12, c.Cdw13, c.Cdw14, c.Cdw15);
        var buffer = new byte[PduWriter.MaxHeaderBytes + inCapsule.Length];
        int n = PduWriter.CapsuleCmdHeader(buffer, sqe, inCapsule.Length, false, false);
        inCapsule.CopyTo(buffer.AsSpan(n));
        return buffer[..(n + inCapsule.Length)];
    }

    public async Task SendAsync(byte[] bytes) => await _socket.SendAsync(bytes);

    public async Task HandshakeAsync()
    {
        await SendAsync(ICReq());
        Assert.Equal(PduType.ICResp, (await ReadPduAsync()).Type);
    }

    /// <summary>An enabled admin queue of a new controller (KATO 0) granted <paramref name="ioQueues"/>; returns its CNTLID.</summary>
    public async Task<ushort> AdminAsync(Guid hostId, string hostNqn, int ioQueues)
    {
        await HandshakeAsync();
        var connect = await CommandAsync(NvmeCommands.Connect(0, 31), 1, ConnectData.Create(hostId, ConnectData.DynamicCntlid, TargetOptions.DefaultSubsystemNqn, hostNqn));
        var cqe = CompletionEntry.Read(connect.Bytes.AsSpan(8, 16));
        Assert.True(cqe.Status.IsSuccess, $"admin Connect: {cqe.Status}");
        foreach (var (command, cid) in new[]
        {
            (NvmeCommands.PropertySet(PropertyOffset.Cc, 1 | 6u << 16 | 4u << 20), (ushort)2),
            (NvmeCommands.SetFeatures(FeatureId.NumberOfQueues, (uint)(ioQueues - 1) | (uint)(ioQueues - 1) << 16), (ushort)3),
        })
        {
            await SendAsync(Capsule(command, cid));
            var resp = CompletionEntry.Read((await ReadPduAsync()).Bytes.AsSpan(8, 16));
            Assert.True(resp.Status.IsSuccess, $"admin {command.Opcode:X2}h: {resp.Status}");
        }
        return (ushort)cqe.Result;
    }

    public async Task<(PduType Type, byte[] Bytes)> CommandAsync(NvmeCommand c, ushort cid, byte[] data)
    {
        await SendAsync(Capsule(c, cid, data));
        return await ReadPduAsync();
    }

    public async Task<(PduType Type, byte[] Bytes)> ReadPduAsync()
    {
        var header = new byte[8];
        await ReadExactlyAsync(header);
        int plen = BitConverter.ToInt32(header, 4);
        var pdu = new byte[plen];
        header.CopyTo(pdu, 0);
        await ReadExactlyAsync(pdu.AsMemory(8));
        return ((PduType)pdu[0], pdu);
    }

    /// <summary>Reads until the server closes the connection (anything it still sends is skipped).</summary>
    public async Task WaitClosedAsync(TimeSpan bound)
    {
        using var cts = new CancellationTokenSource(bound);
        var sink = new byte[4096];
        try
        {
            while (await _socket.ReceiveAsync(sink, cts.Token) > 0)
            {
            }
        }
        catch (SocketException)
        {
            // Reset by the server: closed as well.
        }
    }

    /// <summary>Reads PDUs, calling <paramref name="onR2T"/> per R2T, until the server closes; then <paramref name="onClosed"/>.</summary>
    public async Task CountR2TsUntilClosedAsync(Action onR2T, Action onClosed, TimeSpan bound)
    {
        using var cts = new CancellationTokenSource(bound);
        try
        {
            while (true)
            {
                var header = new byte[8];
                if (!await TryReadExactlyAsync(header, cts.Token)) break;
                var rest = new byte[BitConverter.ToInt32(header, 4) - 8];
                if (!await TryReadExactlyAsync(rest, cts.Token)) break;
                if ((PduType)header[0] == PduType.R2T) onR2T();
            }
        }
        catch (SocketException)
        {
        }
        onClosed();
    }

    private async Task<bool> TryReadExactlyAsync(Memory<byte> buffer, CancellationToken ct)
    {
        for (int got = 0; got < buffer.Length;)
        {
            int n = await _socket.ReceiveAsync(buffer[got..], ct);
            if (n == 0) return false;
            got += n;
        }
        return true;
    }

    /// <summary>True when an ICResp arrives, false when the connection ends first (refused).</summary>
    public async Task<bool> ICRespOrEndAsync(TimeSpan bound)
    {
        using var cts = new CancellationTokenSource(bound);
        var buffer = new byte[PduLayout.ICRespSize];
        int got = 0;
        try
        {
            while (got < buffer.Length)
            {
                int n = await _socket.ReceiveAsync(buffer.AsMemory(got), cts.Token);
                if (n == 0) return false;
                got += n;
            }
            return (PduType)buffer[0] == PduType.ICResp;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    public void Dispose() => _socket.Dispose();

    private async Task ReadExactlyAsync(Memory<byte> buffer)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        int got = 0;
        while (got < buffer.Length)
        {
            int n = await _socket.ReceiveAsync(buffer[got..], cts.Token);
            if (n == 0) throw new IOException("connection closed");
            got += n;
        }
    }
}
