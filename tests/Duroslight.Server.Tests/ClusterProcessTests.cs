using System.Buffers.Binary;
using System.Globalization;
using System.Threading.Channels;
using System.Text.Json.Nodes;
using Duroslight.Host;
using Duroslight.Protocol.Nvme;
using Duroslight.Server.Control;
using Duroslight.Tests.Shared;
using Xunit;
using static Duroslight.Server.Tests.ClusterProcesses;

namespace Duroslight.Server.Tests;

/// <summary>
/// A real etcd and three real `duroslight serve` processes in one cluster: placement through the elected leader,
/// replicas opened on every node, leader failover and lease expiry after SIGKILL.
/// </summary>
public sealed partial class ClusterProcessTests : IAsyncLifetime
{
    private const string Nqn = ClusterProcesses.Nqn;
    private const string HostNqn = ClusterProcesses.HostNqn;
    private const string OtherHostNqn = "nqn.2014-08.org.nvmexpress:uuid:c1c1c1c1-0000-0000-0000-000000000002";
    private const uint DiscoveryLogChanged = 0x0070_F002, AnaChange = 0x000C_0302;
    private static readonly TimeSpan Limit = ClusterProcesses.Limit;

    /// <summary>
    /// 5 s rather than the minimum: a primary's fence drops 5/6 of it after its last renewal was sent, and on a loaded
    /// 2-core machine running the suite in parallel a 2.5 s late renewal did happen (a write refused with the path status).
    /// </summary>
    private const int LeaseTtl = 5;
    private ClusterProcesses? _cluster;

    private List<ServerProcess> Nodes => _cluster!.Nodes;
    private int[] MetricsPorts => _cluster!.MetricsPorts;

    public async Task InitializeAsync() => _cluster = await ClusterProcesses.StartAsync(LeaseTtl, "--rebuild-rate", RebuildMiBPerSecond);

    public Task DisposeAsync()
    {
        _cluster?.Dispose();
        return Task.CompletedTask;
    }

