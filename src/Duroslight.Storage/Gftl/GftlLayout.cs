namespace Duroslight.Storage.Gftl;

/// <summary>
/// Fixed geometry of the log. A device is [superblock | reserved to 1 MiB | segment 0 | segment 1 | ...]; the
/// map and every record count in 4 KiB blocks. A physical location packs (device, block on device) into a long.
/// </summary>
internal static class GftlLayout
{
    public const int BlockSize = 4096;
    public const int BlockShift = 12;
    public const int BlocksPerChunk = Chunking.ChunkMap.ChunkSize / BlockSize;
    public const long DataStart = 1 << 20;
    public const long Unmapped = -1;
    public const int DefaultSegmentBytes = 4 << 20;
    public const int MinAutoSegmentBytes = 1 << 20;

    /// <summary>Segments a device should have at least before the automatic size stays at its default.</summary>
    public const int MinAutoSegments = 1024;
    private const int DeviceShift = 40;
    private const long BlockMask = (1L << DeviceShift) - 1;

    public static long Location(int device, long deviceBlock) => ((long)device << DeviceShift) | deviceBlock;

    public static int DeviceOf(long location) => (int)(location >> DeviceShift);

    public static long DeviceBlockOf(long location) => location & BlockMask;

    /// <summary>
    /// The automatic segment size: the default, halved (down to 1 MiB) until the device holds
    /// <see cref="MinAutoSegments"/>. Free and open segments are space the collector cannot use, so a small device
    /// with few large segments collects at a higher utilization (more copies per host write).
    /// </summary>
    public static int SegmentBytesFor(long deviceBytes)
    {
        int bytes = DefaultSegmentBytes;
        while (bytes > MinAutoSegmentBytes && deviceBytes / bytes < MinAutoSegments)
        {
            bytes >>= 1;
        }

        return bytes;
    }

    public static long ByteOffsetOf(long location) => DeviceBlockOf(location) << BlockShift;
}
