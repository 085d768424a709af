using System.Buffers.Binary;
using Duroslight.Host;
using Duroslight.Protocol.Nvme;
using Duroslight.Storage.Devices;
using Duroslight.Tests.Shared;
using Xunit;

namespace Duroslight.Server.Tests;

/// <summary>
/// The real process over two GFTL devices under a write load from the host library (random sizes, overwrites,
/// deallocates), stopped by SIGKILL at a random moment (abrupt recovery), by SIGTERM (checkpoint), or by SIGTERM
/// with the checkpoint then torn. After every restart each block must hold its last acknowledged value, or, if a
/// command on it was in flight, that command's value: never anything else, never garbage. Seeded, so a failure
/// can be replayed.
/// </summary>
public sealed class GftlCrashTests : IDisposable
{
    private const string Nqn = "nqn.2026-11.io.duroslight:default";
    private const string HostNqn = "nqn.2014-08.org.nvmexpress:uuid:cccccccc-0000-0000-0000-000000000003";
    private const int Block = 4096;
    private const int Blocks = 2048; // an 8 MiB volume
    private const int Writers = 3;

    private readonly string _root = Directory.CreateTempSubdirectory("duroslight-crash-").FullName;
    private readonly int[] _committed = new int[Blocks];
    private readonly int?[] _inflight = new int?[Blocks];
    private readonly int[] _durable = new int[Blocks];
    private readonly HashSet<int>[] _since = [.. Enumerable.Range(0, Blocks).Select(_ => new HashSet<int>())];
    private bool _flushing;
    private int _flushes;
    private int _nextValue;
    private volatile bool _stopping;
    private int _acknowledged;
    private int _interrupted;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public async Task Acknowledged_writes_survive_sigkill_and_abrupt_recovery_over_20_cycles()
    {
        var random = new Random(20261121);
        for (int cycle = 0; cycle < 20; cycle++)
        {
            using ServerProcess server = await ServerProcess.StartAsync(Args());
            if (cycle > 0)
            {
                Assert.Contains("GFTL abrupt start", server.Output);
                Assert.Contains("MiB/s, ETA", server.Output); // scan progress is logged
            }

            await VerifyAsync(server, cycle);
            await RunLoadAsync(server, random.Next(), TimeSpan.FromMilliseconds(random.Next(200, 1500)), signal: 9);
        }

        using ServerProcess last = await ServerProcess.StartAsync(Args());
        await VerifyAsync(last, 20);
        Assert.True(_acknowledged > 20 * 20, $"only {_acknowledged} commands were acknowledged");
        Assert.True(_interrupted > 0, "no command was ever in flight at a kill");
    }

    [Fact]
    public async Task Acknowledged_writes_survive_graceful_stops_and_a_torn_checkpoint()
    {
        var random = new Random(5);
        string[] stops = ["graceful", "graceful", "torn", "graceful", "torn"];
        for (int cycle = 0; cycle <= stops.Length; cycle++)
        {
            using ServerProcess server = await ServerProcess.StartAsync(Args());
            if (cycle > 0)
            {
                Assert.Contains(stops[cycle - 1] == "graceful" ? "GFTL graceful start from the checkpoint" : "GFTL abrupt start: checkpoint", server.Output);
            }

            await VerifyAsync(server, cycle);
            if (cycle == stops.Length)
            {
                break;
            }

            await RunLoadAsync(server, random.Next(), TimeSpan.FromMilliseconds(random.Next(300, 1000)), signal: 15);
            if (stops[cycle] == "torn")
            {
                TearCheckpoint();
            }
        }
    }

    /// <summary>The catalog and checkpoint live on the devices: the process starts over a deleted data directory with everything there.</summary>
    [Fact]
    public async Task A_wiped_data_directory_with_the_same_devices_loses_nothing()
    {
        var random = new Random(11);
        int[] signals = [15, 9, 15];
        for (int cycle = 0; cycle <= signals.Length; cycle++)
        {
            using ServerProcess server = await ServerProcess.StartAsync(Args());
            if (cycle > 0)
            {
                Assert.Contains(signals[cycle - 1] == 15 ? "GFTL graceful start from the checkpoint" : "GFTL abrupt start", server.Output);
                Assert.DoesNotContain("GFTL formatted", server.Output);
            }

            await VerifyAsync(server, cycle);
            if (cycle == signals.Length)
            {
                break;
            }

            await RunLoadAsync(server, random.Next(), TimeSpan.FromMilliseconds(random.Next(300, 1000)), signal: signals[cycle]);
            Directory.Delete(Path.Combine(_root, "data"), recursive: true);
        }

        Assert.True(_acknowledged > 0);
    }

