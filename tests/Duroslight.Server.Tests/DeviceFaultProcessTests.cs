using Duroslight.Host;
using Duroslight.Protocol.Nvme;
using Duroslight.Storage.Devices;
using Duroslight.Tests.Shared;
using Xunit;

namespace Duroslight.Server.Tests;

/// <summary>
/// The real process with <see cref="FaultRules.EnvironmentVariable"/> set: device errors injected under the store
/// become the NVMe status of the command that met them, and only of that command; repeated errors or a stall take the
/// device out of service (one log line, <c>ctl devices</c>, a metric, fast Namespace Not Ready); a command storage
/// holds past the command timeout is answered with Command Interrupted.
/// </summary>
public sealed class DeviceFaultProcessTests : IDisposable
{
    private const string Nqn = "nqn.2026-11.io.duroslight:default";
    private const string HostNqn = "nqn.2014-08.org.nvmexpress:uuid:cccccccc-0000-0000-0000-000000000015";
    private const int Block = 4096;

    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private string RulesFile => Path.Combine(_dir.Path, "faults");

    [Fact]
    public async Task A_device_read_error_fails_that_read_with_unrecovered_read_error_and_no_other_command()
    {
        using ServerProcess server = await StartAsync();
        Assert.Contains("TEST INSTRUMENTATION", server.Output);
        await using var host = await NvmeTcpController.ConnectAsync("127.0.0.1", server.IoPort, Nqn, HostNqn);
        for (int lba = 0; lba < 32; lba++) await host.WriteAsync(1, (ulong)lba, 1, Data(lba, 1));
        await host.FlushAsync(1);

        SetRules("read eio every=3");
        await Eventually.Until(async () => await ReadStatusAsync(host, 0) is { } failed && IsStatus(failed, NvmeStatus.UnrecoveredReadError),
            "a read meets the injected device error");

        int failures = 0, successes = 0;
        var buffer = new byte[Block];
        for (int round = 0; round < 3; round++)
        {
            for (int lba = 0; lba < 32; lba++)
            {
                if (await ReadStatusAsync(host, lba, buffer) is { } status)
                {
                    Assert.True(IsStatus(status, NvmeStatus.UnrecoveredReadError), $"lba {lba}: {status}");
                    failures++;
                }
                else
                {
                    Assert.Equal(Data(lba, 1), buffer);
                    successes++;
                }
            }
        }

        Assert.True(failures > 0 && successes > 0, $"{failures} failed, {successes} succeeded");
        await host.WriteAsync(1, 40, 1, Data(40, 1)); // writes go on while reads fail

        SetRules("");
        // While the rule holds, one read in every three fails: three successes in a row mean it is gone.
        await Eventually.Until(async () => await ReadStatusAsync(host, 0) is null && await ReadStatusAsync(host, 1) is null
            && await ReadStatusAsync(host, 2) is null, "reads succeed once the fault is gone");
        for (int lba = 0; lba < 32; lba++)
        {
            await host.ReadAsync(1, (ulong)lba, 1, buffer);
            Assert.Equal(Data(lba, 1), buffer);
        }
    }

    [Fact]
    public async Task A_device_write_error_fails_that_write_and_the_volume_keeps_old_or_new_data()
    {
        using ServerProcess server = await StartAsync();
        await using var host = await NvmeTcpController.ConnectAsync("127.0.0.1", server.IoPort, Nqn, HostNqn);
        const int Blocks = 64;
        await host.WriteAsync(1, 0, Blocks, Data(0, Blocks, version: 1));
        await host.FlushAsync(1);

        SetRules("write eio");
        NvmeStatus? failed = null;
        await Eventually.Until(async () =>
        {
            failed = await WriteStatusAsync(host, 0, Blocks, version: 2);
            return failed is not null;
        }, "a write meets the injected device error");
        Assert.True(IsStatus(failed!.Value, NvmeStatus.WriteFault), $"{failed}");

        SetRules("");
        var buffer = new byte[Blocks * Block];
        await Eventually.Until(async () => await WriteStatusAsync(host, Blocks, 1, version: 3) is null, "writes succeed once the fault is gone");
        await host.ReadAsync(1, 0, Blocks, buffer);
        for (int lba = 0; lba < Blocks; lba++)
        {
            byte[] block = buffer.AsSpan(lba * Block, Block).ToArray();
            Assert.True(block.AsSpan().SequenceEqual(Data(lba, 1, 1)) || block.AsSpan().SequenceEqual(Data(lba, 1, 2)),
                $"block {lba} holds neither its old nor its new data");
        }

        // The failed range can be written again, and what is written is what is read.
        await host.WriteAsync(1, 0, Blocks, Data(0, Blocks, version: 4));
        await host.ReadAsync(1, 0, Blocks, buffer);
        Assert.Equal(Data(0, Blocks, version: 4), buffer);
    }

