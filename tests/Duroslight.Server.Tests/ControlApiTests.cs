using System.Buffers.Binary;
using System.Text.Json.Nodes;
using Duroslight.Host;
using Duroslight.Protocol.Nvme;
using Xunit;
using Duroslight.Tests.Shared;

namespace Duroslight.Server.Tests;

/// <summary>The control API over its Unix socket, checked against what hosts see (AENs, log pages, connections).</summary>
public sealed class ControlApiTests
{
    private const string Nqn = "nqn.2026-11.io.duroslight:default";
    private const string HostA = "nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-0000-0000-00000000000a";
    private const string HostB = "nqn.2014-08.org.nvmexpress:uuid:bbbbbbbb-0000-0000-0000-00000000000b";
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Socket_is_private_and_state_is_active()
    {
        await using var node = new NodeFixture();
        if (!OperatingSystem.IsWindows()) Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(node.Settings.ControlSocketPath));
        using var api = node.Control();
        var (status, body) = await api.GetAsync("v1/state");
        Assert.Equal(200, status);
        Assert.Equal("Active", body!["state"]!.GetValue<string>());
        Assert.Equal(1, body["volumes"]!.GetValue<int>());
    }

    [Fact]
    public async Task Volume_create_resize_delete_reach_a_connected_host_as_namespace_aens()
    {
        await using var node = new NodeFixture();
        using var api = node.Control();
        var events = System.Threading.Channels.Channel.CreateUnbounded<uint>();
        await using var host = await NvmeTcpController.ConnectAsync("127.0.0.1", node.IoPort, Nqn, HostA,
            new NvmeTcpControllerOptions { AsyncEventHandler = dw0 => events.Writer.TryWrite(dw0) }).WaitAsync(Limit);

        var (status, created) = await api.SendAsync(HttpMethod.Post, "v1/volumes", new JsonObject { ["name"] = "db", ["size"] = "32M" });
        Assert.Equal(200, status);
        Assert.Equal(2u, created!["nsid"]!.GetValue<uint>());
        Assert.Equal(0x0004_0002u, await events.Reader.ReadAsync().AsTask().WaitAsync(Limit));
        Assert.Equal(new uint[] { 2 }, await ChangedNamespaces(host));
        var ns2 = await host.IdentifyAsync(IdentifyCns.Namespace, 2);
        Assert.Equal(32L << 20 >> 12, BinaryPrimitives.ReadInt64LittleEndian(ns2));

        (status, _) = await api.SendAsync(HttpMethod.Post, "v1/volumes/db/resize", new JsonObject { ["size"] = 64L << 20 });
        Assert.Equal(200, status);
        Assert.Equal(0x0004_0002u, await events.Reader.ReadAsync().AsTask().WaitAsync(Limit));
        Assert.Equal(new uint[] { 2 }, await ChangedNamespaces(host));
        ns2 = await host.IdentifyAsync(IdentifyCns.Namespace, 2);
        Assert.Equal(64L << 20 >> 12, BinaryPrimitives.ReadInt64LittleEndian(ns2));

        (status, _) = await api.SendAsync(HttpMethod.Delete, "v1/volumes/nsid:2");
        Assert.Equal(200, status);
        Assert.Equal(0x0004_0002u, await events.Reader.ReadAsync().AsTask().WaitAsync(Limit));
        Assert.Equal(new uint[] { 2 }, await ChangedNamespaces(host));
        (status, var missing) = await api.GetAsync("v1/volumes/db");
        Assert.Equal(404, status);
        Assert.Contains("no volume 'db'", missing!["error"]!.GetValue<string>());
    }

    [Fact]
    public async Task Bad_volume_requests_are_refused_and_change_nothing()
    {
        await using var node = new NodeFixture();
        using var api = node.Control();
        Assert.Equal(400, (await api.SendAsync(HttpMethod.Post, "v1/volumes", new JsonObject { ["name"] = "x", ["size"] = "12345" })).Status);
        Assert.Equal(400, (await api.SendAsync(HttpMethod.Post, "v1/volumes", new JsonObject { ["size"] = "1G" })).Status);
        Assert.Equal(409, (await api.SendAsync(HttpMethod.Post, "v1/volumes/default/resize", new JsonObject { ["size"] = "4M" })).Status);
        var (status, body) = await api.SendAsync(HttpMethod.Post, "v1/volumes/default/snapshot", new JsonObject { ["name"] = "s" });
        Assert.Equal(409, status);
        Assert.Contains("copy-on-write", body!["error"]!.GetValue<string>());
        Assert.Equal(404, (await api.SendAsync(HttpMethod.Delete, "v1/volumes/nope")).Status);
        Assert.Equal(404, (await api.GetAsync("v1/nothing")).Status);
        Assert.Equal(405, (await api.SendAsync(HttpMethod.Put, "v1/volumes")).Status);
        var volumes = (await api.GetAsync("v1/volumes")).Body!.AsArray();
        var only = Assert.Single(volumes);
        Assert.Equal(64L << 20, only!["size_bytes"]!.GetValue<long>());
        Assert.Single(node.Node.Target.Namespaces);
    }

    [Fact]
    public async Task Denied_host_is_disconnected_and_a_persistent_discovery_host_sees_the_change()
    {
        await using var node = new NodeFixture();
        using var api = node.Control();
        await using var a = await NvmeTcpController.ConnectAsync("127.0.0.1", node.IoPort, Nqn, HostA).WaitAsync(Limit);
        await using var b = await NvmeTcpController.ConnectAsync("127.0.0.1", node.IoPort, Nqn, HostB).WaitAsync(Limit);
        await using var discovery = await StrictDiscoveryHost.ConnectAsync(node.DiscoveryPort, HostB);
        Assert.Equal(Nqn, Assert.Single(discovery.Log.Entries).SubNqn);

        var (status, _) = await api.SendAsync(HttpMethod.Post, "v1/subsystems/default/hosts/set", new JsonObject { ["hosts"] = new JsonArray(HostA) });
        Assert.Equal(200, status);
        var log = await discovery.NextChangeAsync();
        Assert.Empty(log.Entries); // aux subsystems, still open to B, are not advertised
        await Eventually.Until(() => node.Node.Target.ListControllers().Count(c => c.HostNqn == HostB && !c.IsDiscovery) == 0, "host B's I/O controllers disconnected");
        await a.ReadAsync(1, 0, 1, new byte[4096]);

        (status, _) = await api.SendAsync(HttpMethod.Post, "v1/subsystems/default/hosts/allow", new JsonObject { ["host"] = HostB });
        Assert.Equal(200, status);
        log = await discovery.NextChangeAsync();
        Assert.Contains(log.Entries, e => e.SubNqn == Nqn);
    }

    [Fact]
    public async Task Host_list_changes_are_all_or_nothing()
    {
        await using var node = new NodeFixture();
        using var api = node.Control();
        ulong genctr = node.Node.Target.DiscoveryGeneration;
        var (status, body) = await api.SendAsync(HttpMethod.Post, "v1/subsystems/all/hosts/set", new JsonObject { ["hosts"] = new JsonArray(HostA, "bogus") });
        Assert.Equal(400, status);
        Assert.Contains("bogus", body!["error"]!.GetValue<string>());
        Assert.All(node.Node.Target.Subsystems, s => Assert.True(s.Access.IsAllowAny));
        Assert.Equal(genctr, node.Node.Target.DiscoveryGeneration);
        Assert.Equal(409, (await api.SendAsync(HttpMethod.Post, "v1/subsystems/aux-1/hosts/deny", new JsonObject { ["host"] = HostA })).Status);
        Assert.Equal(404, (await api.SendAsync(HttpMethod.Post, "v1/subsystems/aux-9/hosts/any")).Status);
    }

    [Fact]
    public async Task Subsystems_are_found_by_either_aux_nqn_form()
    {
        await using var node = new NodeFixture();
        using var api = node.Control();
        Assert.Equal(200, (await api.SendAsync(HttpMethod.Post, $"v1/subsystems/{Nqn}.aux-2/hosts/set", new JsonObject { ["hosts"] = new JsonArray(HostA) })).Status);
        Assert.False(node.Node.Target.Subsystems[2].Access.IsAllowAny);
        Assert.Equal(200, (await api.SendAsync(HttpMethod.Post, $"v1/subsystems/{Nqn}:aux-2/hosts/any")).Status);
        Assert.True(node.Node.Target.Subsystems[2].Access.IsAllowAny);
        Assert.Equal(404, (await api.SendAsync(HttpMethod.Post, $"v1/subsystems/{Nqn}.aux-0/hosts/any")).Status);
    }

    [Fact]
    public async Task Controllers_are_listed_and_one_is_disconnected()
    {
        await using var node = new NodeFixture();
        using var api = node.Control();
        await using var a = await NvmeTcpController.ConnectAsync("127.0.0.1", node.IoPort, Nqn, HostA,
            new NvmeTcpControllerOptions { IoQueues = 2 }).WaitAsync(Limit);
        await using var b = await NvmeTcpController.ConnectAsync("127.0.0.1", node.IoPort, Nqn + ".aux-2", HostB).WaitAsync(Limit);
        var list = (await api.GetAsync("v1/controllers")).Body!.AsArray();
        Assert.Equal(2, list.Count);
        var ca = list.Single(c => c!["host"]!.GetValue<string>() == HostA)!;
        Assert.Equal(a.Cntlid, ca["cntlid"]!.GetValue<ushort>());
        Assert.Equal(0, ca["pool"]!.GetValue<int>());
        Assert.Equal(2, ca["io_queues"]!.GetValue<int>());
        Assert.InRange(ca["shard"]!.GetValue<int>(), 0, node.Node.IoMetrics.ShardCount - 1);
        Assert.StartsWith("127.0.0.1", ca["peer"]!.GetValue<string>());

        Assert.Equal(200, (await api.SendAsync(HttpMethod.Delete, $"v1/controllers/2/{b.Cntlid}")).Status);
        await Eventually.Until(() => node.Node.Target.ListControllers().Count == 1, "one controller left");
        Assert.Equal(404, (await api.SendAsync(HttpMethod.Delete, $"v1/controllers/2/{b.Cntlid}")).Status);
        Assert.Equal(400, (await api.SendAsync(HttpMethod.Delete, "v1/controllers/x/y")).Status);
        await a.ReadAsync(1, 0, 1, new byte[4096]);
    }

    [Fact]
    public async Task Referral_added_and_volume_added_reach_a_strict_discovery_host()
    {
        await using var node = new NodeFixture();
        using var api = node.Control();
        await using var discovery = await StrictDiscoveryHost.ConnectAsync(node.DiscoveryPort, HostA);
        var events = System.Threading.Channels.Channel.CreateUnbounded<uint>();
        // The strict host connects an I/O controller to each subsystem entry; one is enough to watch namespaces.
        await using var io = await NvmeTcpController.ConnectAsync("127.0.0.1", node.IoPort, discovery.Log.Entries[0].SubNqn, HostA,
            new NvmeTcpControllerOptions { AsyncEventHandler = dw0 => events.Writer.TryWrite(dw0) }).WaitAsync(Limit);

        var (status, _) = await api.SendAsync(HttpMethod.Post, "v1/referrals", new JsonObject { ["address"] = "10.9.8.7:8009" });
        Assert.Equal(200, status);
        var log = await discovery.NextChangeAsync();
        var referral = Assert.Single(log.Entries, e => e.Subtype == DiscoverySubtype.Referral);
        Assert.Equal("10.9.8.7", referral.TrAddr);
        Assert.Equal("8009", referral.TrSvcId);

        Assert.Equal(200, (await api.SendAsync(HttpMethod.Post, "v1/volumes", new JsonObject { ["name"] = "v2", ["size"] = "8M" })).Status);
        Assert.Equal(0x0004_0002u, await events.Reader.ReadAsync().AsTask().WaitAsync(Limit));
        Assert.Equal(new uint[] { 2 }, await ChangedNamespaces(io));

        Assert.Equal(200, (await api.SendAsync(HttpMethod.Delete, "v1/referrals/10.9.8.7:8009")).Status);
        log = await discovery.NextChangeAsync();
        Assert.DoesNotContain(log.Entries, e => e.Subtype == DiscoverySubtype.Referral);
        Assert.Equal(404, (await api.SendAsync(HttpMethod.Delete, "v1/referrals/10.9.8.7:8009")).Status);
        Assert.Equal(400, (await api.SendAsync(HttpMethod.Post, "v1/referrals", new JsonObject { ["address"] = "nowhere" })).Status);
    }

    [Fact]
    public async Task Shutdown_is_requested_through_the_api()
    {
        await using var node = new NodeFixture();
        using var api = node.Control();
        Assert.Equal(200, (await api.SendAsync(HttpMethod.Post, "v1/shutdown")).Status);
        await node.Node.ShutdownRequested.WaitAsync(Limit);
    }

    private static async Task<uint[]> ChangedNamespaces(NvmeTcpController host)
    {
        var page = await host.GetLogPageAsync(LogPageId.ChangedNamespaceList, 4096);
        var list = new List<uint>();
        for (int i = 0; i < 1024; i++)
        {
            uint nsid = BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(i * 4));
            if (nsid == 0) break;
            list.Add(nsid);
        }
        return [.. list];
    }
}
