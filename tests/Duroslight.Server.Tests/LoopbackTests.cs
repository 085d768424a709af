using Duroslight.Host;
using Duroslight.Protocol.Nvme;
using Xunit;
using Duroslight.Tests.Shared;

namespace Duroslight.Server.Tests;

/// <summary>The whole process on loopback, driven by the C# host library (the Linux initiator runs in conformance/).</summary>
public sealed class LoopbackTests
{
    private const string Nqn = "nqn.2026-11.io.duroslight:default";
    private const string HostA = "nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-0000-0000-000000000001";
    private const string HostB = "nqn.2014-08.org.nvmexpress:uuid:bbbbbbbb-0000-0000-0000-000000000002";

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, true)]
    [InlineData(true, false)]
    public async Task Write_and_read_back_across_chunks_with_and_without_digests(bool headerDigest, bool dataDigest)
    {
        await using var node = new NodeFixture();
        await using var host = await Connect(node, Nqn, HostA, new() { HeaderDigest = headerDigest, DataDigest = dataDigest });
        Assert.Equal("Duroslight", host.Identity.ModelNumber);
        Assert.Equal(host.Cntlid, host.Identity.Cntlid);
        var ns = Assert.Single(host.Namespaces);
        Assert.Equal(node.Node.Volumes.Single().Id, ns.Nguid);

        // 4 KiB in-capsule, and 1 MiB + 12 KiB through R2T starting mid-chunk (crosses 9 chunk boundaries; split by MDTS).
        await RoundTrip(host, slba: 3, blocks: 1);
        await RoundTrip(host, slba: 29, blocks: 256);
        await RoundTrip(host, slba: 300, blocks: 3);
    }

    [Fact]
    public async Task Two_hosts_share_one_namespace()
    {
        await using var node = new NodeFixture();
        await using var a = await Connect(node, Nqn, HostA);
        await using var b = await Connect(node, Nqn, HostB);
        Assert.NotEqual(a.Cntlid, b.Cntlid);
        var data = Random(64 * 4096);
        await a.WriteAsync(1, 1000, 64, data, fua: true);
        var seen = new byte[data.Length];
        await b.ReadAsync(1, 1000, 64, seen);
        Assert.Equal(data, seen);
    }

    [Fact]
    public async Task Aux_subsystem_exposes_the_same_namespace_and_aux0_is_refused()
    {
        await using var node = new NodeFixture();
        await using var main = await Connect(node, Nqn, HostA);
        await using var aux = await Connect(node, Nqn + ".aux-1", HostA);
        Assert.Equal(main.Namespaces[0].Nguid, aux.Namespaces[0].Nguid);
        Assert.Equal(Nqn + ".aux-1", aux.Identity.SubsystemNqn);
        // The older ":aux-N" spelling reaches the same subsystem (it reports its canonical NQN).
        await using (var colon = await Connect(node, Nqn + ":aux-2", HostB))
            Assert.Equal(Nqn + ".aux-2", colon.Identity.SubsystemNqn);
        var data = Random(4096);
        await aux.WriteAsync(1, 7, 1, data);
        var seen = new byte[4096];
        await main.ReadAsync(1, 7, 1, seen);
        Assert.Equal(data, seen);

        foreach (string bad in new[] { Nqn + ".aux-0", Nqn + ":aux-0", Nqn + ".aux-5", Nqn + ":bogus" })
        {
            var e = await Assert.ThrowsAsync<NvmeConnectException>(() => Connect(node, bad, HostB));
            Assert.Equal(NvmeStatus.ConnectInvalidParameters, e.Status);
            Assert.True(e.InvalidParameterInData);
            Assert.Equal(256, e.InvalidParameterOffset); // SUBNQN in the Connect data
        }
    }

    [Fact]
    public async Task Host_outside_the_allow_list_is_refused_and_sees_nothing_in_discovery()
    {
        await using var node = new NodeFixture(s => s with { AllowedHosts = [HostA] });
        await using (await Connect(node, Nqn, HostA)) { }
        var e = await Assert.ThrowsAsync<NvmeConnectException>(() => Connect(node, Nqn, HostB));
        Assert.Equal(NvmeStatus.ConnectInvalidHost, e.Status);

        var allowed = await NvmeTcpController.DiscoverAsync("127.0.0.1", node.DiscoveryPort, HostA);
        var refused = await NvmeTcpController.DiscoverAsync("127.0.0.1", node.DiscoveryPort, HostB);
        Assert.Equal(Nqn, Assert.Single(allowed.Entries).SubNqn);
        Assert.Empty(refused.Entries);
    }

    [Fact]
    public async Task Discovery_lists_only_the_default_subsystem_on_both_ports()
    {
        await using var node = new NodeFixture();
        foreach (int port in new[] { node.DiscoveryPort, node.IoPort })
        {
            var log = await NvmeTcpController.DiscoverAsync("127.0.0.1", port, HostA);
            var nqns = log.Entries.Select(e => e.SubNqn).ToArray();
            Assert.Equal([Nqn], nqns);
            Assert.All(log.Entries, e =>
            {
                Assert.Equal(DiscoverySubtype.Nvm, e.Subtype);
                Assert.Equal("127.0.0.1", e.TrAddr);
                Assert.Equal(node.IoPort.ToString(), e.TrSvcId);
            });
        }
    }

    [Fact]
    public async Task A_referral_to_a_discovery_service_off_port_8009_leads_to_a_usable_log()
    {
        // Node B's discovery listens on a random port, never 8009; node A refers to it. A host that follows the
        // referral entry (its own TRSVCID, not an assumed 8009) reaches B's log and B's subsystem.
        await using var b = new NodeFixture();
        Assert.NotEqual(8009, b.DiscoveryPort);
        await using var a = new NodeFixture(s => s with { Referrals = [new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, b.DiscoveryPort)] });
        var log = await NvmeTcpController.DiscoverAsync("127.0.0.1", a.DiscoveryPort, HostA);
        var referral = Assert.Single(log.Entries, e => e.Subtype == DiscoverySubtype.Referral);
        Assert.Equal(b.DiscoveryPort.ToString(System.Globalization.CultureInfo.InvariantCulture), referral.TrSvcId);
        Assert.Equal("127.0.0.1", referral.TrAddr);

        var referred = await NvmeTcpController.DiscoverAsync(referral.TrAddr, int.Parse(referral.TrSvcId, System.Globalization.CultureInfo.InvariantCulture), HostA);
        var entry = Assert.Single(referred.Entries);
        Assert.Equal(b.IoPort.ToString(System.Globalization.CultureInfo.InvariantCulture), entry.TrSvcId);
        await using var host = await Connect(b, entry.SubNqn, HostA);
        Assert.Equal(b.Node.Volumes.Single().Id, host.Namespaces[0].Nguid);
    }

    [Fact]
    public async Task Empty_host_nqn_connects_where_any_host_is_allowed_and_not_where_a_list_is_set()
    {
        // What spdk_nvme_perf and spdk_nvme_identify send unless told a host NQN.
        await using (var open = new NodeFixture())
        {
            Assert.Equal(Nqn, Assert.Single((await NvmeTcpController.DiscoverAsync("127.0.0.1", open.DiscoveryPort, "")).Entries).SubNqn);
            await using var host = await Connect(open, Nqn, "");
            await RoundTrip(host, slba: 5, blocks: 2);
        }

        await using var listed = new NodeFixture(s => s with { AllowedHosts = [HostA] });
        var e = await Assert.ThrowsAsync<NvmeConnectException>(() => Connect(listed, Nqn, ""));
        Assert.Equal(NvmeStatus.ConnectInvalidHost, e.Status);
        Assert.Empty((await NvmeTcpController.DiscoverAsync("127.0.0.1", listed.DiscoveryPort, "")).Entries);
    }

    [Fact]
    public async Task Many_queues_and_deep_queues_with_multi_chunk_io_keep_every_byte()
    {
        await using var node = new NodeFixture();
        await using var host = await Connect(node, Nqn, HostA, new() { IoQueues = 2, QueueDepth = 32 });
        const int commands = 96, blocks = 80; // 320 KiB each: 3-4 chunks, R2T-driven
        var writes = new byte[commands][];
        var tasks = new List<Task>();
        for (int i = 0; i < commands; i++)
        {
            writes[i] = Random(blocks * 4096);
            tasks.Add(host.WriteAsync(1, (ulong)(i * blocks), blocks, writes[i]).AsTask());
        }
        await Task.WhenAll(tasks);
        var reads = new byte[commands][];
        tasks.Clear();
        for (int i = 0; i < commands; i++)
        {
            reads[i] = new byte[blocks * 4096];
            tasks.Add(host.ReadAsync(1, (ulong)(i * blocks), blocks, reads[i]).AsTask());
        }
        await Task.WhenAll(tasks);
        for (int i = 0; i < commands; i++) Assert.Equal(writes[i], reads[i]);
    }

    [Fact]
    public async Task Deallocate_and_write_zeroes_read_back_zeros_and_errors_carry_nvme_status()
    {
        await using var node = new NodeFixture();
        await using var host = await Connect(node, Nqn, HostA);
        await host.WriteAsync(1, 0, 64, Random(64 * 4096));
        await host.DeallocateAsync(1, [new LbaRange(0, 32)]);
        await host.WriteZeroesAsync(1, 32, 32);
        var seen = new byte[64 * 4096];
        await host.ReadAsync(1, 0, 64, seen);
        Assert.All(seen, b => Assert.Equal(0, b));

        ulong blocksInVolume = host.Namespaces[0].BlockCount;
        var e = await Assert.ThrowsAsync<NvmeException>(() => host.ReadAsync(1, blocksInVolume, 1, new byte[4096]).AsTask());
        Assert.Equal(NvmeStatus.LbaOutOfRange, e.Status);
        e = await Assert.ThrowsAsync<NvmeException>(() => host.ReadAsync(9, 0, 1, new byte[4096]).AsTask());
        Assert.Equal(NvmeStatus.InvalidNamespaceOrFormat, e.Status);
    }

    [Fact]
    public async Task Disconnect_returns_controller_ids_to_the_pool()
    {
        await using var node = new NodeFixture();
        var host = await Connect(node, Nqn, HostA);
        Assert.Contains("lightbox_fe_ctrl_id_used{pool_id=\"0\",shard=\"0\",type=\"counter\"} 1", await node.ScrapeAsync());
        await host.DisconnectAsync();
        await host.DisposeAsync();
        await Eventually.Until(async () => (await node.ScrapeAsync()).Contains("lightbox_fe_ctrl_id_used{pool_id=\"0\",shard=\"0\",type=\"counter\"} 0"), "pool 0 metric back to 0");
        Assert.Empty(node.Node.Target.ListControllers());
    }

    private static Task<NvmeTcpController> Connect(NodeFixture node, string nqn, string hostNqn, NvmeTcpControllerOptions? options = null) =>
        NvmeTcpController.ConnectAsync("127.0.0.1", node.IoPort, nqn, hostNqn, options);

    private static async Task RoundTrip(NvmeTcpController host, ulong slba, int blocks)
    {
        var data = Random(blocks * 4096);
        await host.WriteAsync(1, slba, blocks, data);
        var seen = new byte[data.Length];
        await host.ReadAsync(1, slba, blocks, seen);
        Assert.Equal(data, seen);
    }

    private static byte[] Random(int length)
    {
        var b = new byte[length];
        System.Random.Shared.NextBytes(b);
        return b;
    }
}
