using Duroslight.Storage.Gftl;

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

    public string CheckpointPath => Path.Combine(DataDirectory, "gftl.checkpoint");

    public void Dispose() => Directory.Delete(Root, recursive: true);
}
