using System.Diagnostics;
using System.Globalization;
using Duroslight.Protocol.Subsystems;
using Duroslight.Server.Hosting;

namespace Duroslight.Server.Metrics;

/// <summary>
/// Builds the /metrics page from control-plane snapshots and the per-shard I/O counters (summed here, at scrape
/// time; the I/O path never waits for a scrape).
/// </summary>
public static class MetricsRenderer
{
    private static readonly string[] Directions = ["read", "write"];

    public static string Render(NodeHost node)
    {
        var text = new PrometheusText();
        var controllers = node.Target.ListControllers();
        ControllerIds(text, node, controllers);
        Process(text, node);
        Fabric(text, node, controllers);
        Volumes(text, node);
        ShardIo(text, node.IoMetrics);
        Shards(text, node);
        GftlMetrics.Render(text, node);
        return text.ToString();
    }

    /// <summary>The product's documented series: controller IDs in use per pool (0 = default, N = aux-N) and shard.</summary>
    private static void ControllerIds(PrometheusText text, NodeHost node, IReadOnlyList<ControllerSnapshot> controllers)
    {
        const string name = "lightbox_fe_ctrl_id_used";
        text.Family(name, "gauge", "Controller IDs in use per subsystem pool (0 = default, N = aux-N) and shard.");
        int shards = node.IoMetrics.ShardCount;
        foreach (var s in node.Target.Subsystems)
            for (int shard = 0; shard < shards; shard++)
            {
                int n = 0;
                foreach (var c in controllers) if (!c.IsDiscovery && c.PoolId == s.PoolId && c.Shard == shard) n++;
                text.Sample(name, n, ("pool_id", Int(s.PoolId)), ("shard", Int(shard)), ("type", "counter"));
            }
    }

    private static void Process(PrometheusText text, NodeHost node)
    {
        text.Family("duroslight_state", "gauge", "Lifecycle state: 1 for the current state, 0 for the others.");
        foreach (var state in Enum.GetValues<NodeState>())
            text.Sample("duroslight_state", state == node.State ? 1 : 0, ("state", state.ToString().ToLowerInvariant()));
        text.Family("duroslight_node_info", "gauge", "Node identity (always 1).");
        text.Sample("duroslight_node_info", 1, ("node_index", Int(node.Settings.NodeIndex)), ("cluster", node.Settings.ClusterId),
            ("nqn", node.Settings.SubsystemNqn));
        text.Family("duroslight_discovery_generation", "gauge", "Discovery log generation counter (genctr).");
        text.Sample("duroslight_discovery_generation", node.Target.DiscoveryGeneration);
        using var self = System.Diagnostics.Process.GetCurrentProcess();
        text.Family("process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch in seconds.");
        text.Sample("process_start_time_seconds", new DateTimeOffset(self.StartTime.ToUniversalTime()).ToUnixTimeMilliseconds() / 1000.0);
        text.Family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        text.Sample("process_resident_memory_bytes", self.WorkingSet64);
        text.Family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
        text.Sample("process_cpu_seconds_total", self.TotalProcessorTime.TotalSeconds);
    }

    private static void Fabric(PrometheusText text, NodeHost node, IReadOnlyList<ControllerSnapshot> controllers)
    {
        text.Family("duroslight_connections", "gauge", "Open NVMe/TCP connections (admin and I/O queues, discovery included).");
        text.Sample("duroslight_connections", node.ConnectionCount);
        text.Family("duroslight_controllers", "gauge", "Live controllers per shard and kind (io, discovery).");
        text.Family("duroslight_queues", "gauge", "Live queues (admin + I/O) of the controllers per shard.");
        var perShard = new SortedDictionary<(int Shard, string Kind), (int Controllers, int Queues)>();
        for (int shard = 0; shard < node.IoMetrics.ShardCount; shard++)
        {
            perShard[(shard, "io")] = (0, 0);
            perShard[(shard, "discovery")] = (0, 0);
        }
        foreach (var c in controllers)
        {
            var key = (c.Shard, c.IsDiscovery ? "discovery" : "io");
            var (n, q) = perShard.GetValueOrDefault(key);
            perShard[key] = (n + 1, q + 1 + c.IoQueues);
        }
        foreach (var ((shard, kind), (n, _)) in perShard) text.Sample("duroslight_controllers", n, ("shard", Int(shard)), ("kind", kind));
        foreach (var ((shard, kind), (_, q)) in perShard) text.Sample("duroslight_queues", q, ("shard", Int(shard)), ("kind", kind));
    }

    private static void Volumes(PrometheusText text, NodeHost node)
    {
        var volumes = node.VolumeList();
        text.Family("duroslight_volume_size_bytes", "gauge", "Logical size of each volume.");
        foreach (var v in volumes) text.Sample("duroslight_volume_size_bytes", v.SizeBytes, VolumeLabels(v));
        text.Family("duroslight_volume_allocated_bytes", "gauge", "Physically allocated bytes of each volume (thin provisioning).");
        foreach (var v in volumes) text.Sample("duroslight_volume_allocated_bytes", v.AllocatedBytes, VolumeLabels(v));
        var io = node.IoMetrics;
        text.Family("duroslight_volume_commands_total", "counter", "Read and write commands completed per volume.");
        foreach (var v in volumes) VolumeCounter(text, io, v, "duroslight_volume_commands_total", bytes: false);
        text.Family("duroslight_volume_bytes_total", "counter", "Bytes read and written per volume.");
        foreach (var v in volumes) VolumeCounter(text, io, v, "duroslight_volume_bytes_total", bytes: true);
    }

