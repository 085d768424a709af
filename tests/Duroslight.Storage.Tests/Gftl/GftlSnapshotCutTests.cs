using System.Buffers.Binary;
using Duroslight.Storage.Gftl;
using Duroslight.Storage.Volumes;
using Xunit.Abstractions;

namespace Duroslight.Storage.Tests.Gftl;

/// <summary>
/// Snapshots taken while writers hammer the volume (no quiet moment is waited for) show one consistent cut. Each
/// writer thread owns every Writers-th block and writes unique stamps one write at a time; a global clock ticks
/// before each write starts and after it ends. A snapshot must hold, for each writer, exactly the blocks a prefix
/// of its writes leaves; that prefix must include every write that ended before Snapshot was called and no write
/// that started after it returned; and across writers, no write left out may have ended before a write taken in
/// started (a cut by sequence number, as a scan of the log resolves it). Then the snapshots must read the same
/// after a graceful restart and after a scan.
/// </summary>
public sealed class GftlSnapshotCutTests(ITestOutputHelper output) : IDisposable
{
    private const int Block = 4096;
    private const int Blocks = 256; // 8 chunks: every partition
    private const int Writers = 4;
    private const int Snapshots = 6;
    private readonly GftlScratch _scratch = new();
    private long _clock;

    public void Dispose() => _scratch.Dispose();

    private sealed record Write(int Block, long Stamp, long Start, long End);

    private sealed record Taken(Guid Id, long CalledAt, long ReturnedAt);

    [Fact]
    public async Task A_snapshot_under_writes_is_one_consistent_cut_and_survives_restarts()
    {
        GftlOptions options = _scratch.Options(devices: 2, deviceBytes: 24 * GftlScratch.MiB, shards: 4, segmentBytes: 256 * 1024, backgroundGc: true);
        var histories = new List<Write>[Writers];
        var snapshots = new List<Taken>();
        Guid id;
        using (var store = new GftlStore(options))
        {
            id = store.Create("v", Blocks * Block).Id;
            IBlockVolume volume = store.Open(id);
            using var stop = new CancellationTokenSource();
            var threads = new Thread[Writers];
            for (int w = 0; w < Writers; w++)
            {
                int writer = w;
                histories[w] = [];
                threads[w] = new Thread(() => WriteLoop(volume, writer, histories[writer], stop.Token));
                threads[w].Start();
            }

            var random = new Random(16);
            for (int s = 0; s < Snapshots; s++)
            {
                SpinUntil(() => Volatile.Read(ref _clock) > (s + 1) * 400);
                long called = Interlocked.Increment(ref _clock);
                long began = System.Diagnostics.Stopwatch.GetTimestamp();
                Guid snapshot = store.Snapshot(id, $"s{s}").Id;
                snapshots.Add(new Taken(snapshot, called, Interlocked.Increment(ref _clock)));
                output.WriteLine($"snapshot {s}: {System.Diagnostics.Stopwatch.GetElapsedTime(began).TotalMilliseconds:F1} ms");
                Thread.Sleep(random.Next(0, 5));
            }

            stop.Cancel();
            foreach (Thread thread in threads)
            {
                thread.Join();
            }

            byte[][] seen = await CheckAllAsync(store, snapshots, histories);
            store.Dispose();

            using (var graceful = new GftlStore(options))
            {
                Assert.Equal(GftlStartKind.Checkpoint, graceful.Recovery.Kind);
                await AssertSameAsync(graceful, snapshots, seen);
            }

            _scratch.TearCheckpoint();
            using var scanned = new GftlStore(options);
            Assert.Equal(GftlStartKind.Scan, scanned.Recovery.Kind);
            await AssertSameAsync(scanned, snapshots, seen);
        }
    }

    private void WriteLoop(IBlockVolume volume, int writer, List<Write> history, CancellationToken stop)
    {
        var random = new Random(writer);
        var data = new byte[Block];
        long stamp = 0;
        while (!stop.IsCancellationRequested)
        {
            int block = writer + (Writers * random.Next(Blocks / Writers));
            stamp++;
            Fill(data, writer, stamp);
            long start = Interlocked.Increment(ref _clock);
            StorageResult result = volume.WriteAsync((long)block * Block, data).AsTask().GetAwaiter().GetResult();
            Assert.Equal(StorageResult.Ok, result);
            history.Add(new Write(block, stamp, start, Interlocked.Increment(ref _clock)));
        }
    }

