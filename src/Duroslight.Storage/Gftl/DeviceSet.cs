using Duroslight.Storage.Devices;
using Duroslight.Storage.Volumes;

namespace Duroslight.Storage.Gftl;

/// <summary>
/// The devices of one store, in set order, with their superblocks checked (or written, on first start). Runs on
/// the control path at start, through the calling thread's <see cref="BlockIo"/> (the synchronous fallback there).
/// </summary>
internal sealed class DeviceSet : IDisposable
{
    private DeviceSet(GftlDevice[] devices, Superblock first)
    {
        Devices = devices;
        ClusterId = first.ClusterId;
        LogKey = first.LogKey;
        SegmentBytes = first.SegmentBytes;
        SegmentsPerDevice = first.SegmentCount;
        MetadataOffset = first.MetadataOffset;
        MetadataSlotBytes = first.MetadataSlotBytes;
        Metadata = new DeviceMetadata(devices, first.ClusterId, first.MetadataOffset, first.MetadataSlotBytes);
    }

    /// <summary>The catalog and checkpoint slots (on devices 0 and 1).</summary>
    public DeviceMetadata Metadata { get; }

    public GftlDevice[] Devices { get; }
    public Guid ClusterId { get; }

    /// <summary>Keys every record header's CRC (see <see cref="Superblock.LogKey"/>).</summary>
    public Guid LogKey { get; }
    public int SegmentBytes { get; }
    public int SegmentsPerDevice { get; }

    /// <summary>Where the two metadata slots start, after the last segment (the same offset on every device).</summary>
    public long MetadataOffset { get; }

    public long MetadataSlotBytes { get; }
    public int Count => Devices.Length;

    /// <summary>A device of the set failed: the log spans every device, so every volume is out of service.</summary>
    public bool OutOfService
    {
        get
        {
            foreach (GftlDevice device in Devices)
            {
                if (device.Health.Failed) return true;
            }

            return false;
        }
    }
    public bool AllDirect => Array.TrueForAll(Devices, static d => d.IsDirect);

    /// <summary>
    /// Opens the devices: formats them for a new cluster when every one is blank, else checks that every one
    /// carries the superblock of one cluster with its own index and the set's count. <paramref name="formatted"/>
    /// says which happened.
    /// </summary>
    public static DeviceSet OpenOrFormat(IReadOnlyList<GftlDeviceSpec> specs, int nodeIndex, int? segmentBytes, bool direct, out bool formatted)
    {
        GftlDevice[] devices = OpenAll(specs, direct);
        try
        {
            var found = new Superblock?[devices.Length];
            GftlDevice? firstFormatted = null;
            foreach (GftlDevice device in devices)
            {
                if (!ReadBlank(device, out found[device.Index], out string problem))
                {
                    firstFormatted ??= device;
                    if (found[device.Index] is null)
                    {
                        throw Refused(device, problem);
                    }
                }
            }

            formatted = firstFormatted is null || FormatWasInterrupted(devices, found);
            if (formatted)
            {
                return Format(devices, Guid.NewGuid(), nodeIndex, segmentBytes);
            }

            Superblock reference = found[firstFormatted!.Index]!;
            foreach (GftlDevice device in devices)
            {
                Superblock sb = found[device.Index] ?? throw Refused(device,
                    $"it carries no superblock, but device {firstFormatted.Index} belongs to cluster {reference.ClusterId} (a device is missing or was replaced by a blank one)");
                Check(device, sb, reference, devices.Length);
            }

            return new DeviceSet(devices, found[0]!);
        }
        catch
        {
            DisposeAll(devices);
            throw;
        }
    }

