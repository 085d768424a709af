using System.Text.Json.Nodes;
using Duroslight.Host;
using Duroslight.Tests.Shared;
using Xunit;
using Xunit.Abstractions;
using static Duroslight.Server.Tests.ClusterProcesses;

namespace Duroslight.Server.Tests;

/// <summary>
/// Rebuild from dirty-chunk maps and sync points (docs/ARCHITECTURE.md, "Dirty-chunk maps and sync points"): a real
/// etcd and three `duroslight serve` processes with sparse stores, so a restarted node comes back with its replica.
/// Each test counts the chunks a rebuild copied (the primary's `ctl volumes show` and metrics), reads every block back
/// through the host library, and compares the three replicas' files byte for byte once all are in sync.
/// </summary>
public sealed class ClusterRebuildProcessTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int LeaseTtl = 5, BlockSize = 4096, ChunkBlocks = 32, Chunks = 128; // 16 MiB volumes
    /// <summary>MiB/s: slow enough that a rebuild of 96 chunks takes about 6 s, so a test can kill the primary in the middle.</summary>
    private const string RebuildRate = "2";
    private ClusterProcesses? _c;
    private readonly byte[] _expected = new byte[Chunks * ChunkBlocks * BlockSize];

    public async Task InitializeAsync() => _c = await ClusterProcesses.StartAsync(LeaseTtl, memory: false, "--rebuild-rate", RebuildRate);

    public Task DisposeAsync()
    {
        // The nodes' logs (rebuild starts and ends, sync-point saves that failed) for a failed test's report.
        for (int i = 0; _c is not null && i < _c.Nodes.Count; i++) output.WriteLine($"--- node {i}\n{_c.Nodes[i].Output}");
        _c?.Dispose();
        return Task.CompletedTask;
    }

    [EtcdFact]
    public async Task A_returning_secondary_gets_only_the_chunks_it_missed_and_a_wiped_one_gets_every_chunk()
    {
        var (nsid, primary, _) = await _c!.CreateVolumeAsync("vol-d");
        int victim = Secondaries(primary)[0];
        await using (var host = await _c.ConnectOptimizedAsync(primary))
        {
            await WriteAsync(host, nsid, 0, 20 * ChunkBlocks, 1); // every replica has these
            Assert.Equal(137, await _c.Nodes[victim].StopAsync(9));
            int missed = await WriteMissedChunksAsync(host, nsid);
            await RestartWhenDownAsync(primary, victim);
            await WaitInSyncAsync(primary, "vol-d", victim);
            await AssertLastRebuildAsync(primary, "vol-d", victim, dirty: true, resumed: false, chunks: missed);
            await AssertHostReadsAsync(host, nsid);
        }
        await AssertReplicasEqualAsync("vol-d");

        // Wiped: its data directory deleted while it is down, so it comes back with a new, empty replica: every chunk.
        Assert.Equal(0, await _c.Nodes[victim].StopAsync(15));
        await Eventually.Until(async () => !Ints((await _c.GetAsync(primary, "v1/volumes/vol-d"))!["in_sync"]).Contains(victim),
            $"node {victim} out of the in-sync set", Limit);
        await _c.RestartAsync(victim, wipe: true);
        await WaitInSyncAsync(primary, "vol-d", victim);
        await AssertLastRebuildAsync(primary, "vol-d", victim, dirty: false, resumed: false, chunks: Chunks);
        await AssertReplicasEqualAsync("vol-d");
    }

    [EtcdFact]
    public async Task The_primary_killed_while_a_secondary_is_out_its_successor_copies_only_the_missed_chunks_from_the_sync_point()
    {
        var (nsid, primary, _) = await _c!.CreateVolumeAsync("vol-s");
        int victim = Secondaries(primary)[0], successor = Secondaries(primary)[1];
        int missed;
        await using (var host = await _c.ConnectOptimizedAsync(primary))
        {
            await WriteAsync(host, nsid, 0, 10 * ChunkBlocks, 1);
            Assert.Equal(137, await _c.Nodes[victim].StopAsync(9));
            missed = await WriteMissedChunksAsync(host, nsid);
        }
        // The primary dies with the victim out: only etcd's sync point knows what the victim missed.
        Assert.Equal(137, await _c.Nodes[primary].StopAsync(9));
        await Eventually.Until(async () => (await _c.GetAsync(successor, "v1/volumes/vol-s"))?["primary"]?.GetValue<int>() == successor,
            $"node {successor} promoted", Limit);
        await RestartWhenDownAsync(successor, victim);
        await WaitInSyncAsync(successor, "vol-s", victim);
        await AssertLastRebuildAsync(successor, "vol-s", victim, dirty: true, resumed: true, chunks: missed);

        // The old primary may hold a change in flight when it died that nobody else has: it gets every chunk.
        await RestartWhenDownAsync(successor, primary);
        await WaitInSyncAsync(successor, "vol-s", primary);
        await AssertLastRebuildAsync(successor, "vol-s", primary, dirty: false, resumed: false, chunks: Chunks);
        await using (var host = await _c.ConnectOptimizedAsync(successor)) await AssertHostReadsAsync(host, nsid);
        await AssertReplicasEqualAsync("vol-s");
    }

    [EtcdFact]
    public async Task The_primary_killed_mid_rebuild_its_successor_resumes_from_the_saved_progress()
    {
        const int Dirty = 96;
        var (nsid, primary, _) = await _c!.CreateVolumeAsync("vol-r");
        int victim = Secondaries(primary)[0], successor = Secondaries(primary)[1];
        await using (var host = await _c.ConnectOptimizedAsync(primary))
        {
            Assert.Equal(137, await _c.Nodes[victim].StopAsync(9));
            for (int chunk = 0; chunk < Dirty; chunk += 8) await WriteAsync(host, nsid, chunk * ChunkBlocks, 8 * ChunkBlocks, 10 + chunk);
        }
        await RestartWhenDownAsync(primary, victim);
        // A third copied (the primary saves its progress about every second): then the primary dies mid-rebuild.
        await Eventually.Until(async () => (await _c.GetAsync(primary, "v1/volumes/vol-r"))?["rebuild"]?[Key(victim)]?["chunks_left"]?.GetValue<long>() is <= Dirty * 2 / 3,
            $"node {primary} rebuilding node {victim}, a third done", Limit);
        await Task.Delay(2000);
        Assert.Equal(137, await _c.Nodes[primary].StopAsync(9));
        await Eventually.Until(async () => (await _c.GetAsync(successor, "v1/volumes/vol-r"))?["primary"]?.GetValue<int>() == successor,
            $"node {successor} promoted", Limit);
        await WaitInSyncAsync(successor, "vol-r", victim);
        var last = (await _c.GetAsync(successor, "v1/volumes/vol-r"))!["last_rebuild"]![Key(victim)]!;
        Assert.Equal("dirty", last["kind"]!.GetValue<string>());
        Assert.True(last["resumed"]!.GetValue<bool>());
        Assert.InRange(last["chunks_copied"]!.GetValue<long>(), 1, Dirty * 2 / 3); // the rest, not all 96 again

        await RestartWhenDownAsync(successor, primary);
        await WaitInSyncAsync(successor, "vol-r", primary);
        await using (var host = await _c.ConnectOptimizedAsync(successor)) await AssertHostReadsAsync(host, nsid);
        await AssertReplicasEqualAsync("vol-r");
    }

    private static int[] Secondaries(int primary) => [.. new[] { 0, 1, 2 }.Where(n => n != primary)];

    private static string Key(int node) => node.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Writes <paramref name="count"/> blocks of a pattern in commands of at most 1 MiB (MDTS) and records them.</summary>
    private async Task WriteAsync(NvmeTcpController host, uint nsid, int block, int count, int seed)
    {
        var data = Pattern(count * BlockSize, seed);
        for (int done = 0; done < count; done += 256)
        {
            int n = Math.Min(256, count - done);
            await host.WriteAsync(nsid, (ulong)(block + done), n, data.AsMemory(done * BlockSize, n * BlockSize)).AsTask().WaitAsync(Limit);
        }
        data.CopyTo(_expected, block * BlockSize);
    }

    /// <summary>With a secondary down: changes to chunks 5, 7 (write-zeroes), 40 and 41 (one write across both) and 100; returns 5.</summary>
    private async Task<int> WriteMissedChunksAsync(NvmeTcpController host, uint nsid)
    {
        await WriteAsync(host, nsid, 5 * ChunkBlocks + 3, 4, 2);
        await WriteAsync(host, nsid, 40 * ChunkBlocks + 16, ChunkBlocks, 3);
        await WriteAsync(host, nsid, 100 * ChunkBlocks, ChunkBlocks, 4);
        await host.WriteZeroesAsync(nsid, 7 * ChunkBlocks, 8).AsTask().WaitAsync(Limit);
        Array.Clear(_expected, 7 * ChunkBlocks * BlockSize, 8 * BlockSize);
        return 5;
    }

    private async Task RestartWhenDownAsync(int asked, int node)
    {
        await Eventually.Until(async () => StateOf(await _c!.NodesAsync(asked), node) == "Down", $"node {node} down", Limit);
        await _c!.RestartAsync(node);
    }

    private Task WaitInSyncAsync(int asked, string volume, int node) =>
        Eventually.Until(async () => (await _c!.GetAsync(asked, $"v1/volumes/{volume}"))?["in_sync"] is JsonArray inSync && Ints(inSync).Contains(node),
            $"node {node} rebuilt and in sync", Limit);

    /// <summary>The primary's `ctl volumes show` and metrics: the last rebuild of <paramref name="node"/> copied exactly <paramref name="chunks"/> chunks.</summary>
    private async Task AssertLastRebuildAsync(int primary, string volume, int node, bool dirty, bool resumed, int chunks)
    {
        var last = (await _c!.GetAsync(primary, $"v1/volumes/{volume}"))!["last_rebuild"]![Key(node)]!;
        Assert.Equal(dirty ? "dirty" : "full", last["kind"]!.GetValue<string>());
        Assert.Equal(resumed, last["resumed"]!.GetValue<bool>());
        Assert.True(last["joined"]!.GetValue<bool>());
        Assert.Equal(chunks, last["chunks_copied"]!.GetValue<long>());
        string labels = $"{{volume=\"{volume}\",peer=\"{Key(node)}\"}}";
        Assert.Equal(chunks, await _c.MetricAsync(primary, "duroslight_rebuild_last_chunks_copied" + labels));
        Assert.Equal(dirty ? 1 : 0, await _c.MetricAsync(primary, "duroslight_rebuild_last_dirty" + labels));
        Assert.Equal(resumed ? 1 : 0, await _c.MetricAsync(primary, "duroslight_rebuild_last_resumed" + labels));
    }

    private async Task AssertHostReadsAsync(NvmeTcpController host, uint nsid)
    {
        var back = new byte[_expected.Length];
        for (int block = 0; block < Chunks * ChunkBlocks; block += 256)
            await host.ReadAsync(nsid, (ulong)block, 256, back.AsMemory(block * BlockSize, 256 * BlockSize)).AsTask().WaitAsync(Limit);
        for (int block = 0; block < Chunks * ChunkBlocks; block++)
            Assert.True(_expected.AsSpan(block * BlockSize, BlockSize).SequenceEqual(back.AsSpan(block * BlockSize, BlockSize)), $"block {block} differs");
    }

    /// <summary>
    /// A file the server has open: read by `cat`, since .NET's own open takes a shared flock that the server's
    /// exclusive lock on its volume files refuses.
    /// </summary>
    private static async Task<byte[]> ReadUnlockedAsync(string path)
    {
        using var cat = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("cat", [path]) { RedirectStandardOutput = true })!;
        using var bytes = new MemoryStream();
        await cat.StandardOutput.BaseStream.CopyToAsync(bytes).WaitAsync(Limit);
        await cat.WaitForExitAsync().WaitAsync(Limit);
        Assert.Equal(0, cat.ExitCode);
        return bytes.ToArray();
    }

    /// <summary>Every replica's file holds exactly what the host wrote (all three in sync, nothing in flight).</summary>
    private async Task AssertReplicasEqualAsync(string volume)
    {
        string id = (await _c!.GetAsync(0, $"v1/volumes/{volume}"))!["id"]!.GetValue<string>();
        for (int node = 0; node < 3; node++)
        {
            byte[] file = await ReadUnlockedAsync(_c.VolumeFile(node, id));
            Assert.True(file.Length >= _expected.Length, $"node {node}'s file of {volume} is {file.Length} bytes");
            int differs = _expected.AsSpan().CommonPrefixLength(file.AsSpan(0, _expected.Length));
            Assert.True(differs == _expected.Length, $"node {node}'s replica of {volume} differs at byte {differs} (chunk {differs / (ChunkBlocks * BlockSize)})");
        }
    }
}
