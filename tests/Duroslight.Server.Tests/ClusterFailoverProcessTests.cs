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
/// Failover with real parts (docs/ARCHITECTURE.md, "Failover"): a real etcd and three `duroslight serve` processes
/// with a 6 s lease (so the fence is at 5 s), a three-replica volume, and writers of the host library that record
/// every acknowledged block and read them all back from the primary at the end. No time bound is asserted: the
/// timeouts are generous for a loaded machine, and only the lease-derived order of events is checked.
/// </summary>
public sealed class ClusterFailoverProcessTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int LeaseTtl = 6;
    private const uint AnaChangeEvent = 0x000C_0302;
    private const int Sigcont = 18, Sigstop = 19;
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
    public async Task The_primary_killed_under_write_load_loses_no_acknowledged_write_and_writes_resume_on_a_promoted_replica_with_an_ANA_change_notice()
    {
        var (nsid, primary, generation) = await _c!.CreateVolumeAsync("vol-k");
        int[] survivors = [.. new[] { 0, 1, 2 }.Where(n => n != primary)];

        // Hosts on the secondaries' paths count the ANA change notices after the kill; each notice is answered by a
        // read of the log (which re-arms it), and so is any notice from before (the log is read once connected).
        long killedAt = 0;
        var notices = new int[3];
        var hosts = new NvmeTcpController?[3];
        foreach (int s in survivors)
        {
            int n = s;
            hosts[n] = await NvmeTcpController.ConnectAsync("127.0.0.1", _c!.Nodes[n].IoPort, Nqn, HostNqn, new NvmeTcpControllerOptions
            {
                AsyncEventHandler = dw0 =>
                {
                    if (dw0 == AnaChangeEvent && Volatile.Read(ref killedAt) != 0) Interlocked.Increment(ref notices[n]);
                    if (hosts[n] is { } h) _ = AnaStateAsync(h);
                },
            }).WaitAsync(Limit);
            Assert.Equal((byte)0x03, await AnaStateAsync(hosts[n]!));
        }

        try
        {
            await using var first = await _c!.ConnectOptimizedAsync(primary, NoKeepAlive);
            var path = first;
            int promoted = -1;
            Task<NvmeTcpController>? failover = null;
            var gate = new object();
            // The first writer whose write fails looks for the survivor whose path turned optimized; all then use it.
            Task<NvmeTcpController> NewPathAsync()
            {
                lock (gate) return failover ??= Task.Run(async () =>
                {
                    await Eventually.Until(async () =>
                    {
                        foreach (int s in survivors)
                            if (await AnaStateAsync(hosts[s]!) == 0x01) promoted = s;
                        return promoted >= 0;
                    }, "a survivor's path optimized", Limit);
                    return hosts[promoted]!;
                });
            }

            var acked = new ConcurrentDictionary<int, byte[]>();
            long resumedAt = 0;
            int retried = 0;
            var writers = Enumerable.Range(0, Writers).Select(w => Task.Run(async () =>
            {
                for (int i = 0, afterFailover = 0; afterFailover < 50; i++)
                {
                    int block = w * BlocksPerWriter + i % BlocksPerWriter;
                    var data = Pattern(BlockSize, w * 1_000_000 + i);
                    var through = Volatile.Read(ref path);
                    try
                    {
                        await through.WriteAsync(nsid, (ulong)block, 1, data).AsTask().WaitAsync(Limit);
                    }
                    catch (Exception e) when (Volatile.Read(ref killedAt) != 0 && e is NvmeException or NvmeTransportException or IOException or ObjectDisposedException)
                    {
                        // Not acknowledged: the same write again on the new primary's path (a block write is idempotent).
                        through = await NewPathAsync();
                        Volatile.Write(ref path, through);
                        await through.WriteAsync(nsid, (ulong)block, 1, data).AsTask().WaitAsync(Limit);
                        Interlocked.Increment(ref retried);
                        Interlocked.CompareExchange(ref resumedAt, Stopwatch.GetTimestamp(), 0);
                    }
                    acked[block] = data;
                    if (!ReferenceEquals(through, first)) afterFailover++;
                }
            })).ToArray();

            await Eventually.Until(() => acked.Count >= 200 || writers.Any(t => t.IsCompleted), "writers running", Limit);
            Volatile.Write(ref killedAt, Stopwatch.GetTimestamp());
            Assert.Equal(137, await _c.Nodes[primary].StopAsync(9));
            await Task.WhenAll(writers).WaitAsync(2 * Limit);

            // The pause a host saw: from the kill to the first write acknowledged on the new primary.
            var pause = Stopwatch.GetElapsedTime(killedAt, Volatile.Read(ref resumedAt));
            output.WriteLine($"failover pause {pause.TotalSeconds:0.00} s (lease TTL {LeaseTtl} s), {retried} writes retried, " +
                $"{acked.Count} blocks acknowledged, load average {File.ReadAllText("/proc/loadavg").Trim()}");
            Assert.True(retried > 0, "no write failed over");
            Assert.Contains(promoted, survivors);
            await Eventually.Until(() => Volatile.Read(ref notices[promoted]) > 0, $"an ANA change notice from node {promoted}", Limit);

            // etcd: the promoted node is primary at a later generation; the killed one left the in-sync set, the other
            // survivor stayed in it (it followed the promotion before the new primary forwarded to it).
            var v = (await _c.GetAsync(promoted, "v1/volumes/vol-k"))!;
            Assert.Equal(promoted, v["primary"]!.GetValue<int>());
            Assert.True(v["generation"]!.GetValue<long>() > generation);
            await Eventually.Until(async () => !Ints((await _c.GetAsync(promoted, "v1/volumes/vol-k"))!["in_sync"]).Contains(primary),
                "the killed node out of the in-sync set", Limit);
            Assert.Equal(survivors, Ints((await _c.GetAsync(promoted, "v1/volumes/vol-k"))!["in_sync"]).Order());

            await AssertHoldsAsync(hosts[promoted]!, nsid, acked, Writers * BlocksPerWriter);
        }
        finally
        {
            foreach (var h in hosts)
                if (h is not null) await h.DisposeAsync();
        }
    }

    [EtcdFact]
    public async Task A_primary_paused_past_its_lease_is_replaced_and_once_resumed_acknowledges_no_write_and_answers_ANA_inaccessible()
    {
        var (nsid, primary, _) = await _c!.CreateVolumeAsync("vol-s");
        int other = (primary + 1) % 3;
        await using var host = await _c!.ConnectOptimizedAsync(primary, NoKeepAlive);

        var acked = new ConcurrentDictionary<int, byte[]>();
        var afterResume = new ConcurrentQueue<(bool IssuedAfter, string Outcome)>();
        long resumedAt = 0;
        bool done = false;
        var writers = StartWriters(host, nsid, acked, () => Volatile.Read(ref done), (issuedAt, outcome) =>
        {
            long resumed = Volatile.Read(ref resumedAt);
            if (resumed != 0) afterResume.Enqueue((issuedAt > resumed, outcome));
        });
        await Eventually.Until(() => acked.Count >= 100 || writers.Any(t => t.IsCompleted), "writers running", Limit);

        // Paused with writes in flight: past the lease, etcd expires it and the leader promotes an in-sync secondary.
        _c.Nodes[primary].Signal(Sigstop);
        int promoted = -1;
        try
        {
            await Eventually.Until(async () =>
            {
                promoted = (await _c.GetAsync(other, "v1/volumes/vol-s"))?["primary"]?.GetValue<int>() ?? -1;
                return promoted >= 0 && promoted != primary;
            }, "another node promoted while the primary is paused", Limit);
        }
        finally
        {
            Volatile.Write(ref resumedAt, Stopwatch.GetTimestamp());
            _c.Nodes[primary].Signal(Sigcont);
        }

        // Resumed: its fence is down (no renewal for far longer than 5/6 of the TTL), so nothing it completes is a
        // success: the writes that were in flight and every new one.
        await Eventually.Until(() => afterResume.Count(o => o.IssuedAfter) >= 20 || writers.Any(t => t.IsCompleted), "writes issued after the resume", Limit);
        Volatile.Write(ref done, true);
        await Task.WhenAll(writers).WaitAsync(Limit);
        var outcomes = afterResume.ToArray();
        output.WriteLine($"after the resume: {outcomes.Length} completions, {outcomes.Count(o => o.IssuedAfter)} issued after; " +
            $"load average {File.ReadAllText("/proc/loadavg").Trim()}");
        Assert.DoesNotContain(outcomes, o => o.Outcome == "ok");
        Assert.All(outcomes.Where(o => o.IssuedAfter), o => Assert.Equal(nameof(NvmeStatus.AsymmetricAccessInaccessible), o.Outcome));
        Assert.Contains(outcomes, o => o.IssuedAfter);
        Assert.Equal((byte)0x03, await AnaStateAsync(host)); // it reports its path inaccessible

        // Every write acknowledged before the pause is on the promoted primary.
        await using var promotedHost = await _c.ConnectOptimizedAsync(promoted);
        await AssertHoldsAsync(promotedHost, nsid, acked, Writers * BlocksPerWriter);
    }

    [EtcdFact]
    public async Task A_primary_paused_for_less_than_its_fence_keeps_serving()
    {
        var (nsid, primary, generation) = await _c!.CreateVolumeAsync("vol-p");
        await using var host = await _c!.ConnectOptimizedAsync(primary, NoKeepAlive);
        var acked = new ConcurrentDictionary<int, byte[]>();
        var failures = new ConcurrentQueue<string>();
        bool done = false;
        var writers = StartWriters(host, nsid, acked, () => Volatile.Read(ref done), (_, outcome) =>
        {
            if (outcome != "ok") failures.Enqueue(outcome);
        });
        await Eventually.Until(() => acked.Count >= 100 || writers.Any(t => t.IsCompleted), "writers running", Limit);

        // 1.5 s is well inside the 5 s fence (renewals go out every second).
        _c.Nodes[primary].Signal(Sigstop);
        await Task.Delay(1500);
        _c.Nodes[primary].Signal(Sigcont);
        int before = acked.Count;
        await Eventually.Until(() => acked.Count >= before + 100 || writers.Any(t => t.IsCompleted), "writes acknowledged after the resume", Limit);
        Volatile.Write(ref done, true);
        await Task.WhenAll(writers).WaitAsync(Limit);

        Assert.Empty(failures);
        using (var http = new HttpClient())
            Assert.Contains("duroslight_cluster_fence_up 1", await http.GetStringAsync($"http://127.0.0.1:{_c.MetricsPorts[primary]}/metrics"));
        var v = (await _c.GetAsync(primary, "v1/volumes/vol-p"))!;
        Assert.Equal(primary, v["primary"]!.GetValue<int>());
        Assert.Equal(generation, v["generation"]!.GetValue<long>());
        await AssertHoldsAsync(host, nsid, acked, Writers * BlocksPerWriter);
    }

    /// <summary>
    /// Writers on distinct blocks (each block written once), paced so they never run out of blocks; each completion is
    /// reported with the time its write was issued and "ok" or the failure (an NVMe status name or the exception type).
    /// </summary>
    private static Task[] StartWriters(NvmeTcpController host, uint nsid, ConcurrentDictionary<int, byte[]> acked, Func<bool> done,
        Action<long, string> completed) =>
        [.. Enumerable.Range(0, Writers).Select(w => Task.Run(async () =>
        {
            for (int i = 0; i < BlocksPerWriter && !done(); i++)
            {
                int block = w * BlocksPerWriter + i;
                var data = Pattern(BlockSize, w * 1_000_000 + i);
                long issued = Stopwatch.GetTimestamp();
                string outcome = "ok";
                try
                {
                    await host.WriteAsync(nsid, (ulong)block, 1, data).AsTask().WaitAsync(Limit);
                    acked[block] = data;
                }
                catch (NvmeException e)
                {
                    outcome = e.Status == NvmeStatus.AsymmetricAccessInaccessible ? nameof(NvmeStatus.AsymmetricAccessInaccessible) : e.Status.ToString();
                }
                catch (Exception e) when (e is NvmeTransportException or IOException)
                {
                    outcome = e.GetType().Name;
                }
                completed(issued, outcome);
                await Task.Delay(5);
            }
        }))];
}