    /// <summary>
    /// io_uring operations do not block the shard: a device write that never completes holds its own command only,
    /// and another volume on the same (single) shard goes on reading and writing. The sparse store keeps each volume
    /// in its own file, so the stall names one volume's file.
    /// </summary>
    [Fact]
    public async Task A_stalled_device_holds_its_own_command_and_another_volume_on_the_shard_keeps_going()
    {
        SetRules("");
        string data = Path.Combine(_dir.Path, "data");
        var environment = new Dictionary<string, string> { [FaultRules.EnvironmentVariable] = RulesFile };
        using ServerProcess server = await ServerProcess.StartAsync(environment, "--store", "sparse", "--data-dir", data,
            "--volume-size", "8M", "--cores", "0", "--command-timeout", "0", "--device-stall", "0");
        string first = Path.GetFileName(Assert.Single(Directory.GetFiles(Path.Combine(data, "volumes"), "*.vol")));
        var (code, _, stderr) = await CliAsync("ctl", "--socket", Path.Combine(data, "control.sock"), "volumes", "create", "second", "8M");
        Assert.True(code == 0, stderr);
        await using var stalledHost = await NvmeTcpController.ConnectAsync("127.0.0.1", server.IoPort, Nqn, HostNqn);
        await using var otherHost = await NvmeTcpController.ConnectAsync("127.0.0.1", server.IoPort, Nqn, HostNqn + "-2");

        SetRules($"write stall path={first}");
        await Eventually.Until(() => server.Output.Contains("1 device fault rules in force"), "the stall rule is in force");
        Task stalled = StartWrite(stalledHost, 1, 7).AsTask();

        var buffer = new byte[8 * Block];
        for (int round = 0; round < 8; round++)
        {
            await otherHost.WriteAsync(2, (ulong)(round * 8), 8, Data(round * 8, 8, version: 5)).AsTask().WaitAsync(Eventually.DefaultLimit);
            await otherHost.ReadAsync(2, (ulong)(round * 8), 8, buffer).AsTask().WaitAsync(Eventually.DefaultLimit);
            Assert.Equal(Data(round * 8, 8, version: 5), buffer);
        }

        Assert.False(stalled.IsCompleted, "the stalled write completed while its device was stalled");
        SetRules("");
        await stalled.WaitAsync(Eventually.DefaultLimit);
        await stalledHost.ReadAsync(1, 0, 8, buffer);
        Assert.Equal(Data(0, 8, version: 7), buffer);

        static ValueTask StartWrite(NvmeTcpController host, uint nsid, int version) => host.WriteAsync(nsid, 0, 8, Data(0, 8, version));
    }

