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
    private const int DeviceShift = 40;
    private const long BlockMask = (1L << DeviceShift) - 1;

    public static long Location(int device, long deviceBlock) => ((long)device << DeviceShift) | deviceBlock;

    public static int DeviceOf(long location) => (int)(location >> DeviceShift);

    public static long DeviceBlockOf(long location) => location & BlockMask;

    public static long ByteOffsetOf(long location) => DeviceBlockOf(location) << BlockShift;
}
