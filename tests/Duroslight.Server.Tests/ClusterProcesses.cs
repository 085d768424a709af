using System.Text.Json.Nodes;
using Duroslight.Host;
using Duroslight.Protocol.Nvme;
using Duroslight.Server.Control;
using Duroslight.Tests.Shared;

namespace Duroslight.Server.Tests;

/// <summary>
/// A real etcd and three real `duroslight serve` processes in one cluster (memory stores, one temporary directory),
/// and what the cluster process tests ask of them: the control API of each node, the CLI, a host on an optimized path.
/// </summary>
internal sealed class ClusterProcesses : IDisposable
{
    public const string Nqn = "nqn.2026-11.io.duroslight:default";
    public const string HostNqn = "nqn.2014-08.org.nvmexpress:uuid:c1c1c1c1-0000-0000-0000-000000000001";
    public static readonly TimeSpan Limit = TimeSpan.FromSeconds(90);
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("dsl-cluster-");
    private readonly string _cluster = $"t{Guid.NewGuid():N}"[..12];
    private readonly int _leaseTtl;
    private readonly bool _memory;
    private readonly string[] _extraArgs;
    private EtcdProcess? _etcd;

    private ClusterProcesses(int leaseTtl, bool memory, string[] extraArgs)
    {
        _leaseTtl = leaseTtl;
        _memory = memory;
        _extraArgs = extraArgs;
    }

    public List<ServerProcess> Nodes { get; } = [];

    public int[] MetricsPorts { get; } = [NodeFixture.FreePort(), NodeFixture.FreePort(), NodeFixture.FreePort()];

    /// <summary>etcd and three nodes with lease TTL <paramref name="leaseTtl"/> s and <paramref name="extraArgs"/>, once all three are Active; null without etcd.</summary>
    public static Task<ClusterProcesses?> StartAsync(int leaseTtl, params string[] extraArgs) => StartAsync(leaseTtl, memory: true, extraArgs);

    /// <summary>As above; <paramref name="memory"/> false: sparse stores in each node's directory, so a restarted node keeps its replicas.</summary>
    public static async Task<ClusterProcesses?> StartAsync(int leaseTtl, bool memory, params string[] extraArgs)
    {
        if (!EtcdProcess.Installed) return null;
        var c = new ClusterProcesses(leaseTtl, memory, extraArgs);
        try
        {
            c._etcd = await EtcdProcess.StartAsync();
            for (int i = 0; i < 3; i++) c.Nodes.Add(await ServerProcess.StartAsync(c.NodeArgs(i, memory)));
            await Eventually.Until(async () => CountState(await c.NodesAsync(0), "Active") == 3, "three nodes Active in nodes list", Limit);
            return c;
        }
        catch
        {
            c.Dispose(); // the test never gets the fixture: etcd and the nodes started so far would outlive the run
            throw;
        }
    }

    public void Dispose()
    {
        foreach (var n in Nodes) n.Dispose();
        _etcd?.Dispose();
        try
        {
            _dir.Delete(recursive: true);
        }
        catch (IOException)
        {
        }
    }

    public string Socket(int index) => Path.Combine(_dir.FullName, $"ctl{index}.sock");

    public string NodeDir(int index) => Path.Combine(_dir.FullName, $"node{index}");

    /// <summary>
    /// Stops node <paramref name="index"/> gracefully (unless it exited already: killed) and starts it again (with a
    /// sparse store unless <paramref name="memory"/>; by default the store the cluster started with), after deleting
    /// its data directory if <paramref name="wipe"/>.
    /// </summary>
    public async Task RestartAsync(int index, bool? memory = null, bool wipe = false)
    {
        if (!Nodes[index].HasExited && await Nodes[index].StopAsync(15) != 0) throw new InvalidOperationException($"node {index} did not stop cleanly: {Nodes[index].Output}");
        Nodes[index].Dispose();
        if (wipe) Directory.Delete(NodeDir(index), recursive: true);
        Nodes[index] = await ServerProcess.StartAsync(NodeArgs(index, memory ?? _memory));
    }

    /// <summary>A sparse store's file of the volume on node <paramref name="index"/> (its bytes as the node wrote them).</summary>
    public string VolumeFile(int index, string volumeId) => Path.Combine(NodeDir(index), "volumes", volumeId + ".vol");