    /// <summary>
    /// Short transfers are continued, so commands succeed with the right data; ENOSPC from the device answers Capacity
    /// Exceeded and, not being a device error, never takes the device out of service however often it comes.
    /// </summary>
    [Fact]
    public async Task Short_transfers_complete_and_device_enospc_answers_capacity_exceeded_without_failing_the_device()
    {
        using ServerProcess server = await StartAsync("--device-error-threshold", "2");
        string socket = Path.Combine(_dir.Path, "data", "control.sock");
        await using var host = await NvmeTcpController.ConnectAsync("127.0.0.1", server.IoPort, Nqn, HostNqn);
        const string InForce = "1 device fault rules in force";

        // Every other transfer is halved: the continuation of a short one then completes it (halving a 4 KiB rest
        // would transfer 0 bytes, which is a failed write, not a short one).
        SetRules("read,write short every=2");
        await Eventually.Until(() => Occurrences(server.Output, InForce) == 1, "the short-transfer rule is in force");
        var buffer = new byte[8 * Block];
        for (int i = 0; i < 8; i++)
        {
            await host.WriteAsync(1, (ulong)(i * 8), 8, Data(i * 8, 8, version: 3));
            await host.ReadAsync(1, (ulong)(i * 8), 8, buffer);
            Assert.Equal(Data(i * 8, 8, version: 3), buffer);
        }

        SetRules("write enospc");
        await Eventually.Until(() => Occurrences(server.Output, InForce) == 2, "the ENOSPC rule is in force");
        for (int i = 0; i < 4; i++)
        {
            var status = await WriteStatusAsync(host, 64 + i * 8, 8, version: 4);
            Assert.True(status is { } s && IsStatus(s, NvmeStatus.CapacityExceeded), $"{status}");
        }

        var (code, devices, stderr) = await CliAsync("ctl", "--socket", socket, "devices");
        Assert.True(code == 0, stderr);
        Assert.Contains("state=in_service", devices);
        Assert.Contains("errors=0", devices);

        SetRules("");
        await Eventually.Until(async () => await WriteStatusAsync(host, 64, 8, version: 5) is null, "writes succeed once the fault is gone");
        await host.ReadAsync(1, 64, 8, buffer);
        Assert.Equal(Data(64, 8, version: 5), buffer);
    }

    [Fact]
    public async Task Repeated_device_errors_take_the_device_out_of_service_visibly_and_its_volume_fails_fast()
    {
        int metricsPort = NodeFixture.FreePort();
        using ServerProcess server = await StartAsync("--device-error-threshold", "4", "--device-error-window", "600000",
            "--metrics", $"127.0.0.1:{metricsPort}");
        string socket = Path.Combine(_dir.Path, "data", "control.sock");
        await using var host = await NvmeTcpController.ConnectAsync("127.0.0.1", server.IoPort, Nqn, HostNqn);
        for (int lba = 0; lba < 8; lba++) await host.WriteAsync(1, (ulong)lba, 1, Data(lba, 1));
        await host.FlushAsync(1);
        var (code, devices, stderr) = await CliAsync("ctl", "--socket", socket, "devices");
        Assert.True(code == 0, stderr);
        Assert.Contains("state=in_service", devices);

        SetRules("read,write,sync eio");
        NvmeStatus? status = null;
        var seen = new List<NvmeStatus>();
        await Eventually.Until(async () =>
        {
            status = await ReadStatusAsync(host, seen.Count % 8);
            if (status is { } s) seen.Add(s);
            return status is { } last && IsStatus(last, NvmeStatus.NamespaceNotReady);
        }, "repeated device errors take the device out of service");
        Assert.True(status!.Value.Dnr, $"{status}");
        Assert.Contains(seen, s => IsStatus(s, NvmeStatus.UnrecoveredReadError)); // one command at a time first

        // One log line, a state in ctl and status, a metric.
        await Eventually.Until(() => server.Output.Contains("is out of service"), "the failure is logged");
        Assert.Single(server.Output.Split('\n'), line => line.Contains("is out of service", StringComparison.Ordinal));
        (code, devices, stderr) = await CliAsync("ctl", "--socket", socket, "devices");
        Assert.True(code == 0, stderr);
        Assert.Contains("state=failed", devices);
        Assert.Contains("kind=gftl", devices);
        Assert.Contains("I/O errors within", devices);
        var (statusCode, state, _) = await CliAsync("status", "--socket", socket);
        Assert.Equal(0, statusCode);
        Assert.Contains("devices_failed=1", state);
        using (var http = new HttpClient())
        {
            string metrics = await http.GetStringAsync($"http://127.0.0.1:{metricsPort}/metrics");
            Assert.Matches(@"duroslight_device_failed\{device=""[^""]*device0\.img"",kind=""gftl""\} 1", metrics);
            Assert.Matches(@"duroslight_device_errors_total\{device=""[^""]*device0\.img"",kind=""gftl""\} [4-9]", metrics);
        }

        // Fast: the device is not touched any more. A stall rule would hold any command that reached it, yet every
        // command fails at once with Namespace Not Ready; the device stays out once the faults are gone.
        SetRules("read,write,sync stall");
        await Eventually.Until(() => server.Output.Contains("1 device fault rules in force"), "the stall rule is in force");
        for (int i = 0; i < 8; i++)
        {
            var read = await ReadStatusAsync(host, i).AsTask().WaitAsync(Eventually.DefaultLimit);
            Assert.True(read is { } r && IsStatus(r, NvmeStatus.NamespaceNotReady), $"{read}");
            var write = await WriteStatusAsync(host, i, 1, version: 2).AsTask().WaitAsync(Eventually.DefaultLimit);
            Assert.True(write is { } w && IsStatus(w, NvmeStatus.NamespaceNotReady), $"{write}");
        }

        SetRules("");
        Assert.True(await ReadStatusAsync(host, 0) is { } after && IsStatus(after, NvmeStatus.NamespaceNotReady));
        Assert.False(server.HasExited);
    }

