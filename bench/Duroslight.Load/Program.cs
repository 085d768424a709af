using System.Diagnostics;
using System.Globalization;
using Duroslight.Host;
using Duroslight.Load;

LoadOptions options;
try
{
    options = LoadOptions.Parse(args);
}
catch (Exception e) when (e is ArgumentException or FormatException or OverflowException or IndexOutOfRangeException)
{
    Console.Error.WriteLine($"duroslight-load: {e.Message}\n{LoadOptions.Usage}");
    return 2;
}
// The workers are async loops on the thread pool: keep enough threads ready that the pool's ramp-up is not measured.
ThreadPool.SetMinThreads(Environment.ProcessorCount * 4, Environment.ProcessorCount * 4);
return await new LoadRun(options).RunAsync();

namespace Duroslight.Load
{
    /// <summary>Connects, runs QD workers per queue for ramp + time seconds, and prints one result line.</summary>
    internal sealed class LoadRun(LoadOptions o)
    {
        private volatile bool _measuring;
        private volatile bool _stop;
        private long _seqCursor;
        private long _issued;
        private long _failures;
        private TimeSpan _generatorCpu;

        public async Task<int> RunAsync()
        {
            var controllers = new List<NvmeTcpController>();
            for (int c = 0; c < o.Connections; c++)
                controllers.Add(await NvmeTcpController.ConnectAsync(o.Host, o.Port, o.Nqn,
                    $"nqn.2014-08.org.nvmexpress:uuid:{Guid.NewGuid()}",
                    new NvmeTcpControllerOptions { IoQueues = 0, HostId = Guid.NewGuid() }));
            var ns = o.Nsid == 0 ? controllers[0].Namespaces[0]
                : controllers[0].Namespaces.FirstOrDefault(n => n.Nsid == o.Nsid) ?? throw new ArgumentException($"namespace {o.Nsid} is not active there");
            long size = o.SizeBytes > 0 ? Math.Min(o.SizeBytes, ns.SizeBytes) : ns.SizeBytes;
            long slots = size / o.BlockSize;
            int blocks = o.BlockSize / ns.BlockSize;

            var queues = new List<SyncQueue>();
            foreach (var c in controllers)
                for (ushort qid = 1; qid <= o.Queues; qid++) queues.Add(SyncQueue.Open(o, c, qid));
            var threads = queues.Select((q, i) => new Thread(() => RunQueue(q, i, ns.Nsid, blocks, slots)) { Name = $"queue-{i}" }).ToList();
            bool fixedWork = o.Ios > 0;
            if (!fixedWork)
            {
                threads.ForEach(t => t.Start());
                await Task.Delay(TimeSpan.FromSeconds(o.RampSeconds));
            }

            var before = await TargetCounters.ReadAsync(o.MetricsUrl);
            long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
            var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
            _measuring = true;
            var clock = Stopwatch.StartNew();
            if (fixedWork)
            {
                threads.ForEach(t => t.Start());
                await Task.Run(() => threads.ForEach(t => t.Join()));
            }
            else
            {
                await Task.Delay(TimeSpan.FromSeconds(o.Seconds));
            }

            _measuring = false;
            double elapsed = clock.Elapsed.TotalSeconds;
            long allocatedAfter = GC.GetTotalAllocatedBytes(precise: true);
            _generatorCpu = Process.GetCurrentProcess().TotalProcessorTime - cpuBefore;
            await Task.Delay(250); // the target samples its shard counters every 100 ms
            var after = await TargetCounters.ReadAsync(o.MetricsUrl);
            _stop = true;
            threads.ForEach(t => t.Join());

            var latency = new LatencyHistogram();
            long errors = 0;
            foreach (var q in queues)
            {
                latency.Add(q.Latency);
                errors += q.Errors;
                q.Dispose();
            }
            Report(latency, errors + _failures, elapsed, allocatedAfter - allocatedBefore, before, after);
            foreach (var c in controllers) await c.DisposeAsync();
            return errors + _failures == 0 ? 0 : 1;
        }