    /// <summary>
    /// Power loss through the real process: the process runs with its devices shadowed
    /// (<see cref="PowerLossShadowBlockIo"/>, a test-only switch), writers issue Flushes between their writes, and
    /// after SIGKILL every write not covered by a completed fdatasync is dropped and the last write submitted is
    /// torn at 512-byte granularity. After each restart, every block holds what the last completed Flush of its
    /// region left, or a value written after it; never anything else, never garbage.
    /// </summary>
    [Fact]
    public async Task Flushed_writes_survive_power_loss_through_the_process()
    {
        var environment = new Dictionary<string, string> { [PowerLossShadowBlockIo.EnvironmentVariable] = "1" };
        var random = new Random(20261201);
        _flushing = true;
        int torn = 0;
        for (int cycle = 0; cycle <= 8; cycle++)
        {
            using ServerProcess server = await ServerProcess.StartAsync(environment, Args());
            Assert.Contains("TEST INSTRUMENTATION", server.Output);
            if (cycle > 0)
            {
                Assert.Contains("GFTL abrupt start", server.Output);
            }

            await VerifyAsync(server, cycle);
            if (cycle == 8)
            {
                break;
            }

            await RunLoadAsync(server, random.Next(), TimeSpan.FromMilliseconds(random.Next(300, 1500)), signal: 9);
            torn += FailPower(random);
        }

        Assert.True(_flushes >= 8, $"only {_flushes} flushes completed in 8 cycles");
        Assert.True(torn > 0, "no torn write ever landed a sector");
    }

    [Fact]
    public async Task A_missing_or_wrong_device_is_refused_at_start()
    {
        using (ServerProcess server = await ServerProcess.StartAsync(Args()))
        {
            Assert.Equal(0, await server.StopAsync(15));
        }

        var (code, output) = await ServerProcess.RunToExitAsync([.. DataArgs(), "--device", Device(0)]);
        Assert.Equal(1, code);
        Assert.Contains("a device is missing or extra", output);

        (code, output) = await ServerProcess.RunToExitAsync([.. DataArgs(), "--device", Device(1), "--device", Device(0)]);
        Assert.Equal(1, code);
        Assert.Contains("devices reordered", output);

        using ServerProcess again = await ServerProcess.StartAsync(Args());
        Assert.Contains("GFTL graceful start", again.Output);
    }

    /// <summary>Puts what the last completed syncs made durable in place of each device and tears its last write back in; returns the sectors that landed.</summary>
    private int FailPower(Random random)
    {
        int landed = 0;
        for (int d = 0; d < 2; d++)
        {
            string device = Path.Combine(_root, $"device{d}.img");
            byte[] last = File.Exists(device + PowerLossShadowBlockIo.LastWriteSuffix) ? File.ReadAllBytes(device + PowerLossShadowBlockIo.LastWriteSuffix) : [];
            // The kill can cut the record short too: only the sectors it holds can land.
            int sectors = last.Length >= 12 ? Math.Min(BitConverter.ToInt32(last, 8), last.Length - 12) / 512 : 0;
            bool[] lands = [.. Enumerable.Range(0, sectors).Select(_ => random.Next(2) == 0)];
            landed += lands.Count(static l => l);

            // The killed process's io_uring may hold the device (and its flock) for a moment after the exit.
            long deadline = Environment.TickCount64 + 30_000;
            while (true)
            {
                try
                {
                    Restore(device, last, lands);
                    break;
                }
                catch (IOException) when (Environment.TickCount64 < deadline)
                {
                    Thread.Sleep(50);
                }
            }

            File.Delete(device + PowerLossShadowBlockIo.DurableSuffix);
            File.Delete(device + PowerLossShadowBlockIo.LastWriteSuffix);
        }

        return landed;
    }

    private static void Restore(string device, byte[] last, bool[] lands)
    {
        File.Copy(device + PowerLossShadowBlockIo.DurableSuffix, device, overwrite: true);
        if (lands.Length == 0)
        {
            return;
        }

        long offset = BitConverter.ToInt64(last, 0);
        using var file = new FileStream(device, FileMode.Open, FileAccess.Write);
        for (int sector = 0; sector < lands.Length; sector++)
        {
            if (lands[sector])
            {
                file.Position = offset + (sector * 512);
                file.Write(last, 12 + (sector * 512), 512);
            }
        }
    }

    private string[] DataArgs() => ["--data-dir", Path.Combine(_root, "data"), "--volume-size", "8M"];

    private string Device(int index) => Path.Combine(_root, $"device{index}.img") + ":64M";

    private string[] Args() => [.. DataArgs(), "--device", Device(0), "--device", Device(1)];

    private void TearCheckpoint() =>
        Duroslight.Tests.Shared.GftlDeviceImage.TearCheckpoint(Path.Combine(_root, "device0.img"), Path.Combine(_root, "device1.img"));

