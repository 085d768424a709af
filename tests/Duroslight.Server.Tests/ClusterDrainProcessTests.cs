using System.Collections.Concurrent;
using System.Diagnostics;
using Duroslight.Host;
using Duroslight.Protocol.Nvme;
using Duroslight.Tests.Shared;
using Xunit;
using Xunit.Abstractions;
using static Duroslight.Server.Tests.ClusterProcesses;

namespace Duroslight.Server.Tests;

/// <summary>
/// Graceful drain with real parts (docs/ARCHITECTURE.md, "Failover", "Drain"): a real etcd and three `duroslight
/// serve` processes, a three-replica volume under write load from the host library, `ctl nodes drain` of its primary.
/// The pause is recorded, not asserted (timing on a loaded machine).
/// </summary>
public sealed class ClusterDrainProcessTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int LeaseTtl = 6;
    private const int Writers = 4, BlocksPerWriter = 1024, BlockSize = 4096;
    private static readonly NvmeTcpControllerOptions NoKeepAlive = new() { KeepAliveTimeoutMs = 0 };
    private ClusterProcesses? _c;

    public async Task InitializeAsync() => _c = await ClusterProcesses.StartAsync(LeaseTtl);

    public Task DisposeAsync()
    {
        _c?.Dispose();
        return Task.CompletedTask;
    }

    [EtcdFact]
    public async Task Draining_the_primary_under_write_load_moves_it_to_an_in_sync_replica_without_losing_a_write_and_the_node_then_stops_cleanly()
    {
        var (nsid, primary, generation) = await _c!.CreateVolumeAsync("vol-d");
        int[] others = [.. new[] { 0, 1, 2 }.Where(n => n != primary)];
        var hosts = new NvmeTcpController?[3];
        try
        {
            hosts[primary] = await _c.ConnectOptimizedAsync(primary, NoKeepAlive);
            foreach (int n in others)
                hosts[n] = await NvmeTcpController.ConnectAsync("127.0.0.1", _c.Nodes[n].IoPort, Nqn, HostNqn, NoKeepAlive).WaitAsync(Limit);

            var path = hosts[primary]!;
            int promoted = -1;
            Task<NvmeTcpController>? moved = null;
            var gate = new object();
            // The first writer refused on the drained path looks for the node whose path turned optimized; all then use it.
            Task<NvmeTcpController> NewPathAsync()
            {
                lock (gate) return moved ??= Task.Run(async () =>
                {
                    await Eventually.Until(async () =>
                    {
                        foreach (int n in others)
                            if (await AnaStateAsync(hosts[n]!) == 0x01) promoted = n;
                        return promoted >= 0;
                    }, "another node's path optimized", Limit);
                    return hosts[promoted]!;
                });
            }

            var acked = new ConcurrentDictionary<int, byte[]>();
            long drainAt = 0, lastOldAck = 0, firstNewAck = 0;
            int refused = 0;
            var writers = Enumerable.Range(0, Writers).Select(w => Task.Run(async () =>
            {
                for (int i = 0, afterMove = 0; afterMove < 50; i++)
                {
                    int block = w * BlocksPerWriter + i % BlocksPerWriter;
                    var data = Pattern(BlockSize, w * 1_000_000 + i);
                    var through = Volatile.Read(ref path);
                    try
                    {
                        await through.WriteAsync(nsid, (ulong)block, 1, data).AsTask().WaitAsync(Limit);
                    }
                    catch (NvmeException e) when (Volatile.Read(ref drainAt) != 0 && e.Status == NvmeStatus.AsymmetricAccessInaccessible)
                    {
                        // Refused by the drained path, so not applied anywhere: the same write on the new primary's path.
                        Interlocked.Increment(ref refused);
                        through = await NewPathAsync();
                        Volatile.Write(ref path, through);
                        await through.WriteAsync(nsid, (ulong)block, 1, data).AsTask().WaitAsync(Limit);
                    }
                    long now = Stopwatch.GetTimestamp();
                    if (ReferenceEquals(through, hosts[primary])) Interlocked.Exchange(ref lastOldAck, Math.Max(now, Volatile.Read(ref lastOldAck)));
                    else
                    {
                        Interlocked.CompareExchange(ref firstNewAck, now, 0);
                        afterMove++;
                    }
                    acked[block] = data;
                }
            })).ToArray();

            await Eventually.Until(() => acked.Count >= 200 || writers.Any(t => t.IsCompleted), "writers running", Limit);
            Volatile.Write(ref drainAt, Stopwatch.GetTimestamp());
            var (code, stdout, stderr) = await RunCli("ctl", "--socket", _c.Socket(others[0]), "nodes", "drain", primary.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Assert.True(code == 0, stderr);
            await Task.WhenAll(writers).WaitAsync(2 * Limit);

            // The pause a host saw: the last write acknowledged by the drained primary to the first by the new one.
            var pause = Stopwatch.GetElapsedTime(Volatile.Read(ref lastOldAck), Volatile.Read(ref firstNewAck));
            output.WriteLine($"drain pause {pause.TotalMilliseconds:0} ms (lease TTL {LeaseTtl} s), {refused} writes refused and retried, " +
                $"{acked.Count} blocks acknowledged, load average {File.ReadAllText("/proc/loadavg").Trim()}");
            Assert.True(refused > 0, "no write was refused by the drained path");
            Assert.Contains(promoted, others);
            Assert.Equal((byte)0x03, await AnaStateAsync(hosts[primary]!));

            // etcd: a new primary at a later generation; the drained node stays a replica, in sync (it follows the new primary).
            var v = (await _c.GetAsync(promoted, "v1/volumes/vol-d"))!;
            Assert.Equal(promoted, v["primary"]!.GetValue<int>());
            Assert.True(v["generation"]!.GetValue<long>() > generation);
            Assert.Equal([0, 1, 2], Ints(v["in_sync"]).Order());
            await Eventually.Until(async () => StateOf(await _c.NodesAsync(promoted), primary) == "Drained", "the node listed Drained", Limit);
            await AssertHoldsAsync(hosts[promoted]!, nsid, acked, Writers * BlocksPerWriter);

            // Nothing new is placed on a drained node.
            (code, _, stderr) = await RunCli("ctl", "--socket", _c.Socket(promoted), "volumes", "create", "vol-n", "1M", "--replicas", "2");
            Assert.True(code == 0, stderr);
            Assert.DoesNotContain(primary, Ints((await _c.GetAsync(promoted, "v1/volumes/vol-n"))!["placement"]));

            // Then it stops gracefully, and the volume goes on: writes acknowledged after it left read back too.
            Assert.Equal(0, await _c.Nodes[primary].StopAsync(15));
            for (int block = 0; block < 64; block++)
            {
                var data = Pattern(BlockSize, 7_000_000 + block);
                await hosts[promoted]!.WriteAsync(nsid, (ulong)block, 1, data).AsTask().WaitAsync(Limit);
                acked[block] = data;
            }
            await AssertHoldsAsync(hosts[promoted]!, nsid, acked, Writers * BlocksPerWriter);
        }
        finally
        {
            foreach (var h in hosts)
                if (h is not null) await h.DisposeAsync();
        }
    }

    [EtcdFact]
    public async Task A_drained_node_that_is_the_only_in_sync_replica_stays_primary()
    {
        var (code, _, stderr) = await RunCli("ctl", "--socket", _c!.Socket(0), "volumes", "create", "vol-1", "1M", "--replicas", "1");
        Assert.True(code == 0, stderr);
        var v = (await _c.GetAsync(0, "v1/volumes/vol-1"))!;
        int primary = v["primary"]!.GetValue<int>();
        (code, _, stderr) = await RunCli("ctl", "--socket", _c.Socket(0), "nodes", "drain", primary.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.True(code == 0, stderr);
        Assert.Equal("Draining", StateOf(await _c.NodesAsync(0), primary));
        await using var host = await _c.ConnectOptimizedAsync(primary);
        await host.WriteAsync(v["nsid"]!.GetValue<uint>(), 0, 1, Pattern(BlockSize, 1)).AsTask().WaitAsync(Limit);
        Assert.Equal(primary, (await _c.GetAsync(0, "v1/volumes/vol-1"))!["primary"]!.GetValue<int>());

        // Undrained: listed Active again.
        (code, _, stderr) = await RunCli("ctl", "--socket", _c.Socket(0), "nodes", "undrain", primary.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.True(code == 0, stderr);
        Assert.Equal("Active", StateOf(await _c.NodesAsync(0), primary));
    }
}
