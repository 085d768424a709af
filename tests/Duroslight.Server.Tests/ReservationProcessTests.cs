using System.Buffers.Binary;
using Duroslight.Host;
using Duroslight.Protocol.Nvme;
using Xunit;

namespace Duroslight.Server.Tests;

/// <summary>
/// Persist Through Power Loss on the real process (NVMe Base 2.0, 8.19): two hosts register, one holds Write
/// Exclusive, the server is SIGKILLed and restarted on the same data. With PTPL set (Register CPTPL = 11b) the Report
/// shows the same registrants and holder and the other host's write still conflicts; without it everything is gone.
/// </summary>
public sealed class ReservationProcessTests : IDisposable
{
    private const string Nqn = "nqn.2026-11.io.duroslight:default";
    private const string HostA = "nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-0000-0000-00000000000a";
    private const string HostB = "nqn.2014-08.org.nvmexpress:uuid:bbbbbbbb-0000-0000-0000-00000000000b";
    private static readonly Guid IdA = Guid.Parse("aaaaaaaa-1111-2222-3333-444444444444");
    private static readonly Guid IdB = Guid.Parse("bbbbbbbb-1111-2222-3333-444444444444");
    private const uint CptplSet = 3u << 30; // CPTPL 11b: set PTPL to 1 (10b clears it)
    private const byte WriteExclusive = 1;
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(60);

    private readonly string _root = Directory.CreateTempSubdirectory("duroslight-resv-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Theory]
    [InlineData("gftl", true)]
    [InlineData("sparse", true)]
    [InlineData("gftl", false)]
    public async Task Registrations_and_the_reservation_survive_sigkill_only_with_ptpl(string store, bool ptpl)
    {
        using (ServerProcess server = await ServerProcess.StartAsync(Args(store)))
        {
            await using (var a = await ConnectAsync(server, HostA, IdA))
            await using (var b = await ConnectAsync(server, HostB, IdB))
            {
                await OkAsync(a, new NvmeCommand(IoOpcode.ReservationRegister, 1, ptpl ? CptplSet : 0), Keys(0, 0xA));
                await OkAsync(b, new NvmeCommand(IoOpcode.ReservationRegister, 1), Keys(0, 0xB));
                await OkAsync(a, new NvmeCommand(IoOpcode.ReservationAcquire, 1, (uint)WriteExclusive << 8), Keys(0xA));
                Assert.Equal(NvmeStatus.ReservationConflict, (await b.ExecuteIoAsync(NvmeCommands.Write(1, 0, 1), new byte[4096]).AsTask().WaitAsync(Limit)).Status);
                var feature = await a.ExecuteAdminAsync(new NvmeCommand(AdminOpcode.GetFeatures, 1, 0x83), default).AsTask().WaitAsync(Limit);
                Assert.True(feature.Status.IsSuccess, feature.Status.ToString());
                Assert.Equal(ptpl ? 1ul : 0ul, feature.Result);
            }

            await server.StopAsync(9);
        }

        using ServerProcess again = await ServerProcess.StartAsync(Args(store));
        await using var a2 = await ConnectAsync(again, HostA, IdA);
        await using var b2 = await ConnectAsync(again, HostB, IdB);
        var page = new byte[4 * 64];
        await OkAsync(b2, new NvmeCommand(IoOpcode.ReservationReport, 1, (uint)(page.Length / 4) - 1, 1), page);
        int count = BinaryPrimitives.ReadUInt16LittleEndian(page.AsSpan(5));
        var write = await b2.ExecuteIoAsync(NvmeCommands.Write(1, 0, 1), new byte[4096]).AsTask().WaitAsync(Limit);
        if (!ptpl)
        {
            Assert.Equal(0, count);
            Assert.Equal(0, page[4]);
            Assert.True(write.Status.IsSuccess, write.Status.ToString());
            return;
        }

        Assert.Equal(2, count);
        Assert.Equal(WriteExclusive, page[4]);
        var entries = new Dictionary<Guid, (byte Rcsts, ulong Key)>();
        for (int i = 1; i <= count; i++)
            entries[new Guid(page.AsSpan(i * 64 + 16, 16), bigEndian: true)] = (page[i * 64 + 2], BinaryPrimitives.ReadUInt64LittleEndian(page.AsSpan(i * 64 + 8)));
        Assert.Equal(((byte)1, 0xAul), entries[IdA]);
        Assert.Equal(((byte)0, 0xBul), entries[IdB]);
        Assert.Equal(NvmeStatus.ReservationConflict, write.Status);
        await OkAsync(a2, NvmeCommands.Write(1, 0, 1), new byte[4096]);
    }

    private string[] Args(string store) => store == "gftl"
        ? ["--data-dir", Path.Combine(_root, "data"), "--volume-size", "8M", "--device", Path.Combine(_root, "device0.img") + ":64M"]
        : ["--store", "sparse", "--data-dir", Path.Combine(_root, "data"), "--volume-size", "8M"];

    private static Task<NvmeTcpController> ConnectAsync(ServerProcess server, string hostNqn, Guid hostId) =>
        NvmeTcpController.ConnectAsync("127.0.0.1", server.IoPort, Nqn, hostNqn, new NvmeTcpControllerOptions { HostId = hostId }).WaitAsync(Limit);

    /// <summary>Runs an I/O command that must succeed (shared with <see cref="ClusterReservationProcessTests"/>).</summary>
    internal static async Task OkAsync(NvmeTcpController host, NvmeCommand command, Memory<byte> data)
    {
        var cqe = await host.ExecuteIoAsync(command, data).AsTask().WaitAsync(Limit);
        Assert.True(cqe.Status.IsSuccess, $"{command.Opcode:x2}: {cqe.Status}");
    }

    /// <summary>A reservation command's data: two 64-bit keys (current, new or preempt).</summary>
    internal static byte[] Keys(ulong first, ulong second = 0)
    {
        var data = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(data, first);
        BinaryPrimitives.WriteUInt64LittleEndian(data.AsSpan(8), second);
        return data;
    }
}