    [EtcdFact]
    public async Task A_three_replica_volume_created_through_one_node_is_placed_and_opened_on_all_three()
    {
        var (code, stdout, stderr) = await RunCli("ctl", "--socket", Socket(1), "volumes", "create", "vol-a", "16M", "--replicas", "3");
        Assert.True(code == 0, stderr);
        Assert.Contains("name=vol-a", stdout);

        // Every node sees the same record, placed on the three nodes with a primary, and every replica open there.
        for (int i = 0; i < 3; i++)
        {
            JsonNode? v = null;
            await Eventually.Until(async () =>
            {
                v = await GetAsync(i, "v1/volumes/vol-a");
                return v?["replica_states"] is JsonObject states && states.Count == 3
                    && states.All(s => s.Value!.GetValue<string>() == "open") && v["local"]!.GetValue<bool>();
            }, $"vol-a open on all replicas, seen from node {i}", Limit);
            Assert.Equal([0, 1, 2], Ints(v!["placement"]));
            Assert.InRange(v["primary"]!.GetValue<int>(), 0, 2);
            Assert.Equal([0, 1, 2], Ints(v["in_sync"])); // a new volume is empty everywhere: every replica in sync
            Assert.Equal(1u, v["nsid"]!.GetValue<uint>());
        }

        await One_namespace_on_every_node_the_primary_optimized_the_others_inaccessible((await GetAsync(0, "v1/volumes/vol-a"))!);

        // Node 0's metrics: the cluster's nodes and the role of its replica.
        using (var http = new HttpClient())
        {
            string page = await http.GetStringAsync($"http://127.0.0.1:{MetricsPorts[0]}/metrics");
            Assert.Contains("duroslight_cluster_nodes{state=\"live\"} 3", page);
            var vol = (await GetAsync(0, "v1/volumes/vol-a"))!;
            string role = vol["primary"]!.GetValue<int>() == 0 ? "primary" : "secondary";
            string id = vol["id"]!.GetValue<string>();
            Assert.Contains($"duroslight_replica_role{{volume=\"vol-a\",volume_id=\"{id}\",role=\"{role}\"}} 1", page);
            Assert.Contains($"duroslight_replica_in_sync{{volume=\"vol-a\",volume_id=\"{id}\"}} 1", page);
        }

        // Three one-replica volumes spread over the three nodes (placement balances by replica count).
        var alone = new List<int>();
        foreach (string name in new[] { "b1", "b2", "b3" })
        {
            (code, _, stderr) = await RunCli("ctl", "--socket", Socket(2), "volumes", "create", name, "8M", "--replicas", "1");
            Assert.True(code == 0, stderr);
            var v = await GetAsync(0, $"v1/volumes/{name}");
            alone.Add(Assert.Single(Ints(v!["placement"])));
        }
        Assert.Equal([0, 1, 2], alone.Order());

        // More replicas than live nodes is refused before anything is written; so is a taken name.
        using (var client = new ControlClient(Socket(0)))
        {
            var (status, body) = await client.SendAsync(HttpMethod.Post, "v1/volumes", new JsonObject { ["name"] = "vol-a", ["size"] = "8M", ["replicas"] = 1 });
            Assert.Equal(409, status);
            Assert.Contains("exists", body!["error"]!.GetValue<string>());
        }

        // A volume's host list lives in its etcd record: created with one host through node 0, it is masked on node 2
        // for another host until node 1 attaches that host.
        (code, stdout, stderr) = await RunCli("ctl", "--socket", Socket(0), "volumes", "create", "vol-h", "8M", "--replicas", "3", "--hosts", HostNqn);
        Assert.True(code == 0, stderr);
        uint masked = uint.Parse(Field(stdout, "nsid"), CultureInfo.InvariantCulture);
        await using (var other = await NvmeTcpController.ConnectAsync("127.0.0.1", Nodes[2].IoPort, Nqn, OtherHostNqn).WaitAsync(Limit))
        {
            await Eventually.Until(async () => (await GetAsync(2, "v1/volumes/vol-h"))?["local"]?.GetValue<bool>() == true, "vol-h open on node 2", Limit);
            Assert.DoesNotContain(masked, await ActiveNamespaces(other));
            (code, _, stderr) = await RunCli("ctl", "--socket", Socket(1), "volumes", "attach", "vol-h", OtherHostNqn);
            Assert.True(code == 0, stderr);
            await Eventually.Until(async () => (await ActiveNamespaces(other)).Contains(masked), "node 2 shows vol-h to the attached host", Limit);
        }

        (code, stdout, _) = await RunCli("ctl", "--socket", Socket(0), "nodes", "list");
        Assert.Equal(0, code);
        var lines = stdout.Trim().Split('\n');
        Assert.Equal(3, lines.Length);
        Assert.All(lines, l => Assert.Contains("state=Active", l));
        Assert.Single(lines, l => l.Contains("leader=true", StringComparison.Ordinal));

        // A host list set through one node reaches every node (hosts/0 in etcd); the others' hosts are refused there.
        (code, _, stderr) = await RunCli("ctl", "--socket", Socket(1), "hosts", "set", "default", HostNqn);
        Assert.True(code == 0, stderr);
        for (int i = 0; i < 3; i++)
            await Eventually.Until(async () => await GetAsync(i, "v1/subsystems") is JsonArray subs && !subs[0]!["allow_any_host"]!.GetValue<bool>()
                && Assert.Single(subs[0]!["hosts"]!.AsArray())!.GetValue<string>() == HostNqn, $"node {i} has the cluster's host list", Limit);
        await Assert.ThrowsAsync<NvmeConnectException>(() => NvmeTcpController.ConnectAsync("127.0.0.1", Nodes[2].IoPort, Nqn, OtherHostNqn));
        await using var allowed = await NvmeTcpController.ConnectAsync("127.0.0.1", Nodes[2].IoPort, Nqn, HostNqn).WaitAsync(Limit);
    }

