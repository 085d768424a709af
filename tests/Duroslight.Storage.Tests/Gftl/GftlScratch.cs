using Duroslight.Storage.Gftl;
using Duroslight.Tests.Shared;

namespace Duroslight.Storage.Tests.Gftl;

/// <summary>A temporary data directory and device files for GFTL stores; removed on Dispose.</summary>
internal sealed class GftlScratch : IDisposable
{
    public const long MiB = 1 << 20;

    public string Root { get; } = Directory.CreateTempSubdirectory("duroslight-gftl-").FullName;

    public string DataDirectory => Path.Combine(Root, "data");

    public string DevicePath(int index) => Path.Combine(Root, $"device{index}.img");

    public GftlOptions Options(int devices = 1, long deviceBytes = 64 * MiB, int shards = 4, int segmentBytes = (int)MiB, bool backgroundGc = false)
    {
        var specs = new GftlDeviceSpec[devices];
        for (int i = 0; i < devices; i++)
        {
            specs[i] = new GftlDeviceSpec(DevicePath(i), deviceBytes);
        }

        return new GftlOptions
        {
            DataDirectory = DataDirectory,
            Devices = specs,
            ShardCount = shards,
            SegmentBytes = segmentBytes,
            BackgroundGc = backgroundGc,
        };
    }

    public GftlStore Open(int devices = 1, long deviceBytes = 64 * MiB, int shards = 4, int segmentBytes = (int)MiB) =>
        new(Options(devices, deviceBytes, shards, segmentBytes));

    /// <summary>Tears the checkpoint a graceful stop left on the devices: the next start must scan, as after a crash.</summary>
    public void TearCheckpoint() => GftlDeviceImage.TearCheckpoint(Mirrors());

    /// <summary>Tears the newest metadata generation's catalog on both mirrors.</summary>
    public void TearNewestCatalogForTest() => GftlDeviceImage.TearNewestCatalog(Mirrors());

    private string[] Mirrors() => [.. Enumerable.Range(0, 2).Select(DevicePath).Where(File.Exists)];

    public void Dispose() => Directory.Delete(Root, recursive: true);
}