    /// <summary>
    /// A stalled device: the command is answered with Command Interrupted at the command timeout while the device
    /// I/O keeps its buffer, the same connection and another volume on the shard go on, the stall bound then takes
    /// the file out of service (fast failures), and releasing the stall later is dropped safely.
    /// </summary>
    [Fact]
    public async Task A_stalled_device_times_out_with_a_status_then_goes_out_of_service_and_its_release_is_harmless()
    {
        SetRules("");
        string data = Path.Combine(_dir.Path, "data");
        string socket = Path.Combine(data, "control.sock");
        var environment = new Dictionary<string, string> { [FaultRules.EnvironmentVariable] = RulesFile };
        using ServerProcess server = await ServerProcess.StartAsync(environment, "--store", "sparse", "--data-dir", data,
            "--volume-size", "8M", "--cores", "0", "--command-timeout", "1500", "--device-stall", "15000");
        string first = Path.GetFileName(Assert.Single(Directory.GetFiles(Path.Combine(data, "volumes"), "*.vol")));
        var (code, _, stderr) = await CliAsync("ctl", "--socket", socket, "volumes", "create", "second", "8M");
        Assert.True(code == 0, stderr);
        await using var stalledHost = await NvmeTcpController.ConnectAsync("127.0.0.1", server.IoPort, Nqn, HostNqn);
        await using var otherHost = await NvmeTcpController.ConnectAsync("127.0.0.1", server.IoPort, Nqn, HostNqn + "-2");
        await stalledHost.WriteAsync(1, 0, 8, Data(0, 8, version: 1));

        SetRules($"write stall path={first}");
        await Eventually.Until(() => server.Output.Contains("1 device fault rules in force"), "the stall rule is in force");
        var interrupted = await WriteStatusAsync(stalledHost, 0, 8, version: 2).AsTask().WaitAsync(Eventually.DefaultLimit);
        Assert.True(interrupted is { } s && IsStatus(s, NvmeStatus.CommandInterrupted) && !s.Dnr, $"{interrupted}");

        // The same connection goes on (reads are not stalled), and so does the other volume on the shard.
        var buffer = new byte[8 * Block];
        await stalledHost.ReadAsync(1, 0, 8, buffer).AsTask().WaitAsync(Eventually.DefaultLimit);
        Assert.Equal(Data(0, 8, version: 1), buffer);
        for (int round = 0; round < 4; round++)
        {
            await otherHost.WriteAsync(2, (ulong)(round * 8), 8, Data(round * 8, 8, version: 5)).AsTask().WaitAsync(Eventually.DefaultLimit);
            await otherHost.ReadAsync(2, (ulong)(round * 8), 8, buffer).AsTask().WaitAsync(Eventually.DefaultLimit);
            Assert.Equal(Data(round * 8, 8, version: 5), buffer);
        }

        // Past the stall bound the file is out of service; its volume fails at once, the other one does not.
        string devices = "";
        await Eventually.Until(async () =>
        {
            (_, devices, _) = await CliAsync("ctl", "--socket", socket, "devices");
            return devices.Contains("state=failed", StringComparison.Ordinal);
        }, "the stalled device is taken out of service", TimeSpan.FromSeconds(90));
        Assert.Contains("stall bound 15000 ms", devices);
        Assert.Contains("state=in_service", devices);
        var fast = await ReadStatusAsync(stalledHost, 0).AsTask().WaitAsync(Eventually.DefaultLimit);
        Assert.True(fast is { } f && IsStatus(f, NvmeStatus.NamespaceNotReady) && f.Dnr, $"{fast}");

        // The stalled write is released: its late completion is dropped, nothing crashes, the other volume goes on.
        int cleared = Occurrences(server.Output, "0 device fault rules in force");
        SetRules("");
        await Eventually.Until(() => Occurrences(server.Output, "0 device fault rules in force") > cleared, "the stall is released");
        await otherHost.WriteAsync(2, 64, 8, Data(64, 8, version: 6)).AsTask().WaitAsync(Eventually.DefaultLimit);
        await otherHost.ReadAsync(2, 64, 8, buffer).AsTask().WaitAsync(Eventually.DefaultLimit);
        Assert.Equal(Data(64, 8, version: 6), buffer);
        await stalledHost.ReadAsync(2, 0, 8, buffer).AsTask().WaitAsync(Eventually.DefaultLimit); // its connection too
        Assert.Equal(Data(0, 8, version: 5), buffer);
        Assert.False(server.HasExited);
        Assert.DoesNotContain("Exception", server.Output, StringComparison.Ordinal);
    }