    [EtcdFact]
    public async Task The_leader_killed_with_SIGKILL_shows_down_and_another_node_leads_and_places_and_promotes_an_in_sync_replica()
    {
        var (code, _, stderr) = await RunCli("ctl", "--socket", Socket(0), "volumes", "create", "vol-k", "8M", "--replicas", "3");
        Assert.True(code == 0, stderr);
        int leader = LeaderOf(await NodesAsync(0));
        Assert.InRange(leader, 0, 2);
        int primary = (await GetAsync(0, "v1/volumes/vol-k"))!["primary"]!.GetValue<int>();

        int other = (leader + 1) % 3;
        var discoveryEvents = Channel.CreateUnbounded<uint>();
        await using var discovery = await NvmeTcpController.ConnectAsync("127.0.0.1", Nodes[other].IoPort, NvmeTcpController.DiscoveryNqn, HostNqn,
            new NvmeTcpControllerOptions { IoQueues = 0, KeepAliveTimeoutMs = 60_000, AsyncEventHandler = dw0 => discoveryEvents.Writer.TryWrite(dw0) }).WaitAsync(Limit);
        Assert.Equal(3, (await discovery.ReadDiscoveryLogAsync()).Entries.Count);

        Assert.Equal(137, await Nodes[leader].StopAsync(9));
        JsonArray nodes = [];
        await Eventually.Until(async () =>
        {
            nodes = await NodesAsync(other);
            return StateOf(nodes, leader) == "Down" && LeaderOf(nodes) is >= 0 and var l && l != leader;
        }, "the killed node Down and another node leading", Limit);
        Assert.Equal(2, CountState(nodes, "Active"));
        // The persistent discovery controller hears that the killed node's port left the log.
        Assert.Equal(DiscoveryLogChanged, await discoveryEvents.Reader.ReadAsync().AsTask().WaitAsync(Limit));
        await Eventually.Until(async () => (await discovery.ReadDiscoveryLogAsync()).Entries.Count == 2, "discovery log down to two ports", Limit);

        // A primary the kill took away is replaced by a live in-sync replica (every secondary holds every acknowledged
        // write), which drops the dead node from the in-sync set; a live primary stays.
        int expected = -1;
        await Eventually.Until(async () =>
        {
            var v = (await GetAsync(other, "v1/volumes/vol-k"))!;
            expected = v["primary"]!.GetValue<int>();
            return expected >= 0 && expected != leader && (primary == leader || expected == primary) && !Ints(v["in_sync"]).Contains(leader);
        }, $"vol-k's primary live and in sync (was {primary}, killed {leader})", Limit);
        uint nsid = (await GetAsync(other, "v1/volumes/vol-k"))!["nsid"]!.GetValue<uint>();
        Assert.Equal(1u, nsid);
        foreach (int n in new[] { other, (leader + 2) % 3 })
        {
            await using var host = await NvmeTcpController.ConnectAsync("127.0.0.1", Nodes[n].IoPort, Nqn, HostNqn).WaitAsync(Limit);
            await Eventually.Until(async () => (await host.GetLogPageAsync(LogPageId.AsymmetricNamespaceAccess, AnaLogPage.Size(1, false)))[32] == (n == expected ? 0x01 : 0x03),
                $"node {n}'s ANA state for vol-k", Limit);
        }

        // The new leader places new volumes on the live nodes.
        (code, _, stderr) = await RunCli("ctl", "--socket", Socket(other), "volumes", "create", "vol-n", "8M", "--replicas", "2");
        Assert.True(code == 0, stderr);
        var placed = Ints((await GetAsync(other, "v1/volumes/vol-n"))!["placement"]);
        Assert.Equal(2, placed.Length);
        Assert.DoesNotContain(leader, placed);
        using var client = new ControlClient(Socket(other));
        Assert.Equal(409, (await client.SendAsync(HttpMethod.Post, "v1/volumes", new JsonObject { ["name"] = "too-many", ["size"] = "8M", ["replicas"] = 3 })).Status);

        // A graceful stop revokes the lease: the node is Down at once, not after the TTL.
        int third = (leader + 2) % 3;
        Assert.Equal(0, await Nodes[third].StopAsync(15));
        nodes = await NodesAsync(other);
        Assert.Equal("Down", StateOf(nodes, third));
    }