        private void RunQueue(SyncQueue queue, int index, uint nsid, int blocks, long slots)
        {
            var rng = new Random(index);
            var buffer = GC.AllocateUninitializedArray<byte>(o.BlockSize, pinned: true);
            rng.NextBytes(buffer);
            bool sequential = o.Pattern is Pattern.Read or Pattern.Write;
            try
            {
                queue.Run(this,
                    read =>
                    {
                        long slot = sequential ? NextSequential(slots) : rng.NextInt64(slots);
                        ulong slba = (ulong)(slot * blocks);
                        if (read) return NvmeCommands.Read(nsid, slba, blocks);
                        return o.TrimPercent > 0 && rng.Next(100) < o.TrimPercent
                            ? NvmeCommands.WriteZeroes(nsid, slba, blocks, deallocate: true)
                            : NvmeCommands.Write(nsid, slba, blocks);
                    },
                    () => o.Pattern switch
                    {
                        Pattern.Read or Pattern.RandRead => true,
                        Pattern.Write or Pattern.RandWrite => false,
                        _ => rng.Next(100) < o.ReadPercent,
                    },
                    buffer);
            }
            catch (IOException e)
            {
                Console.Error.WriteLine($"queue {index}: {e.Message}");
                Interlocked.Increment(ref _failures);
            }
        }

        public bool Measuring => _measuring;

        /// <summary>Asked to stop, or (fixed work) every I/O issued.</summary>
        public bool Stopping => _stop || (o.Ios > 0 && Interlocked.Read(ref _issued) >= o.Ios);

        /// <summary>Takes one I/O of the fixed work (always true without <c>--ios</c>).</summary>
        public bool TryIssue() => o.Ios == 0 || Interlocked.Increment(ref _issued) <= o.Ios;

        public long NextSequential(long slots) => (Interlocked.Increment(ref _seqCursor) - 1) % slots;

        private void Report(LatencyHistogram latency, long errors, double seconds, long generatorBytes, TargetCounters? before, TargetCounters? after)
        {
            long ios = latency.Count;
            double iops = ios / seconds;
            double mib = iops * o.BlockSize / (1 << 20);
            var line = string.Create(CultureInfo.InvariantCulture,
                $"{o.Pattern.ToString().ToLowerInvariant()}{(o.TrimPercent > 0 ? $"+trim{o.TrimPercent}" : "")} bs={o.BlockSize / 1024}k conns={o.Connections} queues={o.Queues} qd={o.QueueDepth}: " +
                $"iops={iops:F0} MiB/s={mib:F1} lat_us p50={latency.PercentileMicroseconds(50):F1} p99={latency.PercentileMicroseconds(99):F1} " +
                $"p99.9={latency.PercentileMicroseconds(99.9):F1} errors={errors} gen_alloc_B/io={(ios == 0 ? 0 : (double)generatorBytes / ios):F1} gen_cpu_us/io={(ios == 0 ? 0 : _generatorCpu.TotalMicroseconds / ios):F2}");
            if (before is not null && after is not null && ios > 0)
                line += string.Create(CultureInfo.InvariantCulture,
                    $" target_alloc_B/io={(double)(after.AllocatedBytes - before.AllocatedBytes) / ios:F3} target_util={after.UtilisationSince(before):P0}" +
                    $" target_cpu_us/io={(after.CpuSeconds - before.CpuSeconds) * 1e6 / ios:F2}");
            Console.WriteLine(line);
        }
    }

    /// <summary>The target's shard counters from its /metrics (allocation and loop time), summed over shards.</summary>
    internal sealed record TargetCounters(double AllocatedBytes, double CpuSeconds, double TotalSeconds)
    {
        public double UtilisationSince(TargetCounters before) =>
            TotalSeconds > before.TotalSeconds ? (CpuSeconds - before.CpuSeconds) / (TotalSeconds - before.TotalSeconds) : 0;

        public static async Task<TargetCounters?> ReadAsync(string? url)
        {
            if (url is null) return null;
            using var http = new HttpClient();
            string text = await http.GetStringAsync(url);
            return new TargetCounters(Sum(text, "duroslight_shard_allocated_bytes_total"),
                Sum(text, "duroslight_shard_cpu_seconds_total"), Sum(text, "duroslight_shard_loop_seconds_total"));
        }

        private static double Sum(string text, string metric)
        {
            double total = 0;
            foreach (var line in text.Split('\n'))
                if (line.StartsWith(metric + "{", StringComparison.Ordinal))
                    total += double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
            return total;
        }
    }
}
