using System.Diagnostics;
using System.Globalization;
using Duroslight.Storage.Gftl;
using Duroslight.Storage.Volumes;
using Duroslight.Core;

namespace Duroslight.Bench;

/// <summary>
/// Storage runner, not BenchmarkDotNet: the quantities are I/O rates and start-up times over files on disk, where
/// wall-clock medians of a few runs say more than nanosecond statistics. Prints a Markdown table per part:
/// GFTL against the plain sparse-file store, recovery time per GiB, and GC write amplification at 70% full.
/// </summary>
internal static class GftlBench
{
    private const int Block = 4096;
    private const int Chunk = 128 * 1024;
    private const long MiB = 1 << 20;
    private const int Runs = 5;
    private static readonly TimeSpan RunTime = TimeSpan.FromSeconds(3);

    public static async Task<int> RunAsync(string[] args)
    {
        bool throughputOnly = args.Contains("--throughput");
        bool amplificationOnly = args.Contains("--wa");
        bool qd1Only = args.Contains("--qd1");
        bool write128Only = args.Contains("--write128");
        bool fragmentedOnly = args.Contains("--fragmented");
        var amplification = new AmplificationRun(IntFlag(args, "--wa-qd") ?? 8, IntFlag(args, "--wa-segment-kib") * 1024);
        args = Array.FindAll(args, a => !a.StartsWith("--", StringComparison.Ordinal) && !int.TryParse(a, out _));
        string root = Path.Combine(args.Length > 0 ? args[0] : Path.GetTempPath(), $"duroslight-bench-{Environment.ProcessId}");
        Directory.CreateDirectory(root);
        try
        {
            if (qd1Only || write128Only)
            {
                await ThroughputAsync(root, qd1Only ? w => w.Depth == 1 : w => w.Write && w.Size == Chunk);
                return 0;
            }

            if (amplificationOnly)
            {
                await GcWriteAmplificationAsync(root, amplification);
                return 0;
            }

            if (fragmentedOnly)
            {
                await FragmentedReadAsync(root);
                return 0;
            }

            await ThroughputAsync(root);
            await FragmentedReadAsync(root);
            if (!throughputOnly)
            {
                await RecoveryAsync(root);
                await GcWriteAmplificationAsync(root, amplification);
            }

            return 0;
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    private static GftlOptions Gftl(string directory, long deviceBytes) => new()
    {
        DataDirectory = Path.Combine(directory, "data"),
        Devices = [new GftlDeviceSpec(Path.Combine(directory, "device0.img"), deviceBytes)],
        ShardCount = 2,
    };

    private readonly record struct Workload(string Name, int Size, bool Write, bool Random, int Depth);

    /// <summary>Part 1; <paramref name="only"/> keeps some of its workloads (<c>--qd1</c>, <c>--write128</c>).</summary>
    private static async Task ThroughputAsync(string root, Predicate<Workload>? only = null)
    {
        Console.WriteLine("| workload (QD) | sparse-file store (page cache) | GFTL, page cache | GFTL, O_DIRECT | GFTL page cache / sparse |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: |");
        Workload[] workloads =
        [
            new("4 KiB random write", Block, true, true, 16),
            new("4 KiB random write", Block, true, true, 1),
            new("4 KiB random read", Block, false, true, 16),
            new("128 KiB sequential write", Chunk, true, false, 4),
            new("128 KiB sequential read", Chunk, false, false, 4),
        ];
        foreach (Workload w in Array.FindAll(workloads, only ?? (static _ => true)))
        {
            double sparse = await MedianAsync(root, "sparse", w.Size, w.Write, w.Random, w.Depth);
            double buffered = await MedianAsync(root, "gftl-buffered", w.Size, w.Write, w.Random, w.Depth);
            double direct = await MedianAsync(root, "gftl", w.Size, w.Write, w.Random, w.Depth);
            Console.WriteLine(Invariant($"| {w.Name} ({w.Depth}) | {Rate(sparse, w.Size)} | {Rate(buffered, w.Size)} | {Rate(direct, w.Size)} | {buffered / sparse:F2} |"));
        }
    }

    /// <summary>Median ops/s of <see cref="Runs"/> runs, each on a fresh store with a 256 MiB prefilled region.</summary>
    private static async Task<double> MedianAsync(string root, string kind, int size, bool write, bool random, int depth)
    {
        var rates = new double[Runs];
        for (int run = 0; run < Runs; run++)
        {
            string directory = Path.Combine(root, $"{kind}-{run}");
            IVolumeStore store = kind switch
            {
                "gftl" => new GftlStore(Gftl(directory, 2048 * MiB)),
                "gftl-buffered" => new GftlStore(Gftl(directory, 2048 * MiB) with { DirectIo = false }),
                _ => new SparseFileVolumeStore(directory),
            };
            try
            {
                IBlockVolume volume = store.Open(store.Create("bench", 1024 * MiB).Id);
                await FillAsync(volume, 256 * MiB);
                var before = LoadCounts.Of(store);
                (rates[run], double cpuPerOp) = await LoadAsync(volume, 256 * MiB, size, write, random, depth, RunTime);
                Console.Error.WriteLine(Invariant($"  {kind} run {run}: {Rate(rates[run], size)}, process CPU {cpuPerOp:F1} us per I/O{LoadCounts.Of(store).Since(before)}"));
            }
            finally
            {
                store.Dispose();
                Directory.Delete(directory, recursive: true);
            }
        }

        Array.Sort(rates);
        return rates[Runs / 2];
    }

    private static async Task FillAsync(IBlockVolume volume, long bytes)
    {
        byte[] data = Data(Chunk, 1);
        for (long offset = 0; offset < bytes; offset += Chunk)
        {
            Check(await volume.WriteAsync(offset, data));
        }

        Check(await volume.FlushAsync());
    }

    /// <summary>
    /// <paramref name="depth"/> workers for <paramref name="duration"/>; returns completed operations per second and
    /// the process's CPU time per operation (what an I/O costs, whatever share of the CPUs a loaded machine gives).
    /// </summary>
    private static async Task<(double Rate, double CpuMicroseconds)> LoadAsync(IBlockVolume volume, long region, int size, bool write, bool random, int depth, TimeSpan duration)
    {
        long next = 0, done = 0;
        TimeSpan cpu = Environment.CpuUsage.TotalTime;
        var clock = Stopwatch.StartNew();
        var workers = new Task[depth];
        for (int w = 0; w < depth; w++)
        {
            int seed = w;
            workers[w] = Task.Run(async () =>
            {
                var rng = new Random(seed);
                byte[] buffer = Data(size, seed + 2);
                while (clock.Elapsed < duration)
                {
                    long offset = random ? rng.NextInt64(region / size) * size : Interlocked.Add(ref next, size) % region;
                    Check(write ? await volume.WriteAsync(offset, buffer) : await volume.ReadAsync(offset, buffer));
                    Interlocked.Increment(ref done);
                }
            });
        }

        await Task.WhenAll(workers);
        return (done / clock.Elapsed.TotalSeconds, (Environment.CpuUsage.TotalTime - cpu).TotalMicroseconds / done);
    }

    /// <summary>
    /// 128 KiB sequential reads of data laid down by 128 KiB writes, then overwritten at random in 4 KiB pieces (every
    /// chunk fragmented): three passes over the region, O_DIRECT. The first pass finds the fragments (and has the
    /// partitions re-pack what it reads); the later ones read what the re-packing left.
    /// </summary>
    private static async Task FragmentedReadAsync(string root)
    {
        const long region = 128 * MiB;
        string directory = Path.Combine(root, "fragmented");
        using var store = new GftlStore(Gftl(directory, 2048 * MiB));
        IBlockVolume volume = store.Open(store.Create("bench", 1024 * MiB).Id);
        await FillAsync(volume, region);
        var clock = Stopwatch.StartNew();
        (double sequential, _) = await LoadAsync(volume, region, Chunk, write: false, random: false, 4, TimeSpan.FromSeconds(2));
        long overwritten = region / Block / 2;
        await OverwriteAsync(volume, region, overwritten, 16);
        long repackedBefore = store.RepackedBytes;
        var passes = new double[3];
        double drain = 0;
        for (int pass = 0; pass < passes.Length; pass++)
        {
            clock.Restart();
            await ReadOnceAsync(volume, region, 4);
            passes[pass] = region / MiB / clock.Elapsed.TotalSeconds;
            clock.Restart();
            while (store.RepacksBusy > 0) // re-packs still queued or in flight finish before the next pass
            {
                await Task.Delay(10);
            }

            drain = pass == 0 ? clock.Elapsed.TotalSeconds : drain;
        }

        Console.WriteLine();
        Console.WriteLine(Invariant($"| 128 KiB sequential reads (QD 4, O_DIRECT) over {region / MiB} MiB | MiB/s |"));
        Console.WriteLine("| --- | ---: |");
        Console.WriteLine(Invariant($"| written by 128 KiB writes | {sequential * Chunk / MiB:F0} |"));
        Console.WriteLine(Invariant($"| after {overwritten} random 4 KiB overwrites, pass 1 (fragments read in parallel; re-packs) | {passes[0]:F0} |"));
        Console.WriteLine(Invariant($"| (re-packs left after pass 1 finished within {drain:F2} s) | |"));
        Console.WriteLine(Invariant($"| pass 2 | {passes[1]:F0} |"));
        Console.WriteLine(Invariant($"| pass 3 | {passes[2]:F0} |"));
        Console.WriteLine(Invariant($"| re-packed by the reads (written again) | {(store.RepackedBytes - repackedBefore) / MiB} MiB |"));
    }

    private static async Task OverwriteAsync(IBlockVolume volume, long region, long writes, int depth)
    {
        long issued = 0;
        var workers = new Task[depth];
        for (int w = 0; w < depth; w++)
        {
            int seed = w;
            workers[w] = Task.Run(async () =>
            {
                var rng = new Random(seed);
                byte[] buffer = Data(Block, seed + 100);
                while (Interlocked.Increment(ref issued) <= writes)
                {
                    Check(await volume.WriteAsync(rng.NextInt64(region / Block) * Block, buffer));
                }
            });
        }

        await Task.WhenAll(workers);
    }

    /// <summary>Reads the region once, front to back, with <paramref name="depth"/> workers taking 128 KiB in turn.</summary>
    private static async Task ReadOnceAsync(IBlockVolume volume, long region, int depth)
    {
        long next = -Chunk;
        var workers = new Task[depth];
        for (int w = 0; w < depth; w++)
        {
            workers[w] = Task.Run(async () =>
            {
                using var buffer = new NativeBuffer(Chunk);
                long offset;
                while ((offset = Interlocked.Add(ref next, Chunk)) < region)
                {
                    Check(await volume.ReadAsync(offset, buffer.Memory));
                }
            });
        }

        await Task.WhenAll(workers);
    }

    /// <summary>Start time after a graceful stop (checkpoint) and with the checkpoint removed (scan of the whole device).</summary>
    private static async Task RecoveryAsync(string root)
    {
        const long deviceBytes = 1024 * MiB, dataBytes = 512 * MiB;
        string directory = Path.Combine(root, "recovery");
        GftlOptions options = Gftl(directory, deviceBytes);
        using (var store = new GftlStore(options))
        {
            await FillAsync(store.Open(store.Create("v", dataBytes).Id), dataBytes);
        }

        var graceful = new double[3];
        var abrupt = new double[3];
        for (int run = 0; run < 3; run++)
        {
            graceful[run] = TimeStart(options, GftlStartKind.Checkpoint);
            Duroslight.Tests.Shared.GftlDeviceImage.TearCheckpoint(options.Devices[0].Path); // the next start must scan
            abrupt[run] = TimeStart(options, GftlStartKind.Scan);
        }

        Array.Sort(graceful);
        Array.Sort(abrupt);
        Console.WriteLine();
        Console.WriteLine("| start | median time | per GiB |");
        Console.WriteLine("| --- | ---: | ---: |");
        Console.WriteLine(Invariant($"| graceful (checkpoint of {dataBytes / MiB} MiB mapped) | {graceful[1]:F2} s | {graceful[1] * 1024 * MiB / dataBytes:F2} s per GiB of data |"));
        Console.WriteLine(Invariant($"| abrupt (scan of a {deviceBytes / MiB} MiB device, {dataBytes / MiB} MiB data) | {abrupt[1]:F2} s | {abrupt[1] * 1024 * MiB / deviceBytes:F2} s per GiB of device |"));
        Directory.Delete(directory, recursive: true);
    }

    private static double TimeStart(GftlOptions options, GftlStartKind expected)
    {
        var clock = Stopwatch.StartNew();
        using var store = new GftlStore(options);
        double seconds = clock.Elapsed.TotalSeconds;
        if (store.Recovery.Kind != expected)
        {
            throw new InvalidOperationException($"expected a {expected} start, got {store.Recovery.Kind}");
        }

        return seconds;
    }

    /// <summary>Counters of a GFTL store during a write load (stderr, one line per run): what a host write cost the device.</summary>
    private readonly record struct LoadCounts(long User, long Device, long Relocated, long Cleaned, GftlWriteStats Writes)
    {
        public static LoadCounts Of(IVolumeStore store) => store is GftlStore g
            ? new(g.UserBytesWritten, g.DeviceBytesWritten, g.GcRelocatedBytes, g.GcSegmentsCleaned, g.WriteStats)
            : default;

        public string Since(LoadCounts before)
        {
            long user = User - before.User;
            return user == 0 ? "" : Invariant($"; user {user / MiB} MiB, device {(Device - before.Device) / MiB} MiB, GC copied {(Relocated - before.Relocated) / MiB} MiB in {Cleaned - before.Cleaned} segments; {Writes - before.Writes}");
        }
    }

    /// <summary>Part 3's knobs: <c>--wa-qd N</c> (writers, default 8), <c>--wa-segment-kib N</c> (default: automatic).</summary>
    private sealed record AmplificationRun(int QueueDepth, int? SegmentBytes);

    private static int? IntFlag(string[] args, string name)
    {
        int at = Array.IndexOf(args, name);
        return at >= 0 && at + 1 < args.Length ? int.Parse(args[at + 1], CultureInfo.InvariantCulture) : null;
    }

    /// <summary>A volume holding 70% of the physical space, filled, then overwritten at random (4 KiB) twice over.</summary>
    private static async Task GcWriteAmplificationAsync(string root, AmplificationRun run)
    {
        Console.WriteLine();
        Console.WriteLine(Invariant($"| 70% full, 4 KiB random overwrite (2x the volume, QD {run.QueueDepth}) | value |"));
        Console.WriteLine("| --- | ---: |");
        string directory = Path.Combine(root, "gc");
        using var store = new GftlStore(Gftl(directory, 257 * MiB) with { ShardCount = 1, SegmentBytes = run.SegmentBytes });
        long volumeBytes = store.PhysicalCapacityBytes * 7 / 10 / Block * Block;
        IBlockVolume volume = store.Open(store.Create("v", volumeBytes).Id);
        await FillAsync(volume, volumeBytes / Chunk * Chunk);
        long user = store.UserBytesWritten, device = store.DeviceBytesWritten, relocated = store.GcRelocatedBytes, records = store.RecordsWritten;
        var clock = Stopwatch.StartNew();
        long writes = 2 * volumeBytes / Block;
        long issued = 0;
        var workers = new Task[run.QueueDepth];
        for (int w = 0; w < workers.Length; w++)
        {
            int seed = w;
            workers[w] = Task.Run(async () =>
            {
                var rng = new Random(seed);
                byte[] buffer = Data(Block, seed);
                while (Interlocked.Increment(ref issued) <= writes)
                {
                    Check(await volume.WriteAsync(rng.NextInt64(volumeBytes / Block) * Block, buffer));
                }
            });
        }

        await Task.WhenAll(workers);
        double seconds = clock.Elapsed.TotalSeconds;
        long userDelta = store.UserBytesWritten - user;
        Console.WriteLine(Invariant($"| physical capacity / volume size / segment | {store.PhysicalCapacityBytes / MiB} MiB / {volumeBytes / MiB} MiB / {store.SegmentBytes / 1024} KiB |"));
        Console.WriteLine(Invariant($"| write amplification (device bytes / user bytes, headers included) | {(double)(store.DeviceBytesWritten - device) / userDelta:F2} |"));
        Console.WriteLine(Invariant($"| GC copies per user byte | {(double)(store.GcRelocatedBytes - relocated) / userDelta:F2} |"));
        Console.WriteLine(Invariant($"| 4 KiB host writes per record | {(double)userDelta / Block / (store.RecordsWritten - records):F2} |"));
        Console.WriteLine(Invariant($"| segments cleaned / free at the end | {store.GcSegmentsCleaned} / {store.FreeSegments} |"));
        Console.WriteLine(Invariant($"| 4 KiB overwrite rate during GC | {writes / seconds:F0} IOPS |"));
    }

    private static void Check(StorageResult result)
    {
        if (result != StorageResult.Ok)
        {
            throw new InvalidOperationException($"storage returned {result}");
        }
    }

    private static string Rate(double opsPerSecond, int size) =>
        Invariant($"{opsPerSecond:F0} IOPS, {opsPerSecond * size / MiB:F0} MiB/s");

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private static byte[] Data(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }
}