    [EtcdFact]
    public async Task Writes_through_the_primary_reach_every_in_sync_replica_a_killed_secondary_is_dropped_before_the_next_ack_and_a_promoted_replica_has_them()
    {
        var (code, _, stderr) = await RunCli("ctl", "--socket", Socket(0), "volumes", "create", "vol-r", "16M", "--replicas", "3");
        Assert.True(code == 0, stderr);
        var vol = (await GetAsync(0, "v1/volumes/vol-r"))!;
        uint nsid = vol["nsid"]!.GetValue<uint>();
        int primary = vol["primary"]!.GetValue<int>();
        Assert.Equal([0, 1, 2], Ints(vol["in_sync"]));
        int[] secondaries = [.. new[] { 0, 1, 2 }.Where(n => n != primary)];

        // Through the primary: a multi-chunk write (crosses 128 KiB chunks, so several shards forward), small writes,
        // a FUA write, write-zeroes and a deallocate over written data, and a flush.
        var expected = new byte[1024 * 4096];
        await using (var host = await ConnectOptimizedAsync(primary))
        {
            var big = Pattern(96 * 4096, 1);
            await host.WriteAsync(nsid, 10, 96, big);
            big.CopyTo(expected, 10 * 4096);
            for (int i = 0; i < 16; i++)
            {
                var small = Pattern(4096, 100 + i);
                await host.WriteAsync(nsid, (ulong)(200 + 3 * i), 1, small, fua: i % 4 == 0);
                small.CopyTo(expected, (200 + 3 * i) * 4096);
            }
            await host.WriteZeroesAsync(nsid, 20, 8);
            Array.Clear(expected, 20 * 4096, 8 * 4096);
            await host.DeallocateAsync(nsid, [new LbaRange(40, 40)]);
            Array.Clear(expected, 40 * 4096, 40 * 4096);
            await host.FlushAsync(nsid);

            // The primary's metrics: a connected link to each secondary, commands and bytes forwarded to each.
            using (var http = new HttpClient())
            {
                string page = await http.GetStringAsync($"http://127.0.0.1:{MetricsPorts[primary]}/metrics");
                foreach (int s in secondaries)
                {
                    Assert.Contains($"duroslight_replication_peer_connected{{peer=\"{s}\"}} 1", page);
                    Assert.Matches($"duroslight_replication_bytes_total{{peer=\"{s}\"}} [1-9]", page);
                    Assert.Matches($"duroslight_replication_commands_total{{peer=\"{s}\"}} [1-9]", page);
                }
            }

            // A secondary killed with SIGKILL while four writers keep writes in flight: every write issued after the
            // kill is acknowledged only once the secondary left the in-sync set (checked at the first such ack).
            var acked = new System.Collections.Concurrent.ConcurrentDictionary<int, byte[]>();
            var killed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Task<int[]>? firstCheck = null;
            var gate = new object();
            int started = 0;
            var writers = Enumerable.Range(0, 4).Select(w => Task.Run(async () =>
            {
                for (int i = 0, afterKill = 0; afterKill < 30; i++)
                {
                    bool issuedAfterKill = killed.Task.IsCompleted;
                    int block = 800 + w * 32 + i % 32;
                    var data = Pattern(4096, 1000 * (w + 1) + i);
                    await host.WriteAsync(nsid, (ulong)block, 1, data);
                    acked[block] = data;
                    if (i == 10) Interlocked.Increment(ref started);
                    if (!issuedAfterKill) continue;
                    afterKill++;
                    lock (gate) firstCheck ??= Task.Run(async () => Ints((await GetAsync(primary, "v1/volumes/vol-r"))!["in_sync"]));
                }
            })).ToArray();
            await Eventually.Until(() => Task.FromResult(Volatile.Read(ref started) == 4), "writers running", Limit);
            Assert.Equal(137, await Nodes[secondaries[0]].StopAsync(9));
            killed.SetResult();
            await Task.WhenAll(writers).WaitAsync(Limit);
            foreach (var (block, data) in acked) data.CopyTo(expected, block * 4096);
            var inSync = await firstCheck!;
            Assert.DoesNotContain(secondaries[0], inSync);
            Assert.Equal(new[] { primary, secondaries[1] }.Order(), inSync.Order());
            // Writes go on with the remaining secondary.
            var more = Pattern(4096, 8);
            await host.WriteAsync(nsid, 700, 1, more);
            more.CopyTo(expected, 700 * 4096);
        }

        // The primary killed: the remaining in-sync secondary is promoted and holds every acknowledged write.
        Assert.Equal(137, await Nodes[primary].StopAsync(9));
        int survivor = secondaries[1];
        await Eventually.Until(async () => (await GetAsync(survivor, "v1/volumes/vol-r"))?["primary"]!.GetValue<int>() == survivor,
            $"node {survivor} promoted", Limit);
        await using (var host = await ConnectOptimizedAsync(survivor))
        {
            var back = new byte[expected.Length];
            for (int block = 0; block < 1024; block += 128) await host.ReadAsync(nsid, (ulong)block, 128, back.AsMemory(block * 4096, 128 * 4096));
            for (int block = 0; block < 1024; block++)
                Assert.True(expected.AsSpan(block * 4096, 4096).SequenceEqual(back.AsSpan(block * 4096, 4096)), $"block {block} differs on the promoted replica");
        }
    }

