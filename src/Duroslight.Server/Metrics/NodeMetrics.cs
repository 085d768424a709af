using System.Diagnostics;
using System.Globalization;
using System.Text;
using Duroslight.Server.Hosting;
using Duroslight.Storage.Gftl;
using Prometheus;

namespace Duroslight.Server.Metrics;

/// <summary>
/// The /metrics page on prometheus-net: one registry per node whose collect-time callback copies control-plane
/// snapshots and the per-shard I/O counters (<see cref="IoMetrics"/>, plain increments by each shard's thread) into
/// the library's gauges and counters. The I/O path never touches prometheus-net and never waits for a scrape.
/// The two latency histograms are written after the registry's page by <see cref="PrometheusText"/>: prometheus-net
/// can only build a histogram from Observe() calls, which would put its atomic updates on every I/O, while the
/// shards already keep exact bucket counts and sums (see docs/ARCHITECTURE.md "Libraries").
/// </summary>
public sealed class NodeMetrics
{
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    private static readonly string[] Directions = ["read", "write"];
    private readonly NodeHost _node;
    private readonly CollectorRegistry _registry = Prometheus.Metrics.NewCustomRegistry();
    private readonly Lock _collect = new();
    private readonly Gauge _ctrlIds, _state, _nodeInfo, _genctr, _connections, _controllers, _queues, _volumeSize, _volumeAllocated, _inFlight;
    private readonly Counter _volumeCommands, _volumeBytes, _commands, _bytes, _errors, _shardCpu, _shardLoop, _shardAllocated, _shardIterations, _shardWorkIterations, _shardEnters, _shardSleeps, _residentCpu;
    private readonly Gauge _resident, _startTime;
    private readonly Gauge _leader, _fenceUp, _clusterNodes, _replicaRole, _replicaInSync, _deviceFailed, _peerConnected;
    private readonly Counter _deviceErrors, _replicationCommands, _replicationBytes, _replicationLatency;
    private HashSet<(string Name, string Kind)> _deviceLabels = [];
    private HashSet<(string Name, string Id)> _replicaLabels = [];
    private readonly Gauge _rebuildChunksLeft, _rebuildBytes, _rebuildEta, _rebuildDirty, _rebuildResumed, _lastRebuildChunks, _lastRebuildDirty, _lastRebuildResumed;
    private HashSet<(string Volume, string Peer)> _rebuildLabels = [];
    private readonly GftlSeries? _gftl;
    private HashSet<(string Name, string Id)> _volumeLabels = [];