    private static DeviceSet Format(GftlDevice[] devices, Guid clusterId, int nodeIndex, int? chosenSegmentBytes)
    {
        long smallest = long.MaxValue;
        foreach (GftlDevice device in devices)
        {
            smallest = Math.Min(smallest, device.Bytes);
        }

        int segmentBytes = chosenSegmentBytes ?? GftlLayout.SegmentBytesFor(smallest);

        long slotBytes = DeviceMetadata.SlotBytesFor(smallest, devices.Length, segmentBytes);
        int segments = (int)Math.Min(int.MaxValue, (smallest - GftlLayout.DataStart - (2 * slotBytes)) / segmentBytes);
        if (segments < 4)
        {
            throw new VolumeStoreException(
                $"Devices are too small: {smallest} bytes holds fewer than 4 segments of {segmentBytes} bytes besides {2 * slotBytes} bytes of metadata.");
        }

        long metadataOffset = GftlLayout.DataStart + ((long)segments * segmentBytes);
        var superblocks = new Superblock[devices.Length];
        var logKey = Guid.NewGuid(); // random (a CSPRNG on Linux): a host cannot guess it
        foreach (GftlDevice device in devices)
        {
            superblocks[device.Index] = new Superblock(clusterId, nodeIndex, device.Index, devices.Length, device.Bytes, segmentBytes, segments, metadataOffset, slotBytes, logKey);
        }

        // Metadata generation 1 (no volumes) first, then the superblocks: a set with a superblock always has an
        // intact generation, and one whose newest generation is still 1 never finished its first start.
        var set = new DeviceSet(devices, superblocks[0]);
        set.Metadata.Save(GftlCatalog.Serialize(clusterId, []), [], 0);
        foreach (GftlDevice device in devices)
        {
            Write(device, superblocks[device.Index]);
        }

        return set;
    }

    /// <summary>
    /// True when the superblocks found belong to a format whose first start never completed (power lost during
    /// it): the newest metadata generation is still the empty one the format wrote, so no volume ever existed and
    /// the set is formatted again rather than refused.
    /// </summary>
    private static bool FormatWasInterrupted(GftlDevice[] devices, Superblock?[] found)
    {
        Superblock? mirror = devices.Length > 1 && found[1] is not null ? found[1] : found[0];
        if (mirror is null)
        {
            return false;
        }

        GftlDevice[] mirrors = [.. devices.Where(d => d.Index < 2 && found[d.Index]?.ClusterId == mirror.ClusterId)];
        var metadata = new DeviceMetadata(mirrors, mirror.ClusterId, mirror.MetadataOffset, mirror.MetadataSlotBytes);
        try
        {
            return metadata.Load(out _) is { Generation: 1 };
        }
        catch (VolumeStoreException)
        {
            return false; // an unknown metadata version: refused with its message later
        }
    }

    public void Dispose() => DisposeAll(Devices);

    private static void Check(GftlDevice device, Superblock found, Superblock reference, int count)
    {
        if (found.ClusterId != reference.ClusterId)
        {
            throw Refused(device, $"it belongs to cluster {found.ClusterId}, the other devices to cluster {reference.ClusterId} (wrong device)");
        }

        if (found.SegmentBytes != reference.SegmentBytes || found.SegmentCount != reference.SegmentCount ||
            found.MetadataOffset != reference.MetadataOffset || found.MetadataSlotBytes != reference.MetadataSlotBytes ||
            found.LogKey != reference.LogKey)
        {
            throw Refused(device, "its geometry differs from the other devices' (damaged superblock)");
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

    /// <summary>True when the device has no superblock at all; else <paramref name="superblock"/> is it, or null with the problem.</summary>
    private static bool ReadBlank(GftlDevice device, out Superblock? superblock, out string problem)
    {
        using var buffer = new NativeBuffer(GftlLayout.BlockSize);
        int read = BlockIo.Current.ReadAsync(device.Handle, buffer.Memory, 0).GetAwaiter().GetResult();
        if (read != GftlLayout.BlockSize)
        {
            superblock = null;
            problem = read >= 0 ? "it is smaller than one block" : $"its first block cannot be read (errno {-read})";
            return false;
        }

        superblock = Superblock.Decode(buffer.GetSpan(), out problem);
        return Superblock.IsBlank(buffer.GetSpan());
    }

    private static void Write(GftlDevice device, Superblock superblock)
    {
        using var buffer = new NativeBuffer(GftlLayout.BlockSize);
        superblock.Encode(buffer.GetSpan());
        int written = BlockIo.Current.WriteAsync(device.Handle, buffer.Memory, 0).GetAwaiter().GetResult();
        if (written != GftlLayout.BlockSize || BlockIo.Current.SyncAsync(device.Handle).GetAwaiter().GetResult() != 0)
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
