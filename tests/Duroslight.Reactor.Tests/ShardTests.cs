using System.Collections.Concurrent;
using Duroslight.Core;

namespace Duroslight.Reactor.Tests;

/// <summary>Shards alone: set-up, hand-off between threads, device I/O through the ring, shutdown.</summary>
public sealed class ShardTests
{
    [Fact]
    public async Task Posted_work_runs_on_its_shard_with_its_ring_installed()
    {
        using var group = Started(3);
        for (int i = 0; i < group.Count; i++)
        {
            var shard = group[i];
            var seen = await OnShard(shard, () => (Shard.Current, BlockIo.Current, BlockIo.IsFallback));
            Assert.Same(shard, seen.Item1);
            Assert.False(seen.Item3);
            Assert.IsNotType<SyncBlockIo>(Assert.IsType<HealthCheckedBlockIo>(seen.Item2).Inner); // the ring, under the health check
        }
        Assert.Null(Shard.Current);
        Assert.True(BlockIo.IsFallback);
        Assert.IsType<SyncBlockIo>(Assert.IsType<HealthCheckedBlockIo>(BlockIo.Current).Inner);
    }

    [Fact]
    public async Task Hand_off_keeps_each_producers_order_and_loses_nothing()
    {
        using var group = Started(2);
        const int producers = 4, perProducer = 50_000;
        var seen = new List<(int Producer, int Sequence)>(producers * perProducer);
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var threads = Enumerable.Range(0, producers).Select(p => new Thread(() =>
        {
            for (int s = 0; s < perProducer; s++)
                group[1].Post(new Record(seen, p, s, producers * perProducer, done));
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        await done.Task.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(producers * perProducer, seen.Count);
        var last = new int[producers];
        Array.Fill(last, -1);
        foreach (var (producer, sequence) in seen)
        {
            Assert.Equal(last[producer] + 1, sequence);
            last[producer] = sequence;
        }
    }

    [Fact]
    public async Task A_sleep_mode_shard_stops_spending_cpu_once_traffic_stops()
    {
        using var group = Started(1);
        var shard = group[0];
        // Back-to-back round trips with short gaps: the adaptive idle spin turns on.
        for (int i = 0; i < 2000; i++) await OnShard(shard, () => i);

        await Task.Delay(500); // far past the spin bound (100 us) and a few ticks, so the CPU sample is fresh
        TimeSpan before = shard.LoopTime.Cpu;
        await Task.Delay(2000);
        TimeSpan idle = shard.LoopTime.Cpu - before;

        // A shard that kept spinning would burn most of the 2 s it could get; a sleeping one wakes only for ticks.
        Assert.True(idle < TimeSpan.FromMilliseconds(200), $"idle shard used {idle.TotalMilliseconds:0} ms of CPU in 2 s");
    }

    [Fact]
    public async Task Work_posted_by_a_shard_to_itself_runs_after_the_current_work()
    {
        using var group = Started(1);
        var order = new List<string>();
        await OnShard(group[0], () =>
        {
            group[0].Post(new Action(() => order.Add("posted")));
            order.Add("current");
            return 0;
        });
        await OnShard(group[0], () => 0);
        Assert.Equal(["current", "posted"], order);
    }

    [Fact]
    public async Task Ring_reads_and_writes_a_file_opened_with_o_direct()
    {
        using var group = Started(1);
        string path = Path.Combine(Path.GetTempPath(), $"dsl-ring-{Guid.NewGuid():N}");
        try
        {
            using var file = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.ReadWrite);
            RandomAccess.SetLength(file, 1 << 20);
            Assert.Equal(0, BlockIo.EnableDirectIo(file));
            var source = new NativeBuffer(256 * 1024);
            var back = new NativeBuffer(256 * 1024);
            Random.Shared.NextBytes(source.GetSpan());
            var io = await OnShard(group[0], () => BlockIo.Current);

            int written = await OnShardAsync(group[0], () => io.WriteAsync(file, source.Memory, 128 * 1024));
            int synced = await OnShardAsync(group[0], () => io.SyncAsync(file));
            int read = await OnShardAsync(group[0], () => io.ReadAsync(file, back.Memory, 128 * 1024));
            using var readOnly = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            int refused = await OnShardAsync(group[0], () => io.WriteAsync(readOnly, source.Memory[..4096], 0));

            Assert.Equal(256 * 1024, written);
            Assert.Equal(0, synced);
            Assert.Equal(256 * 1024, read);
            int mismatch = source.GetSpan().CommonPrefixLength(back.GetSpan());
            Assert.Equal(source.Length, mismatch);
            Assert.Equal(-9, refused); // EBADF: errors come back as values
            // O_DIRECT (octal 040000) really is set on the descriptor the ring used.
            string flags = File.ReadAllLines($"/proc/self/fdinfo/{file.DangerousGetHandle()}")[1];
            Assert.NotEqual(0, Convert.ToInt32(flags.Split('\t')[1], 8) & 0x4000);
            source.Free();
            back.Free();
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public async Task Native_buffers_do_fixed_io_from_one_registration_and_give_their_slot_back_when_freed()
    {
        using var group = Started(1);
        string path = Path.Combine(Path.GetTempPath(), $"dsl-ring-{Guid.NewGuid():N}");
        try
        {
            using var file = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.ReadWrite);
            RandomAccess.SetLength(file, 1 << 20);
            Assert.Equal(0, BlockIo.EnableDirectIo(file));
            var ring = (RingBlockIo)group[0].DeviceIo;
            var source = new NativeBuffer(64 * 1024);
            var back = new NativeBuffer(64 * 1024);
            Random.Shared.NextBytes(source.GetSpan());

            // Slices of a registered buffer (the GFTL writes a record's first blocks of its buffer) go fixed too.
            int written = await OnShardAsync(group[0], () => ring.WriteAsync(file, source.Memory[4096..], 4096));
            int again = await OnShardAsync(group[0], () => ring.WriteAsync(file, source.Memory[..4096], 0));
            int read = await OnShardAsync(group[0], () => ring.ReadAsync(file, back.Memory, 0));

            Assert.Equal((60 * 1024, 4096, 64 * 1024), (written, again, read));
            Assert.True(source.GetSpan().SequenceEqual(back.GetSpan()));
            Assert.Same(ring, source.RegisteredWith);
            Assert.Same(ring, back.RegisteredWith);
            Assert.NotEqual(source.RegisteredSlot, back.RegisteredSlot);
            Assert.Equal(2, await OnShard(group[0], () => ring.RegisteredBuffers));

            // Freed off the shard: the slot is cleared by the shard's next I/O and serves the next buffer.
            int freedSlot = source.RegisteredSlot;
            source.Free();
            Assert.Null(source.RegisteredWith);
            var next = new NativeBuffer(4096);
            next.GetSpan().Fill(0x5A);
            Assert.Equal(4096, await OnShardAsync(group[0], () => ring.WriteAsync(file, next.Memory, 8192)));
            Assert.Equal(freedSlot, next.RegisteredSlot);
            Assert.Equal(2, await OnShard(group[0], () => ring.RegisteredBuffers));
            Assert.Equal(4096, await OnShardAsync(group[0], () => ring.ReadAsync(file, back.Memory[..4096], 8192)));
            Assert.True(back.GetSpan()[..4096].SequenceEqual(next.GetSpan()));
            next.Free();
            back.Free();
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public async Task Stopping_with_device_io_in_flight_neither_hangs_nor_crashes()
    {
        string path = Path.Combine(Path.GetTempPath(), $"dsl-ring-{Guid.NewGuid():N}");
        try
        {
            using var file = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None);
            RandomAccess.SetLength(file, 64 << 20);
            var buffer = new NativeBuffer(1 << 20);
            var group = Started(1);
            await OnShard(group[0], () =>
            {
                for (int i = 0; i < 64; i++) _ = BlockIo.Current.WriteAsync(file, buffer.Memory, (long)i << 20);
                return 0;
            });
            var stop = Task.Run(group.Dispose);
            Assert.True(await Task.WhenAny(stop, Task.Delay(TimeSpan.FromSeconds(20))) == stop, "shard did not stop");
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void A_cpu_outside_the_machine_is_refused_with_a_clear_message()
    {
        using var group = new ShardGroup([1000], PollMode.Sleep);
        var e = Assert.Throws<ReactorUnavailableException>(group.Start);
        Assert.Contains("CPU 1000", e.Message);
    }

    internal static ShardGroup Started(int shards, PollMode mode = PollMode.Sleep)
    {
        // Unpinned: tests share two cores with the rest of the suite.
        var group = new ShardGroup(Enumerable.Range(0, shards).ToArray(), mode, pin: false);
        group.Start();
        return group;
    }

    internal static Task<T> OnShard<T>(Shard shard, Func<T> body)
    {
        var result = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        shard.Post(new Action(() =>
        {
            try { result.SetResult(body()); }
            catch (Exception e) { result.SetException(e); }
        }));
        return result.Task;
    }

    /// <summary>Starts a ring operation on the shard and waits for its result off the shard.</summary>
    private static async Task<int> OnShardAsync(Shard shard, Func<ValueTask<int>> start)
    {
        var result = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        shard.Post(new Action(async () => result.SetResult(await start())));
        return await result.Task;
    }

    private sealed class Action(System.Action body) : IShardWork
    {
        public void Execute() => body();
    }

    private sealed class Record(List<(int, int)> seen, int producer, int sequence, int total, TaskCompletionSource done) : IShardWork
    {
        public void Execute()
        {
            seen.Add((producer, sequence));
            if (seen.Count == total) done.SetResult();
        }
    }
}
