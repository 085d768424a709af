using Duroslight.Host;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;
using Duroslight.Protocol.Tests.Engine;
using Xunit;
using Duroslight.Tests.Shared;

namespace Duroslight.Protocol.Tests.Host;

/// <summary>The socket initiator against the engine over loopback TCP.</summary>
public class NvmeTcpControllerTests
{
    private const string HostNqn = Fabric.HostNqn;
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);

    /// <summary>Long enough that a loaded machine's scheduling stalls cannot expire a controller mid-test.</summary>
    private const int DefaultKatoMs = 5000;

    static NvmeTcpControllerTests()
    {
        // The test host parks pool threads for good (VSTest's socket poll loop, the runner's blocking wait). On a 2-CPU
        // machine that is the pool's whole starting goal, so async work waits 0.5-1 s for thread injection: longer than
        // the short KATOs used here (diagnosed with gdb during such a stall). Raise the floor for this process.
        ThreadPool.GetMinThreads(out int workers, out int io);
        ThreadPool.SetMinThreads(Math.Max(workers, 16), io);
    }

    [Fact]
    public async Task Connect_identify_and_concurrent_io_over_several_queues_with_digests()
    {
        await using var target = new LoopbackTarget(new TargetOptions { MaxH2CData = 16384 });
        var volume = Guid.NewGuid();
        var ns = target.AddVolume(1, 8192, 512, volume);
        var options = new NvmeTcpControllerOptions { IoQueues = 3, QueueDepth = 16, HeaderDigest = true, DataDigest = true, MaxR2T = 1 };
        await using var ctrl = await NvmeTcpController.ConnectAsync("127.0.0.1", target.Port, target.Target.Options.SubsystemNqn, HostNqn, options)
            .WaitAsync(Limit);

        Assert.Equal(ctrl.Cntlid, ctrl.Identity.Cntlid);
        Assert.Equal(0x0001_0300u, ctrl.Version);
        Assert.Equal(3, ctrl.IoQueueCount);
        Assert.Equal(16, ctrl.IoQueueDepth);
        var nsd = Assert.Single(ctrl.Namespaces);
        Assert.Equal(volume, nsd.Nguid);
        Assert.Equal(8192UL, nsd.BlockCount);
        Assert.Equal(512, nsd.BlockSize);

        // 64 concurrent writes (in-capsule and R2T sizes) then reads, spread over the queues.
        var writes = Enumerable.Range(0, 64).Select(i => IoTests.Pattern((i % 4 == 0 ? 96 : 8) * 512, 100 + i)).ToArray();
        await Task.WhenAll(writes.Select((d, i) => ctrl.WriteAsync(1, (ulong)i * 128, d.Length / 512, d).AsTask())).WaitAsync(Limit);
        var reads = writes.Select(d => new byte[d.Length]).ToArray();
        await Task.WhenAll(reads.Select((b, i) => ctrl.ReadAsync(1, (ulong)i * 128, b.Length / 512, b).AsTask())).WaitAsync(Limit);
        for (int i = 0; i < writes.Length; i++) Assert.Equal(writes[i], reads[i]);
        Assert.Equal(writes[4], target.Storage.Volume(ns.VolumeId).AsSpan(4 * 128 * 512, writes[4].Length).ToArray());

        await ctrl.DisconnectAsync().WaitAsync(Limit);
        await Eventually.Until(() => target.Target.ListControllers().Count == 0, "every controller released");
    }

    [Fact]
    public async Task Flush_write_zeroes_deallocate_log_pages_and_features()
    {
        await using var target = new LoopbackTarget();
        var ns = target.AddVolume(1, 1024, 512);
        await using var ctrl = await Connect(target);

        await ctrl.WriteAsync(1, 0, 32, IoTests.Pattern(32 * 512, 1), fua: true);
        await ctrl.FlushAsync();
        await ctrl.WriteZeroesAsync(1, 0, 4);
        await ctrl.DeallocateAsync(1, [new LbaRange(8, 4), new LbaRange(20, 2)]);
        var back = new byte[32 * 512];
        await ctrl.ReadAsync(1, 0, 32, back);
        Assert.True(back.AsSpan(0, 4 * 512).IndexOfAnyExcept((byte)0) < 0);
        Assert.True(back.AsSpan(8 * 512, 4 * 512).IndexOfAnyExcept((byte)0) < 0);
        Assert.NotEqual(0, back.AsSpan(4 * 512, 4 * 512).IndexOfAnyExcept((byte)0) + 1);
        Assert.Equal(1, target.Storage.Flushes);
        _ = ns;

        var smart = await ctrl.GetLogPageAsync(LogPageId.SmartHealth, 512);
        Assert.Equal(100, smart[3]);
        Assert.Equal((uint)DefaultKatoMs, await ctrl.GetFeaturesAsync(FeatureId.KeepAliveTimer));
        await ctrl.KeepAliveAsync();
        Assert.Equal(1UL, await ctrl.GetPropertyAsync(PropertyOffset.Csts, eightBytes: false) & 1);
    }

    [Fact]
    public async Task Nvme_errors_surface_as_NvmeException_with_the_status()
    {
        await using var target = new LoopbackTarget();
        target.AddVolume(1, 64, 512);
        await using var ctrl = await Connect(target);
        var e = await Assert.ThrowsAsync<NvmeException>(async () => await ctrl.ReadAsync(1, 60, 8, new byte[8 * 512]));
        Assert.Equal(NvmeStatus.LbaOutOfRange, e.Status);
        e = await Assert.ThrowsAsync<NvmeException>(async () => await ctrl.WriteAsync(7, 0, 1, new byte[512]));
        Assert.Equal(NvmeStatus.InvalidNamespaceOrFormat, e.Status);
        var raw = await ctrl.ExecuteIoAsync(new NvmeCommand(0x7C, 1), default);
        Assert.Equal(NvmeStatus.InvalidOpcode, raw.Status);
        // The queues still work.
        await ctrl.ReadAsync(1, 0, 1, new byte[512]);
    }

    [Fact]
    public async Task Connect_failures_carry_the_connect_status()
    {
        await using var target = new LoopbackTarget();
        var bad = await Assert.ThrowsAsync<NvmeConnectException>(() =>
            NvmeTcpController.ConnectAsync("127.0.0.1", target.Port, target.Target.Options.SubsystemNqn + ":aux-9", HostNqn));
        Assert.Equal(NvmeStatus.ConnectInvalidParameters, bad.Status);
        Assert.True(bad.InvalidParameterInData);
        Assert.Equal(256, bad.InvalidParameterOffset);

        target.Target.SetHostAccess(target.Target.Subsystems[0], HostAccess.Only(["nqn.2014-08.org.nvmexpress:uuid:nobody"]));
        var acl = await Assert.ThrowsAsync<NvmeConnectException>(() =>
            NvmeTcpController.ConnectAsync("127.0.0.1", target.Port, target.Target.Options.SubsystemNqn, HostNqn));
        Assert.Equal(NvmeStatus.ConnectInvalidHost, acl.Status);
        await Eventually.Until(() => target.Target.ListControllers().Count == 0, "every controller released");
    }

    [Fact]
    public async Task Discover_reads_the_whole_log()
    {
        await using var target = new LoopbackTarget();
        target.AddVolume(1, 1024, 512); // the subsystem is listed to hosts that see a namespace in it
        target.Target.AddReferral(new Referral("10.9.8.7", "8009", 4));
        var log = await NvmeTcpController.DiscoverAsync("127.0.0.1", target.Port, HostNqn).WaitAsync(Limit);
        Assert.Equal(2, log.Entries.Count); // the default subsystem (aux ones are not advertised) and the referral
        Assert.Equal(target.Target.Options.SubsystemNqn, log.Entries[0].SubNqn);
        Assert.Equal(target.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), log.Entries[0].TrSvcId);
        Assert.Equal("127.0.0.1", log.Entries[0].TrAddr);
        Assert.Equal(DiscoverySubtype.Referral, log.Entries[^1].Subtype);
        Assert.Equal(target.Target.DiscoveryGeneration, log.GenerationCounter);
        await Eventually.Until(() => target.Target.ListControllers().Count == 0, "every controller released");
    }

    [Fact]
    public async Task Keep_alive_keeps_a_short_kato_controller_alive()
    {
        await using var target = new LoopbackTarget();
        target.AddVolume(1, 64, 512);
        // Keep Alives go out every KATO/2; waiting 2.5 KATOs shows they re-arm the target's timer, while a stall of
        // up to 1 s on a loaded machine (a late Keep Alive) still cannot let the controller expire.
        await using var ctrl = await Connect(target, new NvmeTcpControllerOptions { KeepAliveTimeoutMs = 2000 });
        await Task.Delay(5000);
        await ctrl.ReadAsync(1, 0, 1, new byte[512]);
        Assert.Single(target.Target.ListControllers());
    }

    [Fact]
    public async Task Losing_the_controller_fails_commands_with_a_transport_exception()
    {
        await using var target = new LoopbackTarget();
        target.AddVolume(1, 64, 512);
        await using var ctrl = await Connect(target);
        Assert.True(target.Target.Disconnect(0, ctrl.Cntlid));
        await Assert.ThrowsAsync<NvmeTransportException>(async () =>
        {
            for (int i = 0; i < 200; i++)
            {
                try
                {
                    await ctrl.ReadAsync(1, 0, 1, new byte[512]);
                }
                catch (NvmeException e) when (e.Status == NvmeStatus.CommandSequenceError)
                {
                    // The I/O queue saw the dead controller before its own poll closed it.
                }
                await Task.Delay(10);
            }
        }).WaitAsync(Limit);
    }

    [Fact]
    public async Task Async_events_reach_the_handler()
    {
        await using var target = new LoopbackTarget();
        target.AddVolume(1, 64, 512);
        var events = new TaskCompletionSource<uint>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var ctrl = await Connect(target, new NvmeTcpControllerOptions { AsyncEventHandler = dw0 => events.TrySetResult(dw0) });
        target.AddVolume(2, 64, 512);
        Assert.Equal(0x0004_0002u, await events.Task.WaitAsync(Limit));
        var changed = await ctrl.GetLogPageAsync(LogPageId.ChangedNamespaceList, 4096);
        Assert.Equal(2u, BitConverter.ToUInt32(changed, 0));
    }

    [Fact]
    public async Task Reads_complete_from_C2HData_SUCCESS_without_sq_flow_control()
    {
        await using var target = new LoopbackTarget();
        target.AddVolume(1, 256, 512);
        await using var ctrl = await Connect(target, new NvmeTcpControllerOptions { DisableSqFlowControl = true, QueueDepth = 8 });
        var data = IoTests.Pattern(64 * 512, 9);
        await ctrl.WriteAsync(1, 0, 64, data);
        var tasks = Enumerable.Range(0, 32).Select(async _ =>
        {
            var back = new byte[data.Length];
            await ctrl.ReadAsync(1, 0, 64, back);
            Assert.Equal(data, back);
        });
        await Task.WhenAll(tasks).WaitAsync(Limit);
    }

    private static async Task<NvmeTcpController> Connect(LoopbackTarget target, NvmeTcpControllerOptions? options = null) =>
        await NvmeTcpController.ConnectAsync("127.0.0.1", target.Port, target.Target.Options.SubsystemNqn, HostNqn,
            (options ?? new NvmeTcpControllerOptions()) with { KeepAliveTimeoutMs = options?.KeepAliveTimeoutMs ?? DefaultKatoMs }).WaitAsync(Limit);
}
