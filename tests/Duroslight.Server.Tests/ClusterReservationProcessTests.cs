using System.Buffers.Binary;
using Duroslight.Host;
using Duroslight.Protocol.Nvme;
using Duroslight.Tests.Shared;
using Xunit;
using static Duroslight.Server.Tests.ClusterProcesses;
using static Duroslight.Server.Tests.ReservationProcessTests;

namespace Duroslight.Server.Tests;

/// <summary>
/// Reservations of a cluster volume follow its primary (docs/ARCHITECTURE.md, "Reservations in a cluster"): a real
/// etcd and three `duroslight serve` processes; two hosts register on the primary, one holds Write Exclusive, the
/// primary is SIGKILLed; on the promoted node's path the same registrants and holder are in force, and a change made
/// there (the holder releases) is stored and takes effect.
/// </summary>
public sealed class ClusterReservationProcessTests : IAsyncLifetime
{
    private const string HostA = "nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-0000-0000-00000000000a";
    private const string HostB = "nqn.2014-08.org.nvmexpress:uuid:bbbbbbbb-0000-0000-0000-00000000000b";
    private static readonly Guid IdA = Guid.Parse("aaaaaaaa-1111-2222-3333-444444444444");
    private static readonly Guid IdB = Guid.Parse("bbbbbbbb-1111-2222-3333-444444444444");
    private const byte WriteExclusive = 1;
    private ClusterProcesses? _c;

    public async Task InitializeAsync() => _c = await ClusterProcesses.StartAsync(6);

    public Task DisposeAsync()
    {
        _c?.Dispose();
        return Task.CompletedTask;
    }

    [EtcdFact]
    public async Task The_registrants_and_the_holder_survive_a_failover_and_the_new_primary_stores_changes()
    {
        var (nsid, primary, _) = await _c!.CreateVolumeAsync("vol-r");
        int[] others = [.. new[] { 0, 1, 2 }.Where(n => n != primary)];
        var hosts = new List<NvmeTcpController>();
        try
        {
            var a = await ConnectAsync(primary, HostA, IdA, hosts);
            var b = await ConnectAsync(primary, HostB, IdB, hosts);
            await Eventually.Until(async () => await AnaStateAsync(a) == 0x01, "the primary's path optimized", Limit);
            await OkAsync(a, new NvmeCommand(IoOpcode.ReservationRegister, nsid), Keys(0, 0xA));
            await OkAsync(b, new NvmeCommand(IoOpcode.ReservationRegister, nsid), Keys(0, 0xB));
            await OkAsync(a, new NvmeCommand(IoOpcode.ReservationAcquire, nsid, (uint)WriteExclusive << 8), Keys(0xA));
            Assert.Equal(NvmeStatus.ReservationConflict, await WriteAsync(b, nsid));

            _c.Nodes[primary].Signal(9);
            var paths = new Dictionary<int, (NvmeTcpController A, NvmeTcpController B)>();
            foreach (int n in others) paths[n] = (await ConnectAsync(n, HostA, IdA, hosts), await ConnectAsync(n, HostB, IdB, hosts));
            int promoted = -1;
            await Eventually.Until(async () =>
            {
                foreach (int n in others)
                    if (await AnaStateAsync(paths[n].A) == 0x01) promoted = n;
                return promoted >= 0;
            }, "another node's path optimized", Limit);
            var (a2, b2) = paths[promoted];

            // The same registrants and holder on the new primary: B's write conflicts, A's goes through.
            var page = new byte[4 * 64];
            await OkAsync(b2, new NvmeCommand(IoOpcode.ReservationReport, nsid, (uint)(page.Length / 4) - 1, 1), page);
            Assert.Equal(2, BinaryPrimitives.ReadUInt16LittleEndian(page.AsSpan(5)));
            Assert.Equal(WriteExclusive, page[4]);
            var holders = new Dictionary<Guid, (byte Rcsts, ulong Key)>();
            for (int i = 1; i <= 2; i++)
                holders[new Guid(page.AsSpan(i * 64 + 16, 16), bigEndian: true)] = (page[i * 64 + 2], BinaryPrimitives.ReadUInt64LittleEndian(page.AsSpan(i * 64 + 8)));
            Assert.Equal(((byte)1, 0xAul), holders[IdA]);
            Assert.Equal(((byte)0, 0xBul), holders[IdB]);
            Assert.Equal(NvmeStatus.ReservationConflict, await WriteAsync(b2, nsid));
            Assert.True((await WriteAsync(a2, nsid)).IsSuccess);

            // A change on the new primary is stored (in etcd, compared on its being primary) and applies.
            await OkAsync(a2, new NvmeCommand(IoOpcode.ReservationRelease, nsid, (uint)WriteExclusive << 8), Keys(0xA));
            Assert.True((await WriteAsync(b2, nsid)).IsSuccess);
        }
        finally
        {
            foreach (var h in hosts) await h.DisposeAsync();
        }
    }

    private async Task<NvmeTcpController> ConnectAsync(int node, string hostNqn, Guid hostId, List<NvmeTcpController> all)
    {
        var host = await NvmeTcpController.ConnectAsync("127.0.0.1", _c!.Nodes[node].IoPort, Nqn, hostNqn,
            new NvmeTcpControllerOptions { HostId = hostId, KeepAliveTimeoutMs = 0 }).WaitAsync(Limit);
        all.Add(host);
        return host;
    }

    private static async Task<NvmeStatus> WriteAsync(NvmeTcpController host, uint nsid) =>
        (await host.ExecuteIoAsync(NvmeCommands.Write(nsid, 0, 1), new byte[4096]).AsTask().WaitAsync(Limit)).Status;
}
