using Xunit;
using Duroslight.Host;
using Duroslight.Storage.Volumes;

namespace Duroslight.Server.Tests;

/// <summary>The NVMe/TCP data path on the io_uring reactor, end to end through the host library.</summary>
public sealed class ReactorTests
{
    private const string Nqn = "nqn.2026-11.io.duroslight:default";

    [Theory]
    [InlineData("sparse")]
    [InlineData("gftl")]
    public async Task Device_backed_stores_round_trip_multi_chunk_io_on_several_shards(string store)
    {
        string dir = TempDir();
        try
        {
            await using (var node = new NodeFixture(s => s with { InMemory = false, StoreKind = store, DataDirectory = dir, Cores = [0, 1, 0] }))
            {
                Assert.Equal(3, node.Node.Shards!.Count);
                if (store == "sparse") Assert.True(((SparseFileVolume)node.Node.Volumes.Single()).DirectIo);
                await using var host = await Connect(node, "host-a", queues: 2);
                var data = Random(1 << 20, seed: 1);
                await host.WriteAsync(1, 7, 256, data, fua: true); // starts mid-chunk: 9 chunks on 3 shards
                var seen = new byte[data.Length];
                await host.ReadAsync(1, 7, 256, seen);
                Assert.Equal(data, seen);
                await host.FlushAsync();
            }
            // What was acknowledged is in the file after a graceful stop.
            await using (var node = new NodeFixture(s => s with { InMemory = false, StoreKind = store, DataDirectory = dir, Cores = [0, 1, 0] }))
            {
                await using var host = await Connect(node, "host-a");
                var seen = new byte[1 << 20];
                await host.ReadAsync(1, 7, 256, seen);
                Assert.Equal(Random(1 << 20, seed: 1), seen);
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task Gftl_data_survives_a_restart_with_a_different_number_of_shards()
    {
        string dir = TempDir();
        try
        {
            var data = Random(1 << 20, seed: 3);
            await using (var node = new NodeFixture(s => s with { InMemory = false, DataDirectory = dir, Cores = [0, 1, 0] }))
            {
                await using var host = await Connect(node, "host-a");
                await host.WriteAsync(1, 100, 256, data);
            }
            await using (var node = new NodeFixture(s => s with { InMemory = false, DataDirectory = dir, Cores = [0] }))
            {
                await using var host = await Connect(node, "host-a");
                var seen = new byte[data.Length];
                await host.ReadAsync(1, 100, 256, seen);
                Assert.Equal(data, seen);
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task Many_connections_with_multi_chunk_io_all_read_back_their_own_data()
    {
        await using var node = new NodeFixture(s => s with { Cores = [0, 1, 0, 1] });
        const int hosts = 6, queues = 3, perHost = 24;
        var controllers = await Task.WhenAll(Enumerable.Range(0, hosts).Select(h => Connect(node, $"host-{h}", queues)));
        try
        {
            // Each host owns a disjoint 8 MiB region and runs writes then reads of 4 KiB..1 MiB, many at once.
            await Task.WhenAll(controllers.Select((c, h) => Task.Run(async () =>
            {
                var rng = new Random(h);
                ulong regionStart = (ulong)h * 2048;
                var ios = Enumerable.Range(0, perHost).Select(i => (Slba: regionStart + (ulong)(i * 80 + rng.Next(0, 8)), Blocks: rng.Next(1, 72))).ToArray();
                var payloads = ios.Select((io, i) => Random(io.Blocks * 4096, seed: h * 1000 + i)).ToArray();
                await Task.WhenAll(ios.Select((io, i) => c.WriteAsync(1, io.Slba, io.Blocks, payloads[i]).AsTask()));
                var back = ios.Select(io => new byte[io.Blocks * 4096]).ToArray();
                await Task.WhenAll(ios.Select((io, i) => c.ReadAsync(1, io.Slba, io.Blocks, back[i]).AsTask()));
                for (int i = 0; i < ios.Length; i++) Assert.Equal(payloads[i], back[i]);
            })));
            Assert.Equal(hosts * (queues + 1), node.Node.ConnectionCount);
        }
        finally
        {
            foreach (var c in controllers) await c.DisposeAsync();
        }
    }

    [Fact]
    public async Task Graceful_stop_with_writes_in_flight_answers_them_and_closes_every_connection()
    {
        var node = new NodeFixture();
        var host = await Connect(node, "host-a", queues: 2);
        var writes = Enumerable.Range(0, 64)
            .Select(i => host.WriteAsync(1, (ulong)i * 64, 64, Random(64 * 4096, seed: i)).AsTask())
            .ToArray();
        var stop = node.Node.StopAsync();
        Assert.True(await Task.WhenAny(stop, Task.Delay(TimeSpan.FromSeconds(20))) == stop, "drain hung");
        // Every write either completed or failed because the connection went away; none is left hanging.
        foreach (var w in writes)
        {
            var finished = await Task.WhenAny(w, Task.Delay(TimeSpan.FromSeconds(10)));
            Assert.Same(w, finished);
        }
        Assert.Equal(0, node.Node.ConnectionCount);
        await host.DisposeAsync();
        await node.DisposeAsync();
    }

    private static Task<NvmeTcpController> Connect(NodeFixture node, string host, int queues = 1) =>
        NvmeTcpController.ConnectAsync("127.0.0.1", node.IoPort, Nqn, $"nqn.2014-08.org.nvmexpress:uuid:{Guid.NewGuid()}",
            new NvmeTcpControllerOptions { IoQueues = queues, HostId = Guid.NewGuid() });

    private static byte[] Random(int length, int seed)
    {
        var b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }

    private static string TempDir()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"dsl-reactor-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }
}