    [EtcdFact]
    public async Task A_node_killed_and_restarted_at_once_waits_out_its_old_lease_and_joins_again()
    {
        // The restart comes well within the old run's TTL: the node must wait for that key to expire and then register
        // under a lease of its own that is still alive (it used to take its lease before the wait and lose it).
        Assert.Equal(137, await Nodes[2].StopAsync(9));
        await _cluster!.RestartAsync(2);
        await Eventually.Until(async () => StateOf(await NodesAsync(0), 2) == "Active" && !Nodes[2].HasExited, "node 2 Active again", Limit);
        Assert.Contains("waiting for it to expire", Nodes[2].Output);
        await Task.Delay(TimeSpan.FromSeconds(LeaseTtl + 1)); // past the TTL of a lease granted before the wait
        Assert.False(Nodes[2].HasExited, Nodes[2].Output);
        Assert.Equal("Active", StateOf(await NodesAsync(0), 2));
    }

    [EtcdFact]
    public async Task A_secondary_that_cannot_open_its_replica_leaves_the_in_sync_set_before_the_primary_acknowledges_a_write()
    {
        // Node 2 comes back with a sparse store whose volumes directory is then made a file: creating its replica fails.
        await _cluster!.RestartAsync(2, memory: false);
        await Eventually.Until(async () => CountState(await NodesAsync(0), "Active") == 3, "node 2 Active again", Limit);
        string volumes = Path.Combine(_cluster.NodeDir(2), "volumes");
        Directory.Delete(volumes, recursive: true);
        await File.WriteAllTextAsync(volumes, "not a directory");

        var (code, stdout, stderr) = await RunCli("ctl", "--socket", Socket(1), "volumes", "create", "vol-f", "16M", "--replicas", "3");
        Assert.True(code == 0, stderr);
        Assert.Equal("[0,1]", Field(stdout, "in_sync")); // the create answers once the failed replica is out of the set
        var vol = (await GetAsync(0, "v1/volumes/vol-f"))!;
        int primary = vol["primary"]!.GetValue<int>();
        Assert.NotEqual(2, primary); // the first volume's primary is the lowest index
        uint nsid = vol["nsid"]!.GetValue<uint>();
        int good = 1 - primary;

        // The failed replica is dropped from the in-sync set through etcd; only then does the primary serve.
        await Eventually.Until(async () => (await GetAsync(0, "v1/volumes/vol-f"))?["replica_states"]?["2"]?.GetValue<string>() == "failed",
            "node 2's replica failed", Limit);
        await using var host = await ConnectOptimizedAsync(primary);
        await host.WriteAsync(nsid, 0, 1, Pattern(4096, 7));
        vol = (await GetAsync(primary, "v1/volumes/vol-f"))!;
        Assert.Equal(new[] { primary, good }.Order(), Ints(vol["in_sync"]).Order());
        Assert.Equal("open", vol["replica_states"]![good.ToString(CultureInfo.InvariantCulture)]!.GetValue<string>());

        // The write went to the remaining in-sync secondary, and nothing to the dropped one.
        using var http = new HttpClient();
        string page = await http.GetStringAsync($"http://127.0.0.1:{MetricsPorts[primary]}/metrics");
        Assert.Matches($"duroslight_replication_bytes_total{{peer=\"{good}\"}} [1-9]", page);
        Assert.DoesNotMatch("duroslight_replication_bytes_total{peer=\"2\"} [1-9]", page);
        Assert.False(Nodes[2].HasExited, "a replica that cannot be created must not stop its node");
    }

