using System.Buffers.Binary;

namespace Duroslight.Storage.Gftl;

/// <summary>
/// The state a graceful shutdown saves (in the device metadata, beside the catalog) so the next start skips the
/// scan: every volume's mapped entries and each segment's trim-record count. The metadata header carries its
/// checksum and the last sequence number. A new metadata generation without it is written as soon as it has been
/// loaded, so a later crash can never start from a stale one. A missing, torn or foreign checkpoint means a scan.
/// </summary>
internal static class Checkpoint
{
    private const int EntrySize = 24;

    /// <summary>Loads the checkpoint into the maps; false (with the reason, and nothing installed) when it does not fit the devices.</summary>
    public static bool TryLoad(ReadOnlySpan<byte> payload, long lastSeq, GftlLog core, out string problem)
    {
        if (!Decode(payload, lastSeq, core))
        {
            problem = "checkpoint does not match the devices";
            return false;
        }

        core.RaiseSeq(lastSeq);
        problem = "";
        return true;
    }

    /// <summary>The checkpoint of the store's present state (nothing may be in flight).</summary>
    public static byte[] Encode(GftlLog core)
    {
        using var stream = new MemoryStream();
        using var writer = new BinaryWriter(stream);
        writer.Write(core.Allocator.Segments.Length);
        foreach (Segment segment in core.Allocator.Segments)
        {
            writer.Write(segment.TrimRecords);
        }

        GftlVolume[] volumes = Array.FindAll(core.Volumes, static v => !v.Entry.Hidden);
        writer.Write(volumes.Length);
        foreach (GftlVolume volume in volumes)
        {
            writer.Write(volume.Id.ToByteArray());
            writer.Write(CountMapped(volume));
            foreach (PartitionMap map in volume.Maps)
            {
                WriteEntries(writer, map);
            }
        }

        writer.Flush();
        return stream.ToArray();
    }

    private static long CountMapped(GftlVolume volume)
    {
        long count = 0;
        foreach (PartitionMap map in volume.Maps)
        {
            foreach (ChunkBlocks blocks in map.Chunks.Values)
            {
                foreach (MapEntry entry in blocks.Entries)
                {
                    count += entry.Location == GftlLayout.Unmapped ? 0 : 1;
                }
            }
        }

        return count;
    }

    private static void WriteEntries(BinaryWriter writer, PartitionMap map)
    {
        foreach ((long chunk, ChunkBlocks blocks) in map.Chunks)
        {
            for (int i = 0; i < blocks.Entries.Length; i++)
            {
                if (blocks.Entries[i].Location != GftlLayout.Unmapped)
                {
                    writer.Write((chunk * GftlLayout.BlocksPerChunk) + i);
                    writer.Write(blocks.Entries[i].Location);
                    writer.Write(blocks.Entries[i].Seq);
                }
            }
        }
    }

    /// <summary>
    /// Every entry names a block inside the volume, a location in a data segment of one of the devices, and a
    /// sequence number the store has issued: a checksum proves the checkpoint is whole, not that it fits these devices.
    /// </summary>
    private static bool EntriesFit(ReadOnlySpan<byte> entries, GftlVolume volume, GftlLog core, long lastSeq)
    {
        long blocks = volume.Entry.SizeBytes / GftlLayout.BlockSize;
        for (int at = 0; at < entries.Length; at += EntrySize)
        {
            long lba = BinaryPrimitives.ReadInt64LittleEndian(entries[at..]);
            long location = BinaryPrimitives.ReadInt64LittleEndian(entries[(at + 8)..]);
            long seq = BinaryPrimitives.ReadInt64LittleEndian(entries[(at + 16)..]);
            if ((ulong)lba >= (ulong)blocks || !core.Allocator.IsDataLocation(location) || seq < 0 || seq > lastSeq)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Validates everything before installing anything, so a bad checkpoint leaves the maps empty for the scan.</summary>
    private static bool Decode(ReadOnlySpan<byte> payload, long lastSeq, GftlLog core)
    {
        Segment[] segments = core.Allocator.Segments;
        if (payload.Length < 8 || BinaryPrimitives.ReadInt32LittleEndian(payload) != segments.Length)
        {
            return false;
        }

        int offset = 4 + (4 * segments.Length);
        if (payload.Length - offset < 4)
        {
            return false;
        }

        var loaded = new List<(GftlVolume? Volume, int Offset, long Count)>();
        int volumeCount = BinaryPrimitives.ReadInt32LittleEndian(payload[offset..]);
        offset += 4;
        for (int v = 0; v < volumeCount; v++)
        {
            if (payload.Length - offset < 24)
            {
                return false;
            }

            GftlVolume? volume = core.Find(new Guid(payload.Slice(offset, 16)));
            long count = BinaryPrimitives.ReadInt64LittleEndian(payload[(offset + 16)..]);
            offset += 24;
            if (count < 0 || count > (payload.Length - offset) / EntrySize ||
                (volume is not null && !EntriesFit(payload.Slice(offset, (int)count * EntrySize), volume, core, lastSeq)))
            {
                return false;
            }

            loaded.Add((volume, offset, count));
            offset += (int)(count * EntrySize);
        }

        for (int s = 0; s < segments.Length; s++)
        {
            segments[s].TrimRecords = BinaryPrimitives.ReadInt32LittleEndian(payload[(4 + (4 * s))..]);
        }

        foreach ((GftlVolume? volume, int start, long count) in loaded)
        {
            for (long i = 0; volume is not null && !volume.Entry.Hidden && i < count; i++)
            {
                ReadOnlySpan<byte> e = payload.Slice(start + (int)(i * EntrySize), EntrySize);
                core.Install(volume, BinaryPrimitives.ReadInt64LittleEndian(e), BinaryPrimitives.ReadInt64LittleEndian(e[8..]), BinaryPrimitives.ReadInt64LittleEndian(e[16..]));
            }
        }

        return true;
    }
}