    public NodeMetrics(NodeHost node)
    {
        _node = node;
        var f = Prometheus.Metrics.WithCustomRegistry(_registry);
        _ctrlIds = f.CreateGauge("lightbox_fe_ctrl_id_used", "Controller IDs in use per subsystem pool (0 = default, N = aux-N) and shard.", "pool_id", "shard", "type");
        _state = f.CreateGauge("duroslight_state", "Lifecycle state: 1 for the current state, 0 for the others.", "state");
        _nodeInfo = f.CreateGauge("duroslight_node_info", "Node identity (always 1).", "node_index", "cluster", "nqn");
        _genctr = f.CreateGauge("duroslight_discovery_generation", "Discovery log generation counter (genctr).");
        _startTime = f.CreateGauge("process_start_time_seconds", "Start time of the process since the Unix epoch in seconds.");
        _resident = f.CreateGauge("process_resident_memory_bytes", "Resident memory size in bytes.");
        _residentCpu = f.CreateCounter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.");
        _connections = f.CreateGauge("duroslight_connections", "Open NVMe/TCP connections (admin and I/O queues, discovery included).");
        _controllers = f.CreateGauge("duroslight_controllers", "Live controllers per shard and kind (io, discovery).", "shard", "kind");
        _queues = f.CreateGauge("duroslight_queues", "Live queues (admin + I/O) of the controllers per shard.", "shard", "kind");
        _volumeSize = f.CreateGauge("duroslight_volume_size_bytes", "Logical size of each volume.", "volume", "volume_id");
        _volumeAllocated = f.CreateGauge("duroslight_volume_allocated_bytes", "Physically allocated bytes of each volume (thin provisioning).", "volume", "volume_id");
        _volumeCommands = f.CreateCounter("duroslight_volume_commands_total", "Read and write commands completed per volume.", "volume", "volume_id", "op");
        _volumeBytes = f.CreateCounter("duroslight_volume_bytes_total", "Bytes read and written per volume.", "volume", "volume_id", "op");
        _commands = f.CreateCounter("duroslight_commands_total", "Storage commands completed per shard (op: read, write, other).", "shard", "op");
        _bytes = f.CreateCounter("duroslight_bytes_total", "Bytes read and written per shard.", "shard", "op");
        _inFlight = f.CreateGauge("duroslight_inflight_commands", "Storage commands executing per shard.", "shard");
        _errors = f.CreateCounter("duroslight_command_errors_total", "Storage commands that failed, per shard and NVMe status (sct/sc hex).", "shard", "status");
        _shardCpu = f.CreateCounter("duroslight_shard_cpu_seconds_total", "CPU time of each reactor shard's thread, user and kernel (ring work included).", "shard");
        _shardLoop = f.CreateCounter("duroslight_shard_loop_seconds_total", "Wall time each reactor shard has run; cpu/loop seconds is its utilisation.", "shard");
        _shardAllocated = f.CreateCounter("duroslight_shard_allocated_bytes_total", "Managed bytes allocated by each shard's thread (0 growth in steady state).", "shard");
        _shardIterations = f.CreateCounter("duroslight_shard_iterations_total", "Reactor loop iterations of each shard (per command: the loop's cost in counts).", "shard");
        _shardWorkIterations = f.CreateCounter("duroslight_shard_work_iterations_total", "Reactor loop iterations of each shard that found work (completions, posted work, sends).", "shard");
        _shardEnters = f.CreateCounter("duroslight_shard_enters_total", "io_uring_enter calls of each shard's loop (submit, run task work, or sleep).", "shard");
        _shardSleeps = f.CreateCounter("duroslight_shard_sleeps_total", "io_uring_enter calls of each shard's loop that waited for a completion (sleep mode).", "shard");
        _leader = f.CreateGauge("duroslight_cluster_leader", "1 while this node is the cluster's leader (a lone node: 0).");
        _fenceUp = f.CreateGauge("duroslight_cluster_fence_up", "1 while this node's lease fence holds (its primaries may serve; a lone node: 1), 0 once no lease renewal came for 5/6 of the TTL.");
        _clusterNodes = f.CreateGauge("duroslight_cluster_nodes", "Nodes of the cluster by liveness (live: lease held, down: lease expired).", "state");
        _replicaRole = f.CreateGauge("duroslight_replica_role", "1 for the role of this node's replica of each cluster volume (primary, secondary).", "volume", "volume_id", "role");
        _deviceFailed = f.CreateGauge("duroslight_device_failed", "1 while a device (GFTL device, sparse volume file) is out of service after repeated errors or a stall.", "device", "kind");
        _deviceErrors = f.CreateCounter("duroslight_device_errors_total", "I/O errors a device returned since it was opened.", "device", "kind");
        _replicaInSync = f.CreateGauge("duroslight_replica_in_sync", "1 while this node's replica is in the volume's in-sync set.", "volume", "volume_id");
        _rebuildChunksLeft = f.CreateGauge("duroslight_rebuild_chunks_left", "128 KiB chunks a rebuild of the peer's replica (this node primary) has not copied yet.", "volume", "peer");
        _rebuildBytes = f.CreateGauge("duroslight_rebuild_copied_bytes", "Bytes the rebuild of the peer's replica has written to it so far.", "volume", "peer");
        _rebuildEta = f.CreateGauge("duroslight_rebuild_eta_seconds", "Seconds the rebuild of the peer's replica needs at its pace so far (-1: not known yet).", "volume", "peer");
        _rebuildDirty = f.CreateGauge("duroslight_rebuild_dirty", "1 while the rebuild of the peer's replica copies only the chunks it missed, 0 for a full copy (new or wiped replica).", "volume", "peer");
        _rebuildResumed = f.CreateGauge("duroslight_rebuild_resumed", "1 while the rebuild of the peer's replica started from a sync point in etcd.", "volume", "peer");
        _lastRebuildChunks = f.CreateGauge("duroslight_rebuild_last_chunks_copied", "128 KiB chunks the last rebuild of the peer's replica that ended on this node copied.", "volume", "peer");
        _lastRebuildDirty = f.CreateGauge("duroslight_rebuild_last_dirty", "1 if the last rebuild of the peer's replica that ended on this node copied only the chunks it missed, 0 if every chunk.", "volume", "peer");
        _lastRebuildResumed = f.CreateGauge("duroslight_rebuild_last_resumed", "1 if the last rebuild of the peer's replica that ended on this node started from a sync point in etcd.", "volume", "peer");
        _peerConnected = f.CreateGauge("duroslight_replication_peer_connected", "1 while this node's replication link to the peer node is connected (0: lost).", "peer");
        _replicationCommands = f.CreateCounter("duroslight_replication_commands_total", "Commands forwarded to the peer node and completed (writes, write-zeroes, deallocates, flushes).", "peer");
        _replicationBytes = f.CreateCounter("duroslight_replication_bytes_total", "Data bytes forwarded to the peer node.", "peer");
        _replicationLatency = f.CreateCounter("duroslight_replication_latency_seconds_total", "Sum of the forwards' round-trip times to the peer node (divide by commands for the mean).", "peer");
        // The store is open before the metrics endpoint starts, so which GFTL series exist is known here.
        if (node.StoreRecovery is not null || node.Gftl is not null) _gftl = new GftlSeries(f, node);
        _registry.AddBeforeCollectCallback(Collect);
    }