    [EtcdFact]
    public async Task Nodes_stop_with_SIGTERM_cleanly_when_etcd_is_gone()
    {
        var (code, _, stderr) = await RunCli("ctl", "--socket", Socket(0), "volumes", "create", "vol-s", "8M", "--replicas", "3");
        Assert.True(code == 0, stderr);
        _cluster!.KillEtcd(); // every etcd stream of the nodes breaks
        for (int i = 0; i < 3; i++)
        {
            var node = Nodes[i];
            await Eventually.Until(() => Task.FromResult(node.Output.Contains("etcd keep-alive:", StringComparison.Ordinal)),
                $"node {i} notices etcd is gone and keeps trying", Limit);
        }
        for (int i = 0; i < 3; i++) Assert.True(await Nodes[i].StopAsync(15) == 0, Nodes[i].Output);
    }

    /// <summary>
    /// Through NVMe/TCP on each node: the same NSID and NGUID (the volume UUID) of the same subsystem, CMIC with ANA
    /// reporting, the ANA log page showing this node's state, I/O served by the primary and refused with the ANA path
    /// status by the others, and a discovery log that lists every node's I/O port.
    /// </summary>
    private async Task One_namespace_on_every_node_the_primary_optimized_the_others_inaccessible(JsonNode volume)
    {
        var id = Guid.Parse(volume["id"]!.GetValue<string>());
        uint nsid = volume["nsid"]!.GetValue<uint>();
        int primary = volume["primary"]!.GetValue<int>();
        var data = new byte[4096];
        data.AsSpan().Fill(0xC3);
        for (int i = 0; i < 3; i++)
        {
            await using var host = await NvmeTcpController.ConnectAsync("127.0.0.1", Nodes[i].IoPort, Nqn, HostNqn).WaitAsync(Limit);
            var ns = Assert.Single(host.Namespaces, n => n.Nsid == nsid);
            Assert.Equal(id, ns.Nguid);
            var identify = await host.IdentifyAsync(IdentifyCns.Controller);
            Assert.Equal(0b1010, identify[76] & 0b1010); // CMIC: multi-controller + ANA reporting
            var ana = await host.GetLogPageAsync(LogPageId.AsymmetricNamespaceAccess, AnaLogPage.Size(1, groupsOnly: false));
            Assert.Equal(1, BinaryPrimitives.ReadUInt16LittleEndian(ana.AsSpan(8)));
            Assert.Equal(nsid, BinaryPrimitives.ReadUInt32LittleEndian(ana.AsSpan(16))); // ANAGRPID
            Assert.Equal(i == primary ? 0x01 : 0x03, ana[16 + 16]); // optimized on the primary, inaccessible elsewhere
            if (i == primary)
            {
                await host.WriteAsync(nsid, 0, 1, data);
                var back = new byte[4096];
                await host.ReadAsync(nsid, 0, 1, back);
                Assert.Equal(data, back);
            }
            else
            {
                var e = await Assert.ThrowsAsync<NvmeException>(async () => await host.ReadAsync(nsid, 0, 1, new byte[4096]));
                Assert.Equal(NvmeStatus.AsymmetricAccessInaccessible, e.Status);
            }
            var log = await NvmeTcpController.DiscoverAsync("127.0.0.1", Nodes[i].IoPort, HostNqn).WaitAsync(Limit);
            Assert.Equal(Nodes.Select(n => n.IoPort.ToString()).Order(), log.Entries.Select(e => e.TrSvcId).Order());
            Assert.All(log.Entries, e => Assert.Equal(Nqn, e.SubNqn));
            Assert.Equal(3, log.Entries.Select(e => e.PortId).Distinct().Count());
        }
    }

    private string Socket(int index) => _cluster!.Socket(index);

    private Task<NvmeTcpController> ConnectOptimizedAsync(int node) => _cluster!.ConnectOptimizedAsync(node);

    private Task<JsonNode?> GetAsync(int node, string path) => _cluster!.GetAsync(node, path);

    private Task<JsonArray> NodesAsync(int node) => _cluster!.NodesAsync(node);

    private static async Task<uint[]> ActiveNamespaces(NvmeTcpController host)
    {
        var page = await host.IdentifyAsync(IdentifyCns.ActiveNamespaceList, 0);
        var list = new List<uint>();
        for (int i = 0; i + 4 <= page.Length && BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(i)) != 0; i += 4)
            list.Add(BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(i)));
        return [.. list];
    }

    private static string Field(string line, string key)
    {
        foreach (string part in line.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            if (part.StartsWith(key + "=", StringComparison.Ordinal)) return part[(key.Length + 1)..];
        throw new Xunit.Sdk.XunitException($"no {key}= in '{line}'");
    }
}
