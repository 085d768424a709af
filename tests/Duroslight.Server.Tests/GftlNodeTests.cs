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

    [Fact]
    public async Task A_write_to_a_snapshot_answers_namespace_write_protected()
    {
        await using var node = Node();
        var source = node.Node.VolumeOps.List()[0];
        var snapshot = node.Node.VolumeOps.Snapshot(source.Name, "snap");
        var volume = node.Node.Gftl!.Open(snapshot.Id);

        StorageResult result = await volume.WriteAsync(0, new byte[4096]);

        Assert.Equal(StorageResult.WriteProtected, result);
        NvmeStatus status = StorageExecutor.ToStatus(result, StorageOp.Write);
        Assert.Equal(NvmeStatus.NamespaceWriteProtected, status);
        Assert.Equal(StatusCodeType.Generic, status.Sct);
        Assert.Equal(0x20, status.Sc);
        Assert.True(status.Dnr); // retrying cannot help
        Assert.Equal(StorageResult.WriteProtected, await volume.DeallocateAsync(0, 4096));
    }

    private NodeFixture Node() => new(s => s with
    {
        InMemory = false,
        DataDirectory = Path.Combine(_root, "data"),
        DefaultVolumeBytes = 16L << 20,
        Devices = [new GftlDeviceSpec(Path.Combine(_root, "d0.img"), 32L << 20), new GftlDeviceSpec(Path.Combine(_root, "d1.img"), 32L << 20)],
    });
}
