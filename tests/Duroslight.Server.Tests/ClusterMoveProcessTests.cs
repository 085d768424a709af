using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Duroslight.Host;
using Duroslight.Protocol.Nvme;
using Duroslight.Tests.Shared;
using Xunit;
using Xunit.Abstractions;
using static Duroslight.Server.Tests.ClusterProcesses;

namespace Duroslight.Server.Tests;

/// <summary>
/// Live migration with real parts (docs/ARCHITECTURE.md, "Move"): a real etcd and three `duroslight serve` processes,
/// a two-replica volume written by the host library while `ctl volumes move` puts one of its replicas on the third
/// node. Every acknowledged block is read back; replicas compare equal by killing the primary and reading the whole
/// volume from the replica promoted in its place. The copy runs at 2 MiB/s (16 MiB: about 8 s), so a cancel or a
/// kill lands while it copies. The primary's cut-over pause is recorded, not asserted (timing on a loaded machine).
/// </summary>
public sealed class ClusterMoveProcessTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int LeaseTtl = 6;
    private const int Blocks = 4096, BlockSize = 4096; // 16 MiB
    private static readonly NvmeTcpControllerOptions NoKeepAlive = new() { KeepAliveTimeoutMs = 0 };
    private ClusterProcesses? _c;

    public async Task InitializeAsync() => _c = await StartAsync(LeaseTtl, "--rebuild-rate", "2");

    public Task DisposeAsync()
    {
        _c?.Dispose();
        return Task.CompletedTask;
    }

    [EtcdFact]
    public async Task Moving_a_secondary_under_write_load_loses_no_write_and_leaves_equal_replicas_and_no_data_on_the_old_node()
    {
        var (nsid, primary, from, to) = await CreateAsync("vol-m");
        await using var writers = await HostWriters.StartAsync(_c!, primary, nsid, [from, to]);
        await writers.UntilAckedAsync(200);
        var moved = await MoveAsync(primary, "vol-m", to, from);
        Assert.Equal("copying", moved["phase"]!.GetValue<string>());
        var done = await PhaseAsync(to, "vol-m", "done");
        await writers.StopAsync();
        output.WriteLine($"secondary move: {done["elapsed_seconds"]} s, {done["mib_per_second"]} MiB/s over the move (rebuild rate 2 MiB/s), " +
            $"{writers.Acked.Count} blocks acknowledged, load average {Load()}");
        Assert.Equal(0, writers.Refused); // the primary never moved: no write was refused
        // Sparse stays sparse: only the written first half was sent (the rest went as deallocates) and allocated.
        Assert.InRange(done["bytes_copied"]!.GetValue<long>(), 1, Blocks * BlockSize / 2);
        Assert.InRange(await _c!.AllocatedAsync(to, "vol-m"), 1, await _c.AllocatedAsync(primary, "vol-m"));

        var v = (await _c.GetAsync(to, "v1/volumes/vol-m"))!;
        Assert.Equal([primary, to], Ints(v["placement"]).Order());
        Assert.Equal([primary, to], Ints(v["in_sync"]).Order());
        Assert.Equal(primary, v["primary"]!.GetValue<int>());
        await NoDataOnAsync(from, "vol-m");
        await ReplicasEqualAsync(writers, nsid, "vol-m", primary, to);
    }

    [EtcdFact]
    public async Task Moving_the_primary_under_write_load_hands_it_over_with_a_short_pause_loses_no_write_and_drops_the_old_replica()
    {
        var (nsid, primary, secondary, to) = await CreateAsync("vol-p");
        await using var writers = await HostWriters.StartAsync(_c!, primary, nsid, [secondary, to]);
        await writers.UntilAckedAsync(200);
        var (code, stdout, stderr) = await RunCli("ctl", "--socket", _c!.Socket(secondary), "volumes", "move", "vol-p", "--to", Text(to));
        Assert.True(code == 0, stderr);
        Assert.Contains($"from={primary}", stdout, StringComparison.Ordinal); // without --from: the primary
        var done = await PhaseAsync(to, "vol-p", "done");
        await writers.StopAsync(afterSwitch: 50);

        var pause = writers.Pause;
        output.WriteLine($"primary move: cut-over pause {pause.TotalMilliseconds:0} ms (last write acknowledged by the old primary to the " +
            $"first by the new one), {writers.Refused} writes refused and retried, move {done["elapsed_seconds"]} s, {writers.Acked.Count} " +
            $"blocks acknowledged, load average {Load()}");
        Assert.True(writers.Refused > 0, "no write was refused by the old primary's path");
        var v = (await _c.GetAsync(to, "v1/volumes/vol-p"))!;
        int promoted = v["primary"]!.GetValue<int>();
        Assert.Contains(promoted, new[] { secondary, to });
        Assert.Equal(promoted, writers.NewPrimary);
        Assert.Equal([secondary, to], Ints(v["placement"]).Order());
        Assert.Equal([secondary, to], Ints(v["in_sync"]).Order());
        await NoDataOnAsync(primary, "vol-p");
        await ReplicasEqualAsync(writers, nsid, "vol-p", promoted, promoted == to ? secondary : to);
    }

    [EtcdFact]
    public async Task A_cancelled_move_leaves_the_volume_as_before_served_throughout_and_bad_moves_are_refused_clearly()
    {
        var (nsid, primary, from, to) = await CreateAsync("vol-c");
        var before = (await _c!.GetAsync(primary, "v1/volumes/vol-c"))!;
        await using var writers = await HostWriters.StartAsync(_c, primary, nsid, [from, to]);
        await writers.UntilAckedAsync(200);
        await Refused(404, "no cluster volume 'nope'", "volumes", "move", "nope", "--to", Text(to));
        await Refused(404, "no node 7", "volumes", "move", "vol-c", "--to", "7");
        await Refused(409, $"node {from} already holds a replica", "volumes", "move", "vol-c", "--to", Text(from));
        await Refused(409, $"node {to} holds no replica", "volumes", "move", "vol-c", "--to", Text(to), "--from", Text(to));
        await Refused(409, "is not moving", "volumes", "move-cancel", "vol-c");
        await Refused(404, "was never moved", "volumes", "move-status", "vol-c");

        await MoveAsync(from, "vol-c", to, from);
        await Refused(409, "is moving already", "volumes", "move", "vol-c", "--to", Text(to), "--from", Text(primary));
        // move-status on the primary shows the copy under way: chunks left, pace, time left.
        await Eventually.Until(async () => (await _c.GetAsync(primary, "v1/volumes/vol-c/move"))?["bytes_copied"]?.GetValue<long>() > 0,
            "the copy under way", Limit);
        var (code, shown, stderr) = await RunCli("ctl", "--socket", _c.Socket(primary), "volumes", "move-status", "vol-c");
        Assert.True(code == 0, stderr);
        Assert.Contains("phase=copying", shown, StringComparison.Ordinal);
        Assert.Contains("chunks_left=", shown, StringComparison.Ordinal);
        Assert.Contains("eta_seconds=", shown, StringComparison.Ordinal);

        (code, shown, stderr) = await RunCli("ctl", "--socket", _c.Socket(to), "volumes", "move-cancel", "vol-c");
        Assert.True(code == 0, stderr);
        Assert.Contains("phase=cancelled", shown, StringComparison.Ordinal);
        await NoDataOnAsync(to, "vol-c");
        await writers.UntilAckedAsync(writers.Writes + 100); // still served after the cancel
        await writers.StopAsync();
        Assert.Equal(0, writers.Refused);

        var after = (await _c.GetAsync(to, "v1/volumes/vol-c"))!;
        Assert.Equal(Ints(before["placement"]), Ints(after["placement"]));
        Assert.Equal(Ints(before["in_sync"]), Ints(after["in_sync"]));
        Assert.Equal(primary, after["primary"]!.GetValue<int>());
        Assert.Equal("cancelled", (await _c.GetAsync(from, "v1/volumes/vol-c/move"))!["phase"]!.GetValue<string>());
        await ReplicasEqualAsync(writers, nsid, "vol-c", primary, from);
    }

    [EtcdFact]
    public async Task A_destination_killed_mid_copy_fails_the_move_which_is_reported_and_leaves_the_volume_as_before()
    {
        var (nsid, primary, from, to) = await CreateAsync("vol-k");
        var before = (await _c!.GetAsync(primary, "v1/volumes/vol-k"))!;
        await using var writers = await HostWriters.StartAsync(_c, primary, nsid, [from]);
        await writers.UntilAckedAsync(200);
        await MoveAsync(primary, "vol-k", to, from);
        await Eventually.Until(async () => (await _c.GetAsync(primary, "v1/volumes/vol-k/move"))?["bytes_copied"]?.GetValue<long>() > 0,
            "the copy under way", Limit);

        Assert.Equal(137, await _c.Nodes[to].StopAsync(9));
        var failed = await PhaseAsync(primary, "vol-k", "failed");
        Assert.Contains($"node {to} went down", failed["error"]!.GetValue<string>(), StringComparison.Ordinal);
        var (code, shown, stderr) = await RunCli("ctl", "--socket", _c.Socket(from), "volumes", "move-status", "vol-k");
        Assert.True(code == 0, stderr);
        Assert.Contains("phase=failed", shown, StringComparison.Ordinal);
        await writers.UntilAckedAsync(writers.Writes + 100);
        await writers.StopAsync();
        Assert.Equal(0, writers.Refused);

        var after = (await _c.GetAsync(primary, "v1/volumes/vol-k"))!;
        Assert.Equal(Ints(before["placement"]), Ints(after["placement"]));
        Assert.Equal(Ints(before["in_sync"]), Ints(after["in_sync"]));
        Assert.Equal(primary, after["primary"]!.GetValue<int>());
        await ReplicasEqualAsync(writers, nsid, "vol-k", primary, from);
    }

    /// <summary>A two-replica 16 MiB volume: its NSID, primary, the other replica and the node without one.</summary>
    private async Task<(uint Nsid, int Primary, int Secondary, int Spare)> CreateAsync(string name)
    {
        var (code, _, stderr) = await RunCli("ctl", "--socket", _c!.Socket(0), "volumes", "create", name, "16M", "--replicas", "2");
        Assert.True(code == 0, stderr);
        var v = (await _c.GetAsync(0, $"v1/volumes/{name}"))!;
        int primary = v["primary"]!.GetValue<int>();
        int[] placement = Ints(v["placement"]);
        Assert.Equal(2, placement.Length);
        Assert.Equal(placement, Ints(v["in_sync"]));
        return (v["nsid"]!.GetValue<uint>(), primary, placement.Single(n => n != primary), new[] { 0, 1, 2 }.Except(placement).Single());
    }

    private async Task<JsonNode> MoveAsync(int node, string volume, int to, int from)
    {
        var (code, stdout, stderr) = await RunCli("ctl", "--json", "--socket", _c!.Socket(node), "volumes", "move", volume, "--to", Text(to), "--from", Text(from));
        Assert.True(code == 0, stderr);
        return JsonNode.Parse(stdout)!;
    }

    /// <summary>Waits until the volume's move, read on <paramref name="node"/>, is in <paramref name="phase"/>.</summary>
    private async Task<JsonNode> PhaseAsync(int node, string volume, string phase)
    {
        JsonNode? move = null;
        await Eventually.Until(async () => (move = await _c!.GetAsync(node, $"v1/volumes/{volume}/move"))?["phase"]?.GetValue<string>() == phase,
            $"the move of {volume} {phase}", 2 * Limit);
        return move!;
    }

    /// <summary>A ctl command on node 0 that must be refused with <paramref name="status"/> and a message containing <paramref name="message"/>.</summary>
    private async Task Refused(int status, string message, params string[] command)
    {
        var (code, _, stderr) = await RunCli(["ctl", "--socket", _c!.Socket(0), .. command]);
        Assert.True(code == 1, $"{string.Join(' ', command)}: exit {code} {stderr}");
        Assert.Contains($"error {status}: ", stderr, StringComparison.Ordinal);
        Assert.Contains(message, stderr, StringComparison.Ordinal);
    }

    /// <summary>The node no longer holds the volume: no replica in its store (its data deleted).</summary>
    private async Task NoDataOnAsync(int node, string volume) =>
        await Eventually.Until(async () => (await _c!.GetAsync(node, $"v1/volumes/{volume}"))?["local"]?.GetValue<bool>() == false,
            $"node {node} holds no data of {volume}", Limit);

    /// <summary>
    /// Every acknowledged block reads back from <paramref name="primary"/>; then it is killed, <paramref name="other"/>
    /// (in sync) is promoted and the whole volume reads back from it exactly as from the primary.
    /// </summary>
    private async Task ReplicasEqualAsync(HostWriters writers, uint nsid, string volume, int primary, int other)
    {
        var fromPrimary = new byte[Blocks * BlockSize];
        await using (var host = await _c!.ConnectOptimizedAsync(primary))
        {
            await AssertHoldsAsync(host, nsid, writers.Acked, Blocks);
            await ReadAllAsync(host, nsid, fromPrimary);
        }
        Assert.Equal(137, await _c.Nodes[primary].StopAsync(9));
        await Eventually.Until(async () => (await _c.GetAsync(other, "v1/volumes/" + volume))?["primary"]?.GetValue<int>() == other,
            $"node {other} promoted", 2 * Limit);
        var fromOther = new byte[Blocks * BlockSize];
        await using (var host = await _c.ConnectOptimizedAsync(other)) await ReadAllAsync(host, nsid, fromOther);
        for (int block = 0; block < Blocks; block++)
            Assert.True(fromPrimary.AsSpan(block * BlockSize, BlockSize).SequenceEqual(fromOther.AsSpan(block * BlockSize, BlockSize)),
                $"block {block} differs between nodes {primary} and {other}");
    }

    private static async Task ReadAllAsync(NvmeTcpController host, uint nsid, byte[] into)
    {
        for (int block = 0; block < Blocks; block += 128)
            await host.ReadAsync(nsid, (ulong)block, 128, into.AsMemory(block * BlockSize, 128 * BlockSize)).AsTask().WaitAsync(Limit);
    }

    private static string Text(int n) => n.ToString(CultureInfo.InvariantCulture);

    private static string Load() => File.ReadAllText("/proc/loadavg").Trim();

    /// <summary>
    /// Four writers of the host library, each rewriting its own 512 blocks with fresh data (the volume's first half: the
    /// rest is never written), through the primary's path;
    /// a write refused with a path status (the primary handed over) is retried on the path that turned optimized, and
    /// every writer then uses it. Any other error fails the test (the volume must be served throughout).
    /// </summary>
    private sealed class HostWriters : IAsyncDisposable
    {
        private const int Writers = 4, BlocksPerWriter = Blocks / 2 / Writers;
        private readonly NvmeTcpController?[] _hosts = new NvmeTcpController?[3];
        private readonly object _gate = new();
        private readonly CancellationTokenSource _stop = new();
        private ClusterProcesses _c = null!;
        private int _oldPrimary;
        private int[] _others = [];
        private NvmeTcpController _path = null!;
        private Task<NvmeTcpController>? _moved;
        private Task[] _writers = [];
        private long _lastOldAck, _firstNewAck;
        private int _refused, _afterSwitch;
        private long _writes;

        public ConcurrentDictionary<int, byte[]> Acked { get; } = new();

        public int Refused => Volatile.Read(ref _refused);

        public int NewPrimary { get; private set; } = -1;

        /// <summary>The last write acknowledged through the old primary to the first through the new one.</summary>
        public TimeSpan Pause => Stopwatch.GetElapsedTime(Volatile.Read(ref _lastOldAck), Volatile.Read(ref _firstNewAck));

        /// <summary>Writers through <paramref name="primary"/>'s path; hosts also connected to <paramref name="others"/> (paths it may move to).</summary>
        public static async Task<HostWriters> StartAsync(ClusterProcesses c, int primary, uint nsid, int[] others)
        {
            var w = new HostWriters { _c = c, _oldPrimary = primary, _others = others };
            w._hosts[primary] = w._path = await c.ConnectOptimizedAsync(primary, NoKeepAlive);
            foreach (int n in others)
                w._hosts[n] = await NvmeTcpController.ConnectAsync("127.0.0.1", c.Nodes[n].IoPort, Nqn, HostNqn, NoKeepAlive).WaitAsync(Limit);
            w._writers = [.. Enumerable.Range(0, Writers).Select(i => Task.Run(() => w.WriteAsync(i, nsid)))];
            return w;
        }

        /// <summary>Writes acknowledged so far (a block rewritten counts each time).</summary>
        public long Writes => Interlocked.Read(ref _writes);

        public Task UntilAckedAsync(long writes) =>
            Eventually.Until(() => Writes >= writes || _writers.Any(t => t.IsFaulted), $"{writes} writes acknowledged", Limit);

        /// <summary>Stops the writers (after <paramref name="afterSwitch"/> writes on a new path, if asked) and rethrows what failed one.</summary>
        public async Task StopAsync(int afterSwitch = 0)
        {
            await Eventually.Until(() => Volatile.Read(ref _afterSwitch) >= afterSwitch || _writers.Any(t => t.IsFaulted), "writes on the new primary's path", Limit);
            await _stop.CancelAsync();
            await Task.WhenAll(_writers).WaitAsync(Limit);
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            await Task.WhenAll(_writers).ContinueWith(_ => { }, TaskScheduler.Default);
            foreach (var h in _hosts)
                if (h is not null) await h.DisposeAsync();
        }

        private async Task WriteAsync(int writer, uint nsid)
        {
            for (int i = 0; !_stop.IsCancellationRequested; i++)
            {
                int block = writer * BlocksPerWriter + i % BlocksPerWriter;
                var data = Pattern(BlockSize, writer * 1_000_000 + i);
                var through = Volatile.Read(ref _path);
                try
                {
                    await through.WriteAsync(nsid, (ulong)block, 1, data).AsTask().WaitAsync(Limit);
                }
                catch (NvmeException e) when (e.Status == NvmeStatus.AsymmetricAccessInaccessible || e.Status == NvmeStatus.InvalidNamespaceOrFormat)
                {
                    // Refused by the old primary's path, so not applied anywhere: the same write on the new primary's path.
                    Interlocked.Increment(ref _refused);
                    through = await NewPathAsync();
                    Volatile.Write(ref _path, through);
                    await through.WriteAsync(nsid, (ulong)block, 1, data).AsTask().WaitAsync(Limit);
                }
                long now = Stopwatch.GetTimestamp();
                if (ReferenceEquals(through, _hosts[_oldPrimary])) Interlocked.Exchange(ref _lastOldAck, Math.Max(now, Volatile.Read(ref _lastOldAck)));
                else
                {
                    Interlocked.CompareExchange(ref _firstNewAck, now, 0);
                    Interlocked.Increment(ref _afterSwitch);
                }
                Acked[block] = data;
                Interlocked.Increment(ref _writes);
            }
        }

        /// <summary>The first writer refused looks for the node whose path turned optimized; all then use it.</summary>
        private Task<NvmeTcpController> NewPathAsync()
        {
            lock (_gate)
                return _moved ??= Task.Run(async () =>
                {
                    int promoted = -1;
                    await Eventually.Until(async () =>
                    {
                        foreach (int n in _others)
                            if (await HasOptimizedPath(_hosts[n]!)) promoted = n;
                        return promoted >= 0;
                    }, "another node's path optimized", Limit);
                    NewPrimary = promoted;
                    return _hosts[promoted]!;
                });
        }

        /// <summary>Whether the host's ANA log page lists a group (the node exposes the namespace) and it is optimized.</summary>
        private static async Task<bool> HasOptimizedPath(NvmeTcpController host)
        {
            var page = await host.GetLogPageAsync(LogPageId.AsymmetricNamespaceAccess, AnaLogPage.Size(1, false));
            return BitConverter.ToUInt16(page.AsSpan(8, 2)) > 0 && page[32] == 0x01;
        }
    }
}
