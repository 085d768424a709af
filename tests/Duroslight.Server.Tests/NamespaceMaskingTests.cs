using System.Buffers.Binary;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Duroslight.Host;
using Duroslight.Protocol.Nvme;
using Duroslight.Tests.Shared;
using Xunit;

namespace Duroslight.Server.Tests;

/// <summary>
/// Per-volume host lists as hosts see them: Identify, I/O, the Changed Namespace List and AENs for exactly the hosts whose
/// view changed, and a discovery log that lists the subsystem only to hosts that see a namespace in it.
/// </summary>
public sealed class NamespaceMaskingTests
{
    private const string Nqn = "nqn.2026-11.io.duroslight:default";
    private const string HostA = "nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-0000-0000-00000000000a";
    private const string HostB = "nqn.2014-08.org.nvmexpress:uuid:bbbbbbbb-0000-0000-0000-00000000000b";
    private const string HostC = "nqn.2014-08.org.nvmexpress:uuid:cccccccc-0000-0000-0000-00000000000c";
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);

    private sealed class WatchedHost(Channel<uint> events) : IAsyncDisposable
    {
        public NvmeTcpController Controller { get; set; } = null!;
        public ChannelReader<uint> Events => events.Reader;

        public static async Task<WatchedHost> ConnectAsync(NodeFixture node, string hostNqn)
        {
            var events = Channel.CreateUnbounded<uint>();
            var host = new WatchedHost(events);
            host.Controller = await NvmeTcpController.ConnectAsync("127.0.0.1", node.IoPort, Nqn, hostNqn,
                new NvmeTcpControllerOptions { AsyncEventHandler = dw0 => events.Writer.TryWrite(dw0) }).WaitAsync(Limit);
            return host;
        }

        public ValueTask DisposeAsync() => Controller.DisposeAsync();
    }

    [Fact]
    public async Task A_volume_given_a_host_list_disappears_for_exactly_the_other_hosts_and_comes_back_on_attach()
    {
        await using var node = new NodeFixture();
        using var api = node.Control();
        await using var a = await WatchedHost.ConnectAsync(node, HostA);
        await using var b = await WatchedHost.ConnectAsync(node, HostB);
        await using var discoveryB = await StrictDiscoveryHost.ConnectAsync(node.DiscoveryPort, HostB);
        await using var discoveryA = await StrictDiscoveryHost.ConnectAsync(node.DiscoveryPort, HostA);
        Assert.Equal(Nqn, Assert.Single(discoveryB.Log.Entries).SubNqn);
        Assert.Equal(new uint[] { 1 }, await ActiveNamespaces(b.Controller));

        // Only A may see the default volume now: B's view changed, A's did not.
        var (status, _) = await api.SendAsync(HttpMethod.Post, "v1/volumes/default/hosts", new JsonObject { ["hosts"] = new JsonArray(HostA) });
        Assert.Equal(200, status);
        Assert.Equal(0x0004_0002u, await b.Events.ReadAsync().AsTask().WaitAsync(Limit));
        Assert.Equal(new uint[] { 1 }, await ChangedNamespaces(b.Controller));
        Assert.Empty(await ChangedNamespaces(a.Controller)); // filled under the same lock as B's: A was never told
        Assert.Empty(await ActiveNamespaces(b.Controller));
        Assert.True((await b.Controller.IdentifyAsync(IdentifyCns.Namespace, 1)).All(x => x == 0)); // inactive: zeroes
        var refused = await Assert.ThrowsAsync<NvmeException>(async () => await b.Controller.ReadAsync(1, 0, 1, new byte[4096]));
        Assert.Equal(NvmeStatus.InvalidNamespaceOrFormat.Sc, refused.Status.Sc);
        await a.Controller.ReadAsync(1, 0, 1, new byte[4096]);
        Assert.Equal(new uint[] { 1 }, await ActiveNamespaces(a.Controller));

        // B sees nothing left: its discovery log no longer lists the subsystem, and its persistent connection stays.
        Assert.Empty((await discoveryB.NextChangeAsync()).Entries);
        Assert.Equal(Nqn, Assert.Single(discoveryA.Log.Entries).SubNqn);
        Assert.Contains(node.Node.Target.ListControllers(), c => c.IsDiscovery && c.HostNqn == HostB);

        // Attach B: it is told, sees namespace 1 again and its discovery log lists the subsystem again.
        (status, _) = await api.SendAsync(HttpMethod.Post, "v1/volumes/default/attach", new JsonObject { ["host"] = HostB });
        Assert.Equal(200, status);
        Assert.Equal(0x0004_0002u, await b.Events.ReadAsync().AsTask().WaitAsync(Limit));
        Assert.Equal(new uint[] { 1 }, await ChangedNamespaces(b.Controller));
        Assert.Empty(await ChangedNamespaces(a.Controller));
        Assert.Equal(Nqn, Assert.Single((await discoveryB.NextChangeAsync()).Entries).SubNqn);
        await b.Controller.ReadAsync(1, 0, 1, new byte[4096]);

        // A volume created for C only is announced to no connected host.
        (status, _) = await api.SendAsync(HttpMethod.Post, "v1/volumes", new JsonObject { ["name"] = "c", ["size"] = "8M", ["hosts"] = new JsonArray(HostC) });
        Assert.Equal(200, status);
        await using var c = await WatchedHost.ConnectAsync(node, HostC);
        Assert.Equal(new uint[] { 2 }, await ActiveNamespaces(c.Controller));
        Assert.Empty(await ChangedNamespaces(a.Controller));
        Assert.Empty(await ChangedNamespaces(b.Controller));
        Assert.Equal(new uint[] { 1 }, await ActiveNamespaces(b.Controller));
    }

    private static async Task<uint[]> ActiveNamespaces(NvmeTcpController host) =>
        NsidList(await host.IdentifyAsync(IdentifyCns.ActiveNamespaceList, 0));

    private static async Task<uint[]> ChangedNamespaces(NvmeTcpController host) =>
        NsidList(await host.GetLogPageAsync(LogPageId.ChangedNamespaceList, 4096));

    private static uint[] NsidList(byte[] page)
    {
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