    private static async Task<(int Code, string Stdout, string Stderr)> CliAsync(params string[] args)
    {
        var psi = new System.Diagnostics.ProcessStartInfo("dotnet", [Path.Combine(AppContext.BaseDirectory, "duroslight.dll"), .. args])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var p = System.Diagnostics.Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        return (p.ExitCode, await stdout, await stderr);
    }

    /// <summary>The GFTL on one device; errors never take it out of service unless <paramref name="extra"/> says so.</summary>
    private Task<ServerProcess> StartAsync(params string[] extra)
    {
        SetRules("");
        var environment = new Dictionary<string, string> { [FaultRules.EnvironmentVariable] = RulesFile };
        return ServerProcess.StartAsync(environment, ["--data-dir", Path.Combine(_dir.Path, "data"), "--volume-size", "8M",
            "--device", Path.Combine(_dir.Path, "device0.img") + ":64M", "--device-error-threshold", "0", .. extra]);
    }

    private void SetRules(string text)
    {
        File.WriteAllText(RulesFile + ".tmp", text);
        File.Move(RulesFile + ".tmp", RulesFile, overwrite: true);
    }

    private static int Occurrences(string text, string part) => text.Split(part).Length - 1;

    private static bool IsStatus(NvmeStatus seen, NvmeStatus expected) => seen.Sct == expected.Sct && seen.Sc == expected.Sc;

    private static async ValueTask<NvmeStatus?> ReadStatusAsync(NvmeTcpController host, int lba, byte[]? buffer = null)
    {
        try
        {
            await host.ReadAsync(1, (ulong)lba, 1, buffer ?? new byte[Block]);
            return null;
        }
        catch (NvmeException e)
        {
            return e.Status;
        }
    }

    private static async ValueTask<NvmeStatus?> WriteStatusAsync(NvmeTcpController host, int lba, int blocks, int version)
    {
        try
        {
            await host.WriteAsync(1, (ulong)lba, blocks, Data(lba, blocks, version));
            return null;
        }
        catch (NvmeException e)
        {
            return e.Status;
        }
    }

    /// <summary>Blocks that name their LBA and version in every 8 bytes, so garbage or a misplaced block shows.</summary>
    private static byte[] Data(int lba, int blocks, int version = 1)
    {
        byte[] data = new byte[blocks * Block];
        for (int b = 0; b < blocks; b++)
        {
            for (int i = 0; i < Block; i += 8)
            {
                BitConverter.TryWriteBytes(data.AsSpan(b * Block + i), lba + b);
                BitConverter.TryWriteBytes(data.AsSpan(b * Block + i + 4), version);
            }
        }

        return data;
    }
}
