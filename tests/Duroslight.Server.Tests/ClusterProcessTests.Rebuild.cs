using System.Text.Json.Nodes;
using Duroslight.Tests.Shared;
using Xunit;
using static Duroslight.Server.Tests.ClusterProcesses;

namespace Duroslight.Server.Tests;

/// <summary>Rebuild: a secondary killed, written past and restarted comes back into the in-sync set with every write.</summary>
public sealed partial class ClusterProcessTests
{
    /// <summary>Slow enough (16 MiB in about 8 s) that host writes land while the rebuild copies and `ctl` (a process) sees it.</summary>
    private const string RebuildMiBPerSecond = "2";

    [EtcdFact]
    public async Task A_restarted_secondary_is_rebuilt_while_hosts_write_rejoins_the_in_sync_set_and_holds_every_write()
    {
        const int Blocks = 4096; // 16 MiB of 4 KiB blocks
        var (code, _, stderr) = await RunCli("ctl", "--socket", Socket(0), "volumes", "create", "vol-b", "16M", "--replicas", "3");
        Assert.True(code == 0, stderr);
        var vol = (await GetAsync(0, "v1/volumes/vol-b"))!;
        uint nsid = vol["nsid"]!.GetValue<uint>();
        int primary = vol["primary"]!.GetValue<int>();
        int[] secondaries = [.. new[] { 0, 1, 2 }.Where(n => n != primary)];
        int victim = secondaries[0], other = secondaries[1];
        var expected = new byte[Blocks * 4096];

        await using (var host = await ConnectOptimizedAsync(primary))
        {
            async Task Write(int block, int count, int seed)
            {
                var data = Pattern(count * 4096, seed);
                await host.WriteAsync(nsid, (ulong)block, count, data);
                data.CopyTo(expected, block * 4096);
            }

            // Before the kill: every replica gets these.
            await Write(0, 64, 1);
            await Write(1000, 32, 2);

            // The secondary killed and written past: dropped from the in-sync set. Its memory store comes back empty.
            Assert.Equal(137, await Nodes[victim].StopAsync(9));
            await Write(2000, 96, 3); // several chunks, so several shards copy them later
            await Write(30, 8, 4);    // over data it had before
            await host.WriteZeroesAsync(nsid, 1010, 4);
            Array.Clear(expected, 1010 * 4096, 4 * 4096);
            Assert.DoesNotContain(victim, Ints((await GetAsync(primary, "v1/volumes/vol-b"))!["in_sync"]));

            // Restarted once its old lease is gone (see the report: a restart inside the old lease's TTL can lose its own new lease).
            await Eventually.Until(async () => StateOf(await NodesAsync(primary), victim) == "Down", $"node {victim} down", Limit);
            await _cluster!.RestartAsync(victim);

            // Host writes go on while it is rebuilt (the rate limit keeps the copy at about 8 s); the primary shows it
            // as rebuilding with the chunks left, in `ctl volumes show` and in its metrics.
            bool sawRebuilding = false, sawMetrics = false;
            int seed = 100;
            await Eventually.Until(async () =>
            {
                var v = (await GetAsync(primary, "v1/volumes/vol-b"))!;
                if (v["replica_states"]?[victim.ToString()]?.GetValue<string>() == "rebuilding"
                    && v["rebuild"]?[victim.ToString()] is JsonObject progress && progress["chunks_left"]!.GetValue<long>() is > 0
                    && progress["chunks_total"]!.GetValue<long>() == Blocks * 4096 / (128 * 1024))
                {
                    if (!sawRebuilding)
                    {
                        var (c, shown, _) = await RunCli("ctl", "--socket", Socket(primary), "volumes", "show", "vol-b");
                        sawRebuilding = c == 0 && shown.Contains("rebuilding", StringComparison.Ordinal) && shown.Contains("chunks_left", StringComparison.Ordinal);
                    }
                    using var http = new HttpClient();
                    string page = await http.GetStringAsync($"http://127.0.0.1:{MetricsPorts[primary]}/metrics");
                    sawMetrics |= page.Contains($"duroslight_rebuild_chunks_left{{volume=\"vol-b\",peer=\"{victim}\"}}", StringComparison.Ordinal)
                        && page.Contains($"duroslight_rebuild_eta_seconds{{volume=\"vol-b\",peer=\"{victim}\"}}", StringComparison.Ordinal);
                }
                for (int i = 0; i < 4; i++, seed++) await Write(seed * 7 % (Blocks / 2 - 8), 1 + seed % 8, seed); // first half only: the rest stays sparse
                return Ints(v["in_sync"]).Contains(victim);
            }, $"node {victim} rebuilt and back in the in-sync set", Limit);
            Assert.True(sawRebuilding, "`ctl volumes show` on the primary never showed the rebuild under way");
            Assert.True(sawMetrics, "the primary's metrics never showed the rebuild's chunks left");
            await Write(3000, 16, 5); // after the join: in sync, so forwarded as any write

            // Sparse stays sparse: chunks never written (most of the second half) were not copied as zeros.
            long primaryBytes = await _cluster!.AllocatedAsync(primary, "vol-b"), rebuiltBytes = await _cluster.AllocatedAsync(victim, "vol-b");
            Assert.InRange(primaryBytes, 1, Blocks * 4096L * 3 / 4);
            Assert.InRange(rebuiltBytes, 1, primaryBytes);
        }

        // Only the rebuilt replica left: the others killed, it is promoted (only an in-sync replica can be) and must
        // hold every acknowledged write, those before its restart included.
        Assert.Equal(137, await Nodes[primary].StopAsync(9));
        Assert.Equal(137, await Nodes[other].StopAsync(9));
        await Eventually.Until(async () => (await GetAsync(victim, "v1/volumes/vol-b"))?["primary"]?.GetValue<int>() == victim,
            $"node {victim} promoted", Limit);
        await using (var host = await ConnectOptimizedAsync(victim))
        {
            var back = new byte[expected.Length];
            for (int block = 0; block < Blocks; block += 128) await host.ReadAsync(nsid, (ulong)block, 128, back.AsMemory(block * 4096, 128 * 4096));
            for (int block = 0; block < Blocks; block++)
                Assert.True(expected.AsSpan(block * 4096, 4096).SequenceEqual(back.AsSpan(block * 4096, 4096)), $"block {block} differs on the rebuilt replica");
        }
    }
}
