using Duroslight.Core;
using Duroslight.Core.Interop;
using Duroslight.Storage.Volumes;
using Duroslight.Tests.Shared;
using FsCheck;
using FsCheck.Fluent;
using Microsoft.Win32.SafeHandles;
using Xunit;

namespace Duroslight.Storage.Tests.Devices;

/// <summary>
/// Device health: the "N errors within W ms" window (a property against a brute-force count), the counting under
/// <see cref="IBlockIo"/> (<see cref="HealthCheckedBlockIo"/>), stalls, and a failed device's volumes answering
/// <see cref="StorageResult.DeviceFailed"/> without touching it.
/// </summary>
public sealed class DeviceHealthTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void The_error_window_trips_exactly_when_the_last_N_errors_fit_in_the_window()
    {
        var cases = from threshold in Gen.Choose(1, 6)
                    from window in Gen.Choose(1, 50)
                    from gaps in Gen.Choose(0, 20).ListOf()
                    select (threshold, window, gaps);
        Check.One(Config.QuickThrowOnFailure.WithMaxTest(300), Prop.ForAll(Arb.From(cases), c =>
        {
            var (threshold, window, gaps) = c;
            var errors = new ErrorWindow(threshold, window);
            var times = new List<long>();
            long now = 0;
            foreach (int gap in gaps)
            {
                now += gap;
                times.Add(now);
                // Oracle: at least N errors so far, and the Nth most recent is within the window of this one.
                bool expected = times.Count >= threshold && now - times[^threshold] <= window;
                if (errors.Add(now) != expected) return false;
            }

            return true;
        }));
    }

    [Fact]
    public void A_threshold_of_zero_never_trips()
    {
        var errors = new ErrorWindow(0, 1000);
        for (int i = 0; i < 100; i++) Assert.False(errors.Add(i));
    }

    [Fact]
    public async Task Repeated_errors_fail_the_device_once_and_later_io_is_refused_without_reaching_it()
    {
        using SafeFileHandle file = OpenFile("dev");
        var inner = new ScriptedIo { Result = -LibC.EIO };
        var io = new HealthCheckedBlockIo(inner);
        DeviceHealth health = DeviceHealth.Register(file, "dev", "gftl", new DeviceHealthOptions { ErrorThreshold = 3, ErrorWindowMs = 600_000 });
        int failures = 0;
        DeviceHealth.DeviceFailed += d => failures += ReferenceEquals(d, health) ? 1 : 0;
        try
        {
            var buffer = new byte[4096];
            Assert.Equal(-LibC.EIO, await io.ReadAsync(file, buffer, 0));
            Assert.Equal(-LibC.EIO, await io.WriteAsync(file, buffer, 0));
            Assert.False(health.Failed);
            Assert.Equal(-LibC.EIO, await io.SyncAsync(file));
            Assert.True(health.Failed);
            Assert.Equal(3, health.Errors);
            Assert.Contains("3 I/O errors", health.Reason);
            Assert.Equal(1, failures);

            int calls = inner.Calls;
            Assert.Equal(-LibC.ENODEV, await io.ReadAsync(file, buffer, 0));
            Assert.Equal(-LibC.ENODEV, await io.WriteAsync(file, buffer, 0));
            Assert.Equal(calls, inner.Calls);
            Assert.False(health.Fail("again"));
            Assert.Equal(1, failures);
        }
        finally
        {
            DeviceHealth.Unregister(file);
        }
    }

    [Fact]
    public async Task Out_of_space_and_unregistered_files_are_not_counted()
    {
        using SafeFileHandle device = OpenFile("dev");
        using SafeFileHandle other = OpenFile("other");
        var inner = new ScriptedIo { Result = -LibC.ENOSPC };
        var io = new HealthCheckedBlockIo(inner);
        DeviceHealth health = DeviceHealth.Register(device, "dev", "gftl", new DeviceHealthOptions { ErrorThreshold = 1 });
        try
        {
            Assert.Equal(-LibC.ENOSPC, await io.WriteAsync(device, new byte[4096], 0));
            Assert.False(health.Failed);
            inner.Result = -LibC.EIO;
            Assert.Equal(-LibC.EIO, await io.WriteAsync(other, new byte[4096], 0));
            Assert.False(health.Failed);
            Assert.False(DeviceHealth.TryFind(other, out _));
            Assert.Equal(-LibC.EIO, await io.WriteAsync(device, new byte[4096], 0));
            Assert.True(health.Failed); // the negative check: the same error on the device does count
        }
        finally
        {
            DeviceHealth.Unregister(device);
        }
    }

    [Fact]
    public async Task An_operation_outstanding_past_the_stall_bound_fails_the_device_and_its_late_result_still_arrives()
    {
        using SafeFileHandle file = OpenFile("dev");
        var inner = new ScriptedIo();
        var io = new HealthCheckedBlockIo(inner);
        DeviceHealth health = DeviceHealth.Register(file, "dev", "sparse", new DeviceHealthOptions { StallTimeoutMs = 1_000 });
        try
        {
            long start = Environment.TickCount64;
            health.CheckStall(start + 10_000_000);
            Assert.False(health.Failed); // idle is not a stall

            var pending = new TaskCompletionSource<int>();
            inner.Pending = pending;
            ValueTask<int> read = io.ReadAsync(file, new byte[4096], 0);
            Assert.False(read.IsCompleted);
            Assert.Equal(1, health.InFlight);
            health.CheckStall(Environment.TickCount64 + 10_000_000);
            Assert.True(health.Failed);
            Assert.Contains("stall bound 1000 ms", health.Reason);

            pending.SetResult(4096);
            Assert.Equal(4096, await read);
            Assert.Equal(0, health.InFlight);
        }
        finally
        {
            DeviceHealth.Unregister(file);
        }
    }

    [Fact]
    public async Task A_sparse_volume_whose_file_failed_answers_device_failed_and_the_other_volume_keeps_serving()
    {
        using var store = new SparseFileVolumeStore(_dir.Path, 4096, directIo: false);
        var a = store.Create("a", 1 << 20);
        var b = store.Create("b", 1 << 20);
        IBlockVolume first = store.Open(a.Id), second = store.Open(b.Id);
        var buffer = new byte[4096];
        Assert.Equal(2, store.Devices.Count);

        DeviceHealth failed = Assert.Single(store.Devices, d => d.Name.Contains(a.Id.ToString(), StringComparison.Ordinal));
        failed.Fail("test");
        Assert.Equal(StorageResult.DeviceFailed, await first.ReadAsync(0, buffer));
        Assert.Equal(StorageResult.DeviceFailed, await first.WriteAsync(0, buffer));
        Assert.Equal(StorageResult.DeviceFailed, await first.FlushAsync());
        Assert.Equal(StorageResult.Ok, await second.WriteAsync(0, buffer));
        Assert.Equal(StorageResult.Ok, await second.ReadAsync(0, buffer));
    }

    private SafeFileHandle OpenFile(string name)
    {
        string path = Path.Combine(_dir.Path, name);
        SafeFileHandle handle = File.OpenHandle(path, FileMode.Create, FileAccess.ReadWrite);
        RandomAccess.SetLength(handle, 1 << 20);
        return handle;
    }

    /// <summary>Answers every operation with <see cref="Result"/>, or leaves it pending on <see cref="Pending"/>.</summary>
    private sealed class ScriptedIo : IBlockIo
    {
        public int Result { get; set; }
        public TaskCompletionSource<int>? Pending { get; set; }
        public int Calls { get; private set; }

        public ValueTask<int> ReadAsync(SafeFileHandle file, Memory<byte> buffer, long offset) => Next();

        public ValueTask<int> WriteAsync(SafeFileHandle file, ReadOnlyMemory<byte> buffer, long offset) => Next();

        public ValueTask<int> SyncAsync(SafeFileHandle file) => Next();

        private ValueTask<int> Next()
        {
            Calls++;
            return Pending is { } pending ? new(pending.Task) : new(Result);
        }
    }
}
