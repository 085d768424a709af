using Duroslight.Host;
using Duroslight.Protocol.Engine;
using Duroslight.Protocol.Nvme;
using Duroslight.Server.Execution;
using Duroslight.Storage.Gftl;
using Duroslight.Storage.Volumes;
using Xunit;

namespace Duroslight.Server.Tests;

/// <summary>A node on the GFTL in this process: start kinds and the metrics that report them.</summary>
public sealed class GftlNodeTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("duroslight-gftl-node-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public async Task Metrics_report_the_start_kind_space_and_recovery()
    {
        await using (var first = Node())
        {
            Assert.Equal(GftlStartKind.Formatted, first.Node.StoreRecovery!.Kind);
            string text = await first.ScrapeAsync();
            Assert.Contains("duroslight_gftl_start{kind=\"formatted\"} 1", text);
            Assert.Contains("duroslight_gftl_physical_bytes{type=\"used\",device=\"1\"}", text);
        }

        await using var second = Node();
        Assert.Equal(GftlStartKind.Checkpoint, second.Node.StoreRecovery!.Kind);
        string after = await second.ScrapeAsync();
        Assert.Contains("duroslight_gftl_start{kind=\"checkpoint\"} 1", after);
        Assert.Contains("duroslight_gftl_recovery_percent 100", after);
    }

    /// <summary>
    /// Through the wire: a snapshot is exposed as a namespace once the node restarts, and a host's write or
    /// deallocate to it completes with Namespace is Write Protected (SCT 0, SC 20h), not a media error.
    /// </summary>
    [Fact]
    public async Task A_write_to_a_snapshot_answers_namespace_write_protected()
    {
        await using (var first = Node())
        {
            var source = first.Node.VolumeOps.List()[0];
            first.Node.VolumeOps.Snapshot(source.Name, "snap");
            Assert.Equal(StorageResult.WriteProtected, await first.Node.Gftl!.Open(first.Node.VolumeOps.List().Single(v => v.Name == "snap").Id).WriteAsync(0, new byte[4096]));
        }

        await using var node = Node();
        uint nsid = node.Node.VolumeOps.List().Single(v => v.Name == "snap").Nsid;
        Assert.NotEqual(0u, nsid);
        await using var host = await NvmeTcpController.ConnectAsync("127.0.0.1", node.IoPort, "nqn.2026-11.io.duroslight:default", "nqn.2014-08.org.nvmexpress:uuid:dddddddd-0000-0000-0000-000000000004");
        var e = await Assert.ThrowsAsync<NvmeException>(() => host.WriteAsync(nsid, 0, 1, new byte[4096]).AsTask());
        Assert.Equal(NvmeStatus.NamespaceWriteProtected, e.Status);
        Assert.Equal(StatusCodeType.Generic, e.Status.Sct);
        Assert.Equal(0x20, e.Status.Sc);
        e = await Assert.ThrowsAsync<NvmeException>(() => host.DeallocateAsync(nsid, [new LbaRange(0, 8)]));
        Assert.Equal(NvmeStatus.NamespaceWriteProtected, e.Status);
        Assert.Equal(NvmeStatus.NamespaceWriteProtected, StorageStatus.ToNvme(StorageResult.WriteProtected, StorageOp.Write));
        await host.ReadAsync(nsid, 0, 1, new byte[4096]); // reads still work
    }

    /// <summary>
    /// <c>--cores 1 --poll busy</c>: host writes over the wire overwrite the volume about three times over a device
    /// with little spare room, so the collector must clean; it does so on the one shard (no slice off it) while every
    /// write completes, and the data reads back.
    /// </summary>
    [Fact]
    public async Task With_one_busy_polling_shard_the_collector_cleans_on_the_shard_while_writes_complete()
    {
        const int Blocks = 8;
        await using var node = new NodeFixture(s => s with
        {
            InMemory = false,
            DataDirectory = Path.Combine(_root, "data"),
            DefaultVolumeBytes = 16L << 20,
            Cores = [0],
            Poll = Reactor.PollMode.Busy,
            Devices = [new GftlDeviceSpec(Path.Combine(_root, "d0.img"), 32L << 20)],
        });
        var volume = node.Node.VolumeOps.List()[0];
        byte[] model = new byte[16 << 20];
        await using var host = await NvmeTcpController.ConnectAsync("127.0.0.1", node.IoPort, "nqn.2026-11.io.duroslight:default", "nqn.2014-08.org.nvmexpress:uuid:dddddddd-0000-0000-0000-000000000005");
        var random = new Random(16);
        byte[] data = new byte[Blocks * 4096];
        for (int i = 0; i < 1600; i++)
        {
            int block = random.Next((model.Length / 4096) - Blocks);
            random.NextBytes(data);
            data.CopyTo(model, block * 4096L);
            await host.WriteAsync(volume.Nsid, (ulong)block, Blocks, data);
        }

        GftlStore store = node.Node.Gftl!;
        Assert.True(store.GcSegmentsCleaned > 0, "the collector freed no segment");
        Assert.True(store.GcSlices > 0);
        Assert.Equal(0, store.GcSlicesOffShard);
        byte[] back = new byte[128 << 10];
        for (int offset = 0; offset < model.Length; offset += back.Length)
        {
            await host.ReadAsync(volume.Nsid, (ulong)(offset / 4096), back.Length / 4096, back);
            Assert.True(model.AsSpan(offset, back.Length).SequenceEqual(back), $"data differs at {offset}");
        }
    }

    private NodeFixture Node() => new(s => s with
    {
        InMemory = false,
        DataDirectory = Path.Combine(_root, "data"),
        DefaultVolumeBytes = 16L << 20,
        Devices = [new GftlDeviceSpec(Path.Combine(_root, "d0.img"), 32L << 20), new GftlDeviceSpec(Path.Combine(_root, "d1.img"), 32L << 20)],
    });
}