    private static async Task<byte[][]> CheckAllAsync(GftlStore store, List<Taken> snapshots, List<Write>[] histories)
    {
        var contents = new byte[snapshots.Count][];
        for (int s = 0; s < snapshots.Count; s++)
        {
            contents[s] = new byte[Blocks * Block];
            Assert.Equal(StorageResult.Ok, await store.Open(snapshots[s].Id).ReadAsync(0, contents[s]));
            CheckCut(snapshots[s], contents[s], histories, $"snapshot {s}");
        }

        return contents;
    }

    private static void CheckCut(Taken snapshot, byte[] content, List<Write>[] histories, string what)
    {
        var prefix = new int[Writers]; // writes taken in, per writer
        for (int w = 0; w < Writers; w++)
        {
            List<Write> history = histories[w];
            int last = -1;
            for (int b = w; b < Blocks; b += Writers)
            {
                long stamp = StampOf(content, b, w, what);
                last = Math.Max(last, (int)stamp - 1); // stamps are 1-based positions in the history
            }

            prefix[w] = last + 1;
            var expected = new long[Blocks];
            for (int i = 0; i < prefix[w]; i++)
            {
                expected[history[i].Block] = history[i].Stamp;
            }

            for (int b = w; b < Blocks; b += Writers)
            {
                Assert.True(StampOf(content, b, w, what) == expected[b],
                    $"{what}: block {b} holds stamp {StampOf(content, b, w, what)} of writer {w}, but the prefix up to stamp {prefix[w]} leaves {expected[b]}");
            }

            Assert.True(prefix[w] == history.Count || history[prefix[w]].End > snapshot.CalledAt,
                $"{what}: writer {w}'s write {prefix[w] + 1} ended before the snapshot was called, yet is missing");
            Assert.True(prefix[w] == 0 || history[prefix[w] - 1].Start < snapshot.ReturnedAt,
                $"{what}: writer {w}'s write {prefix[w]} started after the snapshot returned, yet is in it");
        }

        long latestStartIn = 0;
        for (int w = 0; w < Writers; w++)
        {
            latestStartIn = prefix[w] == 0 ? latestStartIn : Math.Max(latestStartIn, histories[w][prefix[w] - 1].Start);
        }

        for (int w = 0; w < Writers; w++)
        {
            Assert.True(prefix[w] == histories[w].Count || histories[w][prefix[w]].End > latestStartIn,
                $"{what}: writer {w}'s write {prefix[w] + 1} is left out though it ended before a write that is in started");
        }
    }

    private static async Task AssertSameAsync(GftlStore store, List<Taken> snapshots, byte[][] seen)
    {
        for (int s = 0; s < snapshots.Count; s++)
        {
            byte[] content = new byte[Blocks * Block];
            Assert.Equal(StorageResult.Ok, await store.Open(snapshots[s].Id).ReadAsync(0, content));
            Assert.True(content.AsSpan().SequenceEqual(seen[s]), $"snapshot {s} changed across the restart");
        }
    }

    private static long StampOf(byte[] content, int block, int writer, string what)
    {
        ReadOnlySpan<byte> span = content.AsSpan(block * Block, Block);
        long stamp = BinaryPrimitives.ReadInt64LittleEndian(span);
        if (stamp != 0)
        {
            var expected = new byte[Block];
            Fill(expected, writer, stamp);
            Assert.True(span.SequenceEqual(expected), $"{what}: block {block} is not a block writer {writer} wrote");
        }

        return stamp;
    }

    private static void Fill(byte[] data, int writer, long stamp)
    {
        data.AsSpan().Fill((byte)(stamp * 31 + writer));
        BinaryPrimitives.WriteInt64LittleEndian(data, stamp);
        BinaryPrimitives.WriteInt32LittleEndian(data.AsSpan(8), writer);
    }

    private static void SpinUntil(Func<bool> condition)
    {
        long deadline = Environment.TickCount64 + 60_000;
        while (!condition())
        {
            Assert.True(Environment.TickCount64 < deadline, "the writers made no progress in 60 s");
            Thread.Sleep(1);
        }
    }
}