    /// <summary>Writes the whole page: the registry's families, then the latency histograms.</summary>
    public async Task ExportAsync(Stream output, CancellationToken cancel)
    {
        await _registry.CollectAndExportAsTextAsync(output, ExpositionFormat.PrometheusText, cancel).ConfigureAwait(false);
        byte[] histograms = Encoding.UTF8.GetBytes(LatencyHistograms(_node.IoMetrics));
        await output.WriteAsync(histograms, cancel).ConfigureAwait(false);
    }

    public async Task<string> RenderAsync()
    {
        using var buffer = new MemoryStream();
        await ExportAsync(buffer, CancellationToken.None).ConfigureAwait(false);
        return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

    private void Collect()
    {
        lock (_collect)
        {
            var controllers = _node.Target.ListControllers();
            ControllerIds(controllers);
            Process();
            Fabric(controllers);
            Volumes();
            Devices();
            ShardIo(_node.IoMetrics);
            Shards();
            _gftl?.Collect(_node);
            Cluster();
        }
    }

    /// <summary>The product's documented series: controller IDs in use per pool (0 = default, N = aux-N) and shard.</summary>
    private void ControllerIds(IReadOnlyList<Protocol.Subsystems.ControllerSnapshot> controllers)
    {
        int shards = _node.IoMetrics.ShardCount;
        foreach (var s in _node.Target.Subsystems)
            for (int shard = 0; shard < shards; shard++)
            {
                int n = 0;
                foreach (var c in controllers) if (!c.IsDiscovery && c.PoolId == s.PoolId && c.Shard == shard) n++;
                _ctrlIds.WithLabels(Int(s.PoolId), Int(shard), "counter").Set(n);
            }
    }

    /// <summary>The cluster as this node last read it: leadership, live/down nodes, its replicas' roles.</summary>
    private void Cluster()
    {
        var cluster = _node.Cluster;
        _leader.Set(cluster?.IsLeader == true ? 1 : 0);
        _fenceUp.Set(_node.Target.Fence.Holds ? 1 : 0);
        if (cluster is null) return;
        var view = cluster.View;
        _clusterNodes.WithLabels("live").Set(view.Alive.Count);
        _clusterNodes.WithLabels("down").Set(view.Nodes.Count - view.Alive.Count);
        var labels = new HashSet<(string Name, string Id)>();
        foreach (var entry in view.Volumes)
        {
            var v = entry.Record;
            if (!v.Placement.Contains(cluster.Index)) continue;
            string id = v.Id.ToString("D");
            labels.Add((v.Name, id));
            _replicaRole.WithLabels(v.Name, id, "primary").Set(v.Primary == cluster.Index ? 1 : 0);
            _replicaRole.WithLabels(v.Name, id, "secondary").Set(v.Primary == cluster.Index ? 0 : 1);
            _replicaInSync.WithLabels(v.Name, id).Set(v.InSync.Contains(cluster.Index) ? 1 : 0);
        }
        foreach (var (name, id) in _replicaLabels)
        {
            if (labels.Contains((name, id))) continue;
            _replicaRole.RemoveLabelled(name, id, "primary");
            _replicaRole.RemoveLabelled(name, id, "secondary");
            _replicaInSync.RemoveLabelled(name, id);
        }
        _replicaLabels = labels;
        Replication();
        Rebuilds(view);
    }

    /// <summary>Rebuilds this node runs as a primary; a finished one's series go.</summary>
    private void Rebuilds(Cluster.ClusterView view)
    {
        if (_node.Replicator is not { } replicator) return;
        var labels = new HashSet<(string, string)>();
        foreach (var r in replicator.Rebuilds())
        {
            string volume = view.Find(r.Volume.ToString("D"))?.Record.Name ?? r.Volume.ToString("D");
            string peer = Int(r.Node);
            labels.Add((volume, peer));
            _rebuildChunksLeft.WithLabels(volume, peer).Set(r.ChunksLeft);
            _rebuildBytes.WithLabels(volume, peer).Set(r.BytesCopied);
            _rebuildEta.WithLabels(volume, peer).Set(r.EtaSeconds);
            _rebuildDirty.WithLabels(volume, peer).Set(r.Dirty ? 1 : 0);
            _rebuildResumed.WithLabels(volume, peer).Set(r.Resumed ? 1 : 0);
        }
        foreach (var r in replicator.LastRebuilds())
        {
            string volume = view.Find(r.Volume.ToString("D"))?.Record.Name ?? r.Volume.ToString("D");
            string peer = Int(r.Node);
            _lastRebuildChunks.WithLabels(volume, peer).Set(r.ChunksCopied);
            _lastRebuildDirty.WithLabels(volume, peer).Set(r.Dirty ? 1 : 0);
            _lastRebuildResumed.WithLabels(volume, peer).Set(r.Resumed ? 1 : 0);
        }
        foreach (var (volume, peer) in _rebuildLabels)
        {
            if (labels.Contains((volume, peer))) continue;
            _rebuildChunksLeft.RemoveLabelled(volume, peer);
            _rebuildBytes.RemoveLabelled(volume, peer);
            _rebuildEta.RemoveLabelled(volume, peer);
            _rebuildDirty.RemoveLabelled(volume, peer);
            _rebuildResumed.RemoveLabelled(volume, peer);
        }
        _rebuildLabels = labels;
    }

    /// <summary>Peer links of this node's replicated writes: connection state, forwarded commands, bytes, round-trip time.</summary>
    private void Replication()
    {
        if (_node.Replicator is not { } replicator) return;
        foreach (var (node, connected, counters) in replicator.Links())
        {
            string peer = Int(node);
            long commands = 0, bytes = 0;
            double seconds = 0;
            foreach (var c in counters)
            {
                commands += c.Commands;
                bytes += c.Bytes;
                seconds += c.Latency.TotalSeconds;
            }
            _peerConnected.WithLabels(peer).Set(connected ? 1 : 0);
            _replicationCommands.WithLabels(peer).IncTo(commands);
            _replicationBytes.WithLabels(peer).IncTo(bytes);
            _replicationLatency.WithLabels(peer).IncTo(seconds);
        }
    }

    private void Process()
    {
        foreach (var state in Enum.GetValues<NodeState>())
            _state.WithLabels(state.Name().ToLowerInvariant()).Set(state == _node.State ? 1 : 0);
        _nodeInfo.WithLabels(Int(_node.Settings.NodeIndex), _node.Settings.ClusterId, _node.Settings.SubsystemNqn).Set(1);
        _genctr.Set(_node.Target.DiscoveryGeneration);
        using var self = System.Diagnostics.Process.GetCurrentProcess();
        _startTime.Set(new DateTimeOffset(self.StartTime.ToUniversalTime()).ToUnixTimeMilliseconds() / 1000.0);
        _resident.Set(self.WorkingSet64);
        _residentCpu.IncTo(self.TotalProcessorTime.TotalSeconds);
    }

    private void Fabric(IReadOnlyList<Protocol.Subsystems.ControllerSnapshot> controllers)
    {
        _connections.Set(_node.ConnectionCount);
        int shards = _node.IoMetrics.ShardCount;
        var counts = new (int Controllers, int Queues)[shards, 2];
        foreach (var c in controllers)
        {
            if ((uint)c.Shard >= (uint)shards) continue;
            int kind = c.IsDiscovery ? 1 : 0;
            counts[c.Shard, kind] = (counts[c.Shard, kind].Controllers + 1, counts[c.Shard, kind].Queues + 1 + c.IoQueues);
        }
        for (int shard = 0; shard < shards; shard++)
            for (int kind = 0; kind < 2; kind++)
            {
                string k = kind == 0 ? "io" : "discovery";
                _controllers.WithLabels(Int(shard), k).Set(counts[shard, kind].Controllers);
                _queues.WithLabels(Int(shard), k).Set(counts[shard, kind].Queues);
            }
    }

    /// <summary>Per-volume series; a deleted volume's series are removed (its slot is reset for the next volume).</summary>
    private void Devices()
    {
        var present = new HashSet<(string, string)>();
        foreach (DeviceHealth d in _node.Devices)
        {
            present.Add((d.Name, d.Kind));
            _deviceFailed.WithLabels(d.Name, d.Kind).Set(d.Failed ? 1 : 0);
            _deviceErrors.WithLabels(d.Name, d.Kind).IncTo(d.Errors);
        }
        foreach (var (name, kind) in _deviceLabels)
        {
            if (present.Contains((name, kind))) continue;
            _deviceFailed.RemoveLabelled(name, kind);
            _deviceErrors.RemoveLabelled(name, kind);
        }
        _deviceLabels = present;
    }

    private void Volumes()
    {
        var io = _node.IoMetrics;
        var present = new HashSet<(string, string)>();
        foreach (var v in _node.VolumeList())
        {
            string id = v.Id.ToString();
            present.Add((v.Name, id));
            _volumeSize.WithLabels(v.Name, id).Set(v.SizeBytes);
            _volumeAllocated.WithLabels(v.Name, id).Set(v.AllocatedBytes);
            if (v.Nsid == 0) continue;
            int slot = (int)v.Nsid - 1;
            for (int dir = 0; dir < 2; dir++)
            {
                long commands = 0, bytes = 0;
                for (int s = 0; s < io.ShardCount; s++)
                {
                    var c = io.Shard(s);
                    commands += Volatile.Read(ref c.VolumeCommands[slot * 2 + dir]);
                    bytes += Volatile.Read(ref c.VolumeBytes[slot * 2 + dir]);
                }
                _volumeCommands.WithLabels(v.Name, id, Directions[dir]).IncTo(commands);
                _volumeBytes.WithLabels(v.Name, id, Directions[dir]).IncTo(bytes);
            }
        }
        foreach (var (name, id) in _volumeLabels)
        {
            if (present.Contains((name, id))) continue;
            _volumeSize.RemoveLabelled(name, id);
            _volumeAllocated.RemoveLabelled(name, id);
            foreach (string dir in Directions)
            {
                _volumeCommands.RemoveLabelled(name, id, dir);
                _volumeBytes.RemoveLabelled(name, id, dir);
            }
        }
        _volumeLabels = present;
    }

    private void ShardIo(IoMetrics io)
    {
        for (int s = 0; s < io.ShardCount; s++)
        {
            var c = io.Shard(s);
            string shard = Int(s);
            for (int dir = 0; dir < 2; dir++)
            {
                _commands.WithLabels(shard, Directions[dir]).IncTo(Volatile.Read(ref c.Commands[dir]));
                _bytes.WithLabels(shard, Directions[dir]).IncTo(Volatile.Read(ref c.Bytes[dir]));
            }
            _commands.WithLabels(shard, "other").IncTo(Volatile.Read(ref c.OtherCommands));
            _inFlight.WithLabels(shard).Set(Volatile.Read(ref c.InFlight));
            for (int st = 0; st < c.Errors.Length; st++)
            {
                long n = Volatile.Read(ref c.Errors[st]);
                if (n != 0) _errors.WithLabels(shard, $"{st >> 8:x}/{st & 0xFF:x2}").IncTo(n);
            }
        }
    }

    /// <summary>Reactor loop utilisation (thread CPU / wall time) and per-shard allocation, from the shards themselves.</summary>
    private void Shards()
    {
        if (_node.Shards is not { } shards) return;
        for (int i = 0; i < shards.Count; i++)
        {
            var loop = shards[i].LoopTime;
            _shardCpu.WithLabels(Int(i)).IncTo(loop.Cpu.TotalSeconds);
            _shardLoop.WithLabels(Int(i)).IncTo(loop.Wall.TotalSeconds);
            _shardAllocated.WithLabels(Int(i)).IncTo(shards[i].AllocatedBytes);
            var counts = shards[i].LoopCounts;
            _shardIterations.WithLabels(Int(i)).IncTo(counts.Iterations);
            _shardWorkIterations.WithLabels(Int(i)).IncTo(counts.WorkIterations);
            _shardEnters.WithLabels(Int(i)).IncTo(counts.Enters);
            _shardSleeps.WithLabels(Int(i)).IncTo(counts.Sleeps);
        }
    }

    /// <summary>The executor's read and write latency histograms, per shard, from the shards' bucket counts.</summary>
    private static string LatencyHistograms(IoMetrics io)
    {
        var text = new PrometheusText();
        for (int dir = 0; dir < 2; dir++)
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
        return text.ToString();
    }

    private static string Int(int v) => v.ToString(CultureInfo.InvariantCulture);

    /// <summary>The GFTL's series: how the node started (and recovery progress), physical space, GC and write amplification.</summary>
    private sealed class GftlSeries
    {
        private readonly Gauge? _start, _percent, _rate, _eta;
        private readonly Gauge? _physical, _freeSegments, _writeAmplification;
        private readonly Counter? _cleaned, _repacked, _repacksDropped, _deviceReads;
        private readonly Counter? _hostWrites, _queued, _queueSeconds, _records, _depthSum, _roomWaits;
        private readonly Counter? _userBytes, _deviceBytes, _relocatedBytes, _segmentsOpened;

        public GftlSeries(IMetricFactory f, NodeHost node)
        {
            if (node.StoreRecovery is not null)
            {
                _start = f.CreateGauge("duroslight_gftl_start", "How the GFTL started: 1 for formatted, checkpoint (graceful) or scan (abrupt).", ["kind"]);
                _percent = f.CreateGauge("duroslight_gftl_recovery_percent", "Start-up recovery progress (100 when done).");
                _rate = f.CreateGauge("duroslight_gftl_recovery_mib_per_second", "Device scan rate during an abrupt start.");
                _eta = f.CreateGauge("duroslight_gftl_recovery_eta_seconds", "Estimated time left in the device scan.");
            }
            if (node.Gftl is null) return;
            _physical = f.CreateGauge("duroslight_gftl_physical_bytes", "Physical space of the GFTL: capacity, and live data per device.", ["type", "device"]);
            _freeSegments = f.CreateGauge("duroslight_gftl_free_segments", "Segments free for new writes.");
            _cleaned = f.CreateCounter("duroslight_gftl_gc_segments_cleaned_total", "Segments the collector has freed since start.");
            _writeAmplification = f.CreateGauge("duroslight_gftl_write_amplification", "Bytes written to the devices per byte of user data since start.");
            // The two terms of the ratio above, so that a phase's write amplification is a difference of counters.
            _userBytes = f.CreateCounter("duroslight_gftl_user_bytes_written_total", "Data bytes of completed host writes (the denominator of the write amplification).");
            _deviceBytes = f.CreateCounter("duroslight_gftl_device_bytes_written_total", "Bytes the GFTL wrote to its devices: records with their headers, trims, collector copies.");
            _relocatedBytes = f.CreateCounter("duroslight_gftl_gc_relocated_bytes_total", "Live data bytes the collector copied out of its victims.");
            _repacked = f.CreateCounter("duroslight_gftl_repacked_bytes_total", "Bytes rewritten contiguously because reads found their chunk fragmented.");
            _deviceReads = f.CreateCounter("duroslight_gftl_device_reads_total", "Device reads the GFTL's chunk reads issued: one per mapped run (fragments cost one each).");
            _repacksDropped = f.CreateCounter("duroslight_gftl_repacks_dropped_total", "Re-packs of fragmented chunks not done: every slot busy and the queue full.");
            _hostWrites = f.CreateCounter("duroslight_gftl_host_writes_total", "Host writes whose records the GFTL wrote.");
            _records = f.CreateCounter("duroslight_gftl_records_total", "Records the partitions wrote: one header and one device write each.");
            _depthSum = f.CreateCounter("duroslight_gftl_record_depth_total", "Records of the partition in flight as each record started, summed (/ records = mean depth).");
            _queued = f.CreateCounter("duroslight_gftl_writes_queued_total", "Host writes that waited for a record (slot, company or room) instead of going out at once.");
            _queueSeconds = f.CreateCounter("duroslight_gftl_write_queue_seconds_total", "Time host writes spent queued before their record was submitted.");
            _roomWaits = f.CreateCounter("duroslight_gftl_room_waits_total", "Times a partition found no free segment and waited for the collector.");
            _segmentsOpened = f.CreateCounter("duroslight_gftl_segments_opened_total", "Segments opened for writing: fresh (never written since start, above the device's high-water mark) or reused.", ["kind"]);
        }

        public void Collect(NodeHost node)
        {
            if (node.StoreRecovery is { } recovery && _start is not null)
            {
                foreach (GftlStartKind kind in Enum.GetValues<GftlStartKind>())
                    _start.WithLabels(kind.ToString().ToLowerInvariant()).Set(kind == recovery.Kind ? 1 : 0);
                _percent!.Set(recovery.Percent);
                _rate!.Set(recovery.MiBPerSecond);
                _eta!.Set(recovery.Eta.TotalSeconds);
            }
            if (node.Gftl is not { } store) return;
            _physical!.WithLabels("capacity", "").Set(store.PhysicalCapacityBytes);
            for (int d = 0; d < store.DeviceCount; d++) _physical.WithLabels("used", Int(d)).Set(store.DeviceUsedBytes(d));
            _freeSegments!.Set(store.FreeSegments);
            _cleaned!.IncTo(store.GcSegmentsCleaned);
            _writeAmplification!.Set(store.WriteAmplification);
            _userBytes!.IncTo(store.UserBytesWritten);
            _deviceBytes!.IncTo(store.DeviceBytesWritten);
            _relocatedBytes!.IncTo(store.GcRelocatedBytes);
            _repacked!.IncTo(store.RepackedBytes);
            _repacksDropped!.IncTo(store.RepacksDropped);
            _deviceReads!.IncTo(store.DeviceReads);
            GftlWriteStats writes = store.WriteStats;
            _hostWrites!.IncTo(writes.HostWrites);
            _records!.IncTo(writes.Records);
            _depthSum!.IncTo(writes.DepthSum);
            _queued!.IncTo(writes.Queued);
            _queueSeconds!.IncTo(writes.QueueSeconds);
            _roomWaits!.IncTo(writes.RoomWaits);
            _segmentsOpened!.WithLabels("fresh").IncTo(store.FreshSegmentsOpened);
            _segmentsOpened.WithLabels("reused").IncTo(store.ReusedSegmentsOpened);
        }
    }
}