    private static void VolumeCounter(PrometheusText text, IoMetrics io, VolumeView v, string name, bool bytes)
    {
        if (v.Nsid == 0) return;
        int slot = (int)v.Nsid - 1;
        for (int dir = 0; dir < 2; dir++)
        {
            long sum = 0;
            for (int s = 0; s < io.ShardCount; s++)
            {
                var c = io.Shard(s);
                sum += Volatile.Read(ref (bytes ? c.VolumeBytes : c.VolumeCommands)[slot * 2 + dir]);
            }
            text.Sample(name, sum, ("volume", v.Name), ("volume_id", v.Id.ToString()), ("op", Directions[dir]));
        }
    }

    private static void ShardIo(PrometheusText text, IoMetrics io)
    {
        text.Family("duroslight_commands_total", "counter", "Storage commands completed per shard (op: read, write, other).");
        text.Family("duroslight_bytes_total", "counter", "Bytes read and written per shard.");
        text.Family("duroslight_inflight_commands", "gauge", "Storage commands executing per shard.");
        text.Family("duroslight_command_errors_total", "counter", "Storage commands that failed, per shard and NVMe status (sct/sc hex).");
        for (int s = 0; s < io.ShardCount; s++)
        {
            var c = io.Shard(s);
            string shard = Int(s);
            for (int dir = 0; dir < 2; dir++)
            {
                text.Sample("duroslight_commands_total", Volatile.Read(ref c.Commands[dir]), ("shard", shard), ("op", Directions[dir]));
                text.Sample("duroslight_bytes_total", Volatile.Read(ref c.Bytes[dir]), ("shard", shard), ("op", Directions[dir]));
            }
            text.Sample("duroslight_commands_total", Volatile.Read(ref c.OtherCommands), ("shard", shard), ("op", "other"));
            text.Sample("duroslight_inflight_commands", Volatile.Read(ref c.InFlight), ("shard", shard));
            for (int st = 0; st < c.Errors.Length; st++)
            {
                long n = Volatile.Read(ref c.Errors[st]);
                if (n != 0) text.Sample("duroslight_command_errors_total", n, ("shard", shard), ("status", $"{st >> 8:x}/{st & 0xFF:x2}"));
            }
        }
        for (int dir = 0; dir < 2; dir++) Histogram(text, io, dir);
    }

    private static void Histogram(PrometheusText text, IoMetrics io, int dir)
    {
        string name = $"duroslight_{Directions[dir]}_latency_seconds";
        text.Family(name, "histogram", $"Latency of {Directions[dir]} commands in the storage executor, per shard.");
        for (int s = 0; s < io.ShardCount; s++)
        {
            var c = io.Shard(s);
            string shard = Int(s);
            long cumulative = 0;
            for (int b = 0; b < c.BucketCount; b++)
            {
                cumulative += Volatile.Read(ref c.Latency[dir * c.BucketCount + b]);
                string le = b < IoMetrics.LatencyBuckets.Length ? IoMetrics.LatencyBuckets[b].ToString(CultureInfo.InvariantCulture) : "+Inf";
                text.Sample(name + "_bucket", cumulative, ("shard", shard), ("le", le));
            }
            text.Sample(name + "_sum", Volatile.Read(ref c.LatencyTicks[dir]) / (double)Stopwatch.Frequency, ("shard", shard));
            text.Sample(name + "_count", cumulative, ("shard", shard));
        }
    }

    /// <summary>Reactor loop utilisation (thread CPU / wall time) and per-shard allocation, from the shards themselves.</summary>
    private static void Shards(PrometheusText text, NodeHost node)
    {
        if (node.Shards is not { } shards) return;
        text.Family("duroslight_shard_cpu_seconds_total", "counter", "CPU time of each reactor shard's thread, user and kernel (ring work included).");
        for (int i = 0; i < shards.Count; i++)
            text.Sample("duroslight_shard_cpu_seconds_total", shards[i].LoopTime.Cpu.TotalSeconds, ("shard", Int(i)));
        text.Family("duroslight_shard_loop_seconds_total", "counter", "Wall time each reactor shard has run; cpu/loop seconds is its utilisation.");
        for (int i = 0; i < shards.Count; i++)
            text.Sample("duroslight_shard_loop_seconds_total", shards[i].LoopTime.Wall.TotalSeconds, ("shard", Int(i)));
        text.Family("duroslight_shard_allocated_bytes_total", "counter", "Managed bytes allocated by each shard's thread (0 growth in steady state).");
        for (int i = 0; i < shards.Count; i++)
            text.Sample("duroslight_shard_allocated_bytes_total", shards[i].AllocatedBytes, ("shard", Int(i)));
    }

    private static (string, string)[] VolumeLabels(VolumeView v) => [("volume", v.Name), ("volume_id", v.Id.ToString())];

    private static string Int(int v) => v.ToString(CultureInfo.InvariantCulture);
}
