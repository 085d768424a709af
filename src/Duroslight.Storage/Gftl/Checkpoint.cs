using System.Buffers.Binary;
using Duroslight.Storage.Interop;

namespace Duroslight.Storage.Gftl;

/// <summary>
/// The state a graceful shutdown saves (gftl.checkpoint in the data directory) so the next start skips the scan:
/// every volume's mapped entries and each segment's trim-record count, after a 48-byte header with the cluster id,
/// the last sequence number, the payload length and its CRC32C. Written atomically; deleted as soon as it has been
/// loaded, so a later crash can never start from a stale one. A missing, torn or foreign checkpoint means a scan.
/// </summary>
internal static class Checkpoint
{
    public const string FileName = "gftl.checkpoint";
    private const ulong Magic = 0x3150_4B43_474C_5344; // "DSLGCKP1"
    private const int HeaderSize = 48;
    private const int EntrySize = 24;

    public static void Save(string path, Guid clusterId, GftlCore core)
    {
        byte[] payload = Encode(core);
        byte[] header = new byte[HeaderSize];
        BinaryPrimitives.WriteUInt64LittleEndian(header, Magic);
        clusterId.TryWriteBytes(header.AsSpan(8, 16));
        BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(24), core.LastSeq);
        BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(32), payload.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(40), Crc32C.Compute(payload));
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(44), Crc32C.Compute(header.AsSpan(0, 44)));
        string temporaryPath = path + ".tmp";
        using (var stream = new FileStream(temporaryPath, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            stream.Write(header);
            stream.Write(payload);
            stream.Flush(flushToDisk: true);
        }

        File.Move(temporaryPath, path, overwrite: true);
        LibC.SyncDirectoryOrThrow(Path.GetDirectoryName(path)!);
    }

    /// <summary>Loads the checkpoint into the maps; false (with the reason, and nothing installed) when it cannot be used.</summary>
    public static bool TryLoad(string path, Guid clusterId, GftlCore core, out string problem)
    {
        File.Delete(path + ".tmp");
        if (!File.Exists(path))
        {
            problem = "no checkpoint (the last stop was not graceful)";
            return false;
        }

        byte[] file = File.ReadAllBytes(path);
        ReadOnlySpan<byte> span = file;
        if (span.Length < HeaderSize || BinaryPrimitives.ReadUInt64LittleEndian(span) != Magic ||
            BinaryPrimitives.ReadUInt32LittleEndian(span[44..]) != Crc32C.Compute(span[..44]))
        {
            problem = "checkpoint header is damaged";
            return false;
        }

        long length = BinaryPrimitives.ReadInt64LittleEndian(span[32..]);
        if (new Guid(span[8..24]) != clusterId || length != span.Length - HeaderSize ||
            BinaryPrimitives.ReadUInt32LittleEndian(span[40..]) != Crc32C.Compute(span[HeaderSize..]))
        {
            problem = "checkpoint is torn or belongs to another cluster";
            return false;
        }

        if (!Decode(span[HeaderSize..], core))
        {
            problem = "checkpoint does not match the devices";
            return false;
        }

        core.RaiseSeq(BinaryPrimitives.ReadInt64LittleEndian(span[24..]));
        problem = "";
        return true;
    }

    /// <summary>Removes the checkpoint once loaded: from now on the devices change and only a new shutdown may write one.</summary>
    public static void Invalidate(string path)
    {
        if (File.Exists(path))
        {
            File.Delete(path);
            LibC.SyncDirectoryOrThrow(Path.GetDirectoryName(path)!);
        }
    }

    private static byte[] Encode(GftlCore core)
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
            foreach (ShardMap map in volume.Maps)
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
        foreach (ShardMap map in volume.Maps)
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

    private static void WriteEntries(BinaryWriter writer, ShardMap map)
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

    /// <summary>Validates everything before installing anything, so a bad checkpoint leaves the maps empty for the scan.</summary>
    private static bool Decode(ReadOnlySpan<byte> payload, GftlCore core)
    {
        Segment[] segments = core.Allocator.Segments;
        if (payload.Length < 8 || BinaryPrimitives.ReadInt32LittleEndian(payload) != segments.Length)
        {
            return false;
        }

        int offset = 4 + (4 * segments.Length);
        var loaded = new List<(GftlVolume? Volume, int Offset, long Count)>();
        int volumeCount = BinaryPrimitives.ReadInt32LittleEndian(payload[offset..]);
        offset += 4;
        for (int v = 0; v < volumeCount; v++)
        {
            if (payload.Length < offset + 24)
            {
                return false;
            }

            GftlVolume? volume = core.Find(new Guid(payload.Slice(offset, 16)));
            long count = BinaryPrimitives.ReadInt64LittleEndian(payload[(offset + 16)..]);
            offset += 24;
            if (count < 0 || payload.Length < offset + (count * EntrySize))
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