    /// <summary>Writers on disjoint regions (so each block has at most one command in flight) until the signal lands.</summary>
    private async Task RunLoadAsync(ServerProcess server, int seed, TimeSpan runFor, int signal)
    {
        await using var host = await NvmeTcpController.ConnectAsync("127.0.0.1", server.IoPort, Nqn, HostNqn);
        var writers = new Task[Writers];
        for (int w = 0; w < Writers; w++)
        {
            int region = w;
            writers[w] = Task.Run(() => WriteRegionAsync(host, region, seed + region));
        }

        int flushesBefore = Volatile.Read(ref _flushes);
        await Task.Delay(runFor);
        // A loaded machine can end a cycle's window before any Flush completed; the power-loss check of the next start
        // means something only after one, so the cycle runs on until one has (every cycle, not a total that load decides).
        if (_flushing) await Eventually.Until(() => Volatile.Read(ref _flushes) > flushesBefore, "a Flush completed in this cycle", TimeSpan.FromSeconds(120));
        _stopping = true;
        int exit = await server.StopAsync(signal);
        Assert.Equal(signal == 15 ? 0 : 137, exit);
        await Task.WhenAll(writers);
        _stopping = false;
    }

    private async Task WriteRegionAsync(NvmeTcpController host, int region, int seed)
    {
        var random = new Random(seed);
        int first = region * (Blocks / Writers), size = Blocks / Writers;
        while (true)
        {
            int count = random.Next(1, 49);
            int start = first + random.Next(size - count);
            int kind = random.Next(10);
            int value = kind < 7 ? Interlocked.Add(ref _nextValue, 64) : 0; // unique per block: v + i with i < 64
            for (int i = 0; i < count; i++)
            {
                _inflight[start + i] = value == 0 ? 0 : value + i;
                _since[start + i].Add(value == 0 ? 0 : value + i);
            }

            try
            {
                await (kind < 7 ? host.WriteAsync(1, (ulong)start, count, Data(start, count, value))
                    : kind < 9 ? new ValueTask(host.DeallocateAsync(1, [new LbaRange((ulong)start, (uint)count)]))
                    : host.WriteZeroesAsync(1, (ulong)start, count, deallocate: true));
            }
            catch (Exception) when (_stopping)
            {
                Interlocked.Increment(ref _interrupted);
                return; // the server went away: this command stays in flight (old or new both allowed)
            }

            Interlocked.Increment(ref _acknowledged);

            for (int i = 0; i < count; i++)
            {
                _committed[start + i] = _inflight[start + i]!.Value;
                _inflight[start + i] = null;
            }

            if (_flushing && random.Next(6) == 0)
            {
                try
                {
                    await host.FlushAsync(1);
                }
                catch (Exception) when (_stopping)
                {
                    return;
                }

                // Every write of this region was acknowledged before the Flush was sent: all of them are durable now.
                Interlocked.Increment(ref _flushes);
                for (int lba = first; lba < first + size; lba++)
                {
                    _durable[lba] = _committed[lba];
                    _since[lba].Clear();
                }
            }
        }
    }

    /// <summary>Every block is its acknowledged value or its in-flight one; what it is becomes the new acknowledged value.</summary>
    private async Task VerifyAsync(ServerProcess server, int cycle)
    {
        await using var host = await NvmeTcpController.ConnectAsync("127.0.0.1", server.IoPort, Nqn, HostNqn);
        var buffer = new byte[64 * Block];
        for (int start = 0; start < Blocks; start += 64)
        {
            await host.ReadAsync(1, (ulong)start, 64, buffer);
            for (int i = 0; i < 64; i++)
            {
                int lba = start + i;
                ReadOnlySpan<byte> block = buffer.AsSpan(i * Block, Block);
                int seen = BinaryPrimitives.ReadInt32LittleEndian(block);
                bool allowed = _flushing
                    ? seen == _durable[lba] || _since[lba].Contains(seen)
                    : seen == _committed[lba] || (_inflight[lba] is { } pending && seen == pending);
                Assert.True(allowed, $"cycle {cycle}: block {lba} holds value {seen}; acknowledged {_committed[lba]}, in flight {_inflight[lba]?.ToString() ?? "none"}, " +
                    $"flushed {_durable[lba]}, written since {string.Join(",", _since[lba])}");
                Assert.True(block.SequenceEqual(Data(lba, 1, seen)), $"cycle {cycle}: block {lba} (value {seen}) is garbage");
                _committed[lba] = seen;
                _durable[lba] = seen;
                _since[lba].Clear();
                _inflight[lba] = null;
            }
        }
    }

    /// <summary>Block lba of a write with first value v holds v + (lba - start) and its LBA, then a fill derived from both.</summary>
    private static byte[] Data(int start, int count, int value)
    {
        var data = new byte[count * Block];
        if (value == 0)
        {
            return data;
        }

        for (int i = 0; i < count; i++)
        {
            Span<byte> block = data.AsSpan(i * Block, Block);
            block.Fill((byte)((value + i) ^ (start + i)));
            BinaryPrimitives.WriteInt32LittleEndian(block, value + i);
            BinaryPrimitives.WriteInt64LittleEndian(block[4..], start + i);
        }

        return data;
    }
}
