using System.Buffers.Binary;

namespace Duroslight.Fuzz;

/// <summary>
/// Seeds for <see cref="GftlImage"/>: the pristine start (checkpoint loaded, or torn so the log is scanned) and one
/// targeted damage per structure, each with the checksums resealed so the parser behind them is what runs.
/// </summary>
public static class GftlSeeds
{
    private const byte Records = 1, Extents = 2, Slots = 4, Superblocks = 8, Scan = 16;

    public static IEnumerable<(string Name, byte[] Input)> All()
    {
        yield return ("gftl-checkpoint-load", [0]);
        yield return ("gftl-scan", [Scan]);
        yield return ("gftl-record-huge-data-blocks", [Scan | Records, .. Patch("record", 0, 12, Int32(int.MaxValue))]);
        yield return ("gftl-record-extent-far-lba", [Scan | Records | Extents, .. Patch("record", 0, 40 + 16, Int64(long.MaxValue - 1))]);
        yield return ("gftl-record-trim-huge-count", [Scan | Records, .. Patch("record", 1, 10, [2, 0]), .. Patch("record", 1, 12, Int32(0)), .. Patch("record", 1, 40 + 24, Int32(int.MaxValue))]);
        yield return ("gftl-record-high-stamp", [Scan | Records, .. Patch("record", 2, 32, Int64(long.MaxValue))]);
        yield return ("gftl-checkpoint-counts", [Slots, .. Patch("checkpoint", 0, 0, Int32(1 << 20))]);
        yield return ("gftl-checkpoint-entry", [Slots, .. Patch("checkpoint", 0, 4 * 16 + 4 + 24, Int64(-5))]);
        yield return ("gftl-catalog-garbage", [Slots, .. Patch("catalog", 0, 20, "{\"x\":[[[["u8.ToArray())]);
        yield return ("gftl-catalog-size", [Slots, .. Patch("catalog", 0, 0, "{\"formatVersion\":1,\"volumes\":[{\"sizeBytes\":-1}]}"u8.ToArray())]);
        yield return ("gftl-slot-lengths", [Slots, .. Patch("slot-header", 0, 40, Int64(1L << 40))]);
        yield return ("gftl-superblock-geometry", [Superblocks, .. Patch("superblock", 0, 48, Int32(4096)), .. Patch("superblock", 0, 52, Int32(100000))]);
    }

    /// <summary>A patch of <paramref name="bytes"/> at <paramref name="at"/> in the <paramref name="nth"/> region of that kind.</summary>
    private static byte[] Patch(string kind, int nth, int at, byte[] bytes)
    {
        var regions = GftlImage.Regions;
        int index = -1;
        for (int i = 0, seen = 0; i < regions.Count && index < 0; i++)
        {
            if (regions[i].Kind == kind && seen++ == nth) index = i;
        }

        if (index < 0) throw new InvalidOperationException($"the pristine image has no {kind} region #{nth}");
        byte[] patch = new byte[4 + bytes.Length];
        patch[0] = (byte)index;
        BinaryPrimitives.WriteUInt16LittleEndian(patch.AsSpan(1), (ushort)at);
        patch[3] = (byte)bytes.Length;
        bytes.CopyTo(patch, 4);
        return patch;
    }

    private static byte[] Int32(int value) => BitConverter.GetBytes(value);

    private static byte[] Int64(long value) => BitConverter.GetBytes(value);
}
