using Duroslight.Storage.Devices;
using Duroslight.Storage.Volumes;

namespace Duroslight.Storage.Gftl;

/// <summary>
/// The devices of one store, in set order, with their superblocks checked (or written, on first start).
/// Runs on the control path at start, so it uses the synchronous I/O fallback.
/// </summary>
internal sealed class DeviceSet : IDisposable
{
    private DeviceSet(GftlDevice[] devices, int segmentBytes, int segmentsPerDevice)
    {
        Devices = devices;
        SegmentBytes = segmentBytes;
        SegmentsPerDevice = segmentsPerDevice;
    }

    public GftlDevice[] Devices { get; }
    public int SegmentBytes { get; }
    public int SegmentsPerDevice { get; }
    public int Count => Devices.Length;
    public bool AllDirect => Array.TrueForAll(Devices, static d => d.IsDirect);

    /// <summary>Formats the devices for a new cluster; every one must be blank (no superblock).</summary>
    public static DeviceSet Format(IReadOnlyList<GftlDeviceSpec> specs, Guid clusterId, int nodeIndex, int segmentBytes, bool direct)
    {
        GftlDevice[] devices = OpenAll(specs, direct);
        try
        {
            long smallest = long.MaxValue;
            foreach (GftlDevice device in devices)
            {
                if (Read(device, out _) is { } existing)
                {
                    throw new VolumeStoreException(
                        $"Device {device.Index} '{device.Path}' already belongs to cluster {existing.ClusterId} (device {existing.DeviceIndex} of {existing.DeviceCount}), " +
                        "but the data directory has no GFTL catalog: refusing to format over it. Wipe its first 4 KiB to reuse it.");
                }

                smallest = Math.Min(smallest, device.Bytes);
            }

            int segments = (int)Math.Min(int.MaxValue, (smallest - GftlLayout.DataStart) / segmentBytes);
            if (segments < 4)
            {
                throw new VolumeStoreException($"Devices are too small: {smallest} bytes holds fewer than 4 segments of {segmentBytes} bytes.");
            }

            foreach (GftlDevice device in devices)
            {
                Write(device, new Superblock(clusterId, nodeIndex, device.Index, devices.Length, device.Bytes, segmentBytes, segments));
            }

            return new DeviceSet(devices, segmentBytes, segments);
        }
        catch
        {
            DisposeAll(devices);
            throw;
        }
    }

    /// <summary>Opens an existing set: every device must carry this cluster's superblock with its own index and count.</summary>
    public static DeviceSet Open(IReadOnlyList<GftlDeviceSpec> specs, Guid clusterId, bool direct)
    {
        GftlDevice[] devices = OpenAll(specs, direct);
        try
        {
            Superblock? first = null;
            foreach (GftlDevice device in devices)
            {
                Superblock found = Read(device, out string problem) ??
                    throw Refused(device, $"{problem}; expected device {device.Index} of cluster {clusterId}");
                Check(device, found, clusterId, devices.Length);
                first ??= found;
            }

            return new DeviceSet(devices, first!.SegmentBytes, first.SegmentCount);
        }
        catch
        {
            DisposeAll(devices);
            throw;
        }
    }

    public void Dispose() => DisposeAll(Devices);

    private static void Check(GftlDevice device, Superblock found, Guid clusterId, int count)
    {
        if (found.ClusterId != clusterId)
        {
            throw Refused(device, $"it belongs to cluster {found.ClusterId}, this store is cluster {clusterId} (wrong device)");
        }

        if (found.DeviceIndex != device.Index)
        {
            throw Refused(device, $"it is device {found.DeviceIndex} of the set but is listed as device {device.Index} (devices reordered)");
        }

        if (found.DeviceCount != count)
        {
            throw Refused(device, $"the set has {found.DeviceCount} devices but {count} are configured (a device is missing or extra)");
        }
    }

    private static VolumeStoreException Refused(GftlDevice device, string why) =>
        new($"GFTL refuses device {device.Index} '{device.Path}': {why}.");

    private static GftlDevice[] OpenAll(IReadOnlyList<GftlDeviceSpec> specs, bool direct)
    {
        if (specs.Count == 0)
        {
            throw new VolumeStoreException("GFTL needs at least one device.");
        }

        var devices = new List<GftlDevice>(specs.Count);
        try
        {
            for (int i = 0; i < specs.Count; i++)
            {
                devices.Add(GftlDevice.Open(i, specs[i], direct));
            }

            return [.. devices];
        }
        catch
        {
            DisposeAll(devices);
            throw;
        }
    }

    private static Superblock? Read(GftlDevice device, out string problem)
    {
        using var buffer = new NativeBuffer(GftlLayout.BlockSize);
        int read = SyncBlockIo.Instance.ReadAsync(device.Handle, buffer.Memory, 0).GetAwaiter().GetResult();
        if (read != GftlLayout.BlockSize)
        {
            problem = "its first block cannot be read";
            return null;
        }

        return Superblock.Decode(buffer.GetSpan(), out problem);
    }

    private static void Write(GftlDevice device, Superblock superblock)
    {
        using var buffer = new NativeBuffer(GftlLayout.BlockSize);
        superblock.Encode(buffer.GetSpan());
        int written = SyncBlockIo.Instance.WriteAsync(device.Handle, buffer.Memory, 0).GetAwaiter().GetResult();
        if (written != GftlLayout.BlockSize || SyncBlockIo.Instance.SyncAsync(device.Handle).GetAwaiter().GetResult() != 0)
        {
            throw new VolumeStoreException($"Cannot write the superblock of device {device.Index} '{device.Path}'.");
        }
    }

    private static void DisposeAll(IEnumerable<GftlDevice> devices)
    {
        foreach (GftlDevice device in devices)
        {
            device.Dispose();
        }
    }
}