    /// <summary>A metric's value on node <paramref name="node"/> for the exact label set, or null when the series is not there.</summary>
    public async Task<double?> MetricAsync(int node, string series)
    {
        using var http = new HttpClient();
        string page = await http.GetStringAsync($"http://127.0.0.1:{MetricsPorts[node]}/metrics");
        foreach (string line in page.Split('\n'))
            if (line.StartsWith(series + " ", StringComparison.Ordinal))
                return double.Parse(line[(series.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        return null;
    }

    /// <summary>Kills etcd (SIGKILL): every etcd stream of the nodes breaks.</summary>
    public void KillEtcd()
    {
        _etcd?.Dispose();
        _etcd = null;
    }

    public async Task<JsonNode?> GetAsync(int node, string path)
    {
        using var client = new ControlClient(Socket(node));
        var (status, body) = await client.GetAsync(path);
        return status == 200 ? body : null;
    }

    public async Task<JsonArray> NodesAsync(int node) => await GetAsync(node, "v1/nodes") as JsonArray ?? [];

    /// <summary>A host on <paramref name="node"/> once its path to the volume is optimized (ANA log page).</summary>
    public async Task<NvmeTcpController> ConnectOptimizedAsync(int node, NvmeTcpControllerOptions? options = null)
    {
        var host = await NvmeTcpController.ConnectAsync("127.0.0.1", Nodes[node].IoPort, Nqn, HostNqn, options).WaitAsync(Limit);
        await Eventually.Until(async () => await AnaStateAsync(host) == 0x01, $"node {node}'s path optimized", Limit);
        return host;
    }

    /// <summary>A three-replica volume of 16 MiB created through node 0 with the CLI: its NSID, primary and generation.</summary>
    public async Task<(uint Nsid, int Primary, long Generation)> CreateVolumeAsync(string name)
    {
        var (code, _, stderr) = await RunCli("ctl", "--socket", Socket(0), "volumes", "create", name, "16M", "--replicas", "3");
        if (code != 0) throw new InvalidOperationException($"volumes create {name}: {stderr}");
        var v = (await GetAsync(0, $"v1/volumes/{name}"))!;
        return (v["nsid"]!.GetValue<uint>(), v["primary"]!.GetValue<int>(), v["generation"]!.GetValue<long>());
    }

    /// <summary>Reads blocks 0..<paramref name="blocks"/> of 4 KiB through <paramref name="host"/>: every acknowledged block holds its data.</summary>
    public static async Task AssertHoldsAsync(NvmeTcpController host, uint nsid, IReadOnlyDictionary<int, byte[]> acked, int blocks)
    {
        const int Span = 128, BlockSize = 4096;
        var back = new byte[Span * BlockSize];
        for (int start = 0; start < blocks; start += Span)
        {
            await host.ReadAsync(nsid, (ulong)start, Span, back).AsTask().WaitAsync(Limit);
            for (int block = start; block < start + Span; block++)
                if (acked.TryGetValue(block, out var data))
                    Xunit.Assert.True(data.AsSpan().SequenceEqual(back.AsSpan((block - start) * BlockSize, BlockSize)), $"acknowledged block {block} differs");
        }
    }

    /// <summary>The volume's allocated bytes on a node, from its metrics.</summary>
    public async Task<long> AllocatedAsync(int node, string volume)
    {
        using var http = new HttpClient();
        string page = await http.GetStringAsync($"http://127.0.0.1:{MetricsPorts[node]}/metrics");
        string prefix = $"duroslight_volume_allocated_bytes{{volume=\"{volume}\",";
        foreach (string line in page.Split('\n'))
            if (line.StartsWith(prefix, StringComparison.Ordinal)) return long.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
        throw new Xunit.Sdk.XunitException($"no {prefix} on node {node}");
    }

    /// <summary>The ANA state of the first (only) group in the host's ANA log page: 01h optimized, 03h inaccessible.</summary>
    public static async Task<byte> AnaStateAsync(NvmeTcpController host) =>
        (await host.GetLogPageAsync(LogPageId.AsymmetricNamespaceAccess, AnaLogPage.Size(1, false)))[32];

    public static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    public static int CountState(JsonArray nodes, string state) => nodes.Count(n => n!["state"]!.GetValue<string>() == state);

    public static string? StateOf(JsonArray nodes, int index) =>
        nodes.FirstOrDefault(n => n!["index"]!.GetValue<int>() == index)?["state"]!.GetValue<string>();

    public static int LeaderOf(JsonArray nodes) =>
        nodes.FirstOrDefault(n => n!["leader"]!.GetValue<bool>())?["index"]!.GetValue<int>() ?? -1;

    public static int[] Ints(JsonNode? array) => [.. array!.AsArray().Select(n => n!.GetValue<int>())];

    public static Task<(int Code, string Stdout, string Stderr)> RunCli(params string[] args) => DuroslightCli.RunAsync(Limit, args);

    private string[] NodeArgs(int index, bool memory = true)
    {
        string dir = NodeDir(index);
        Directory.CreateDirectory(dir);
        return ["--metrics", $"127.0.0.1:{MetricsPorts[index]}", .. memory ? (string[])["--memory"] : ["--store", "sparse"], "--etcd", _etcd!.Url, "--cluster", _cluster,
            "--node-index", index.ToString(System.Globalization.CultureInfo.InvariantCulture), "--lease-ttl", _leaseTtl.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--data-dir", dir, "--control-socket", Socket(index), .. _extraArgs];
    }
}
