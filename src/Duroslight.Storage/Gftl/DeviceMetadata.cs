using System.Buffers.Binary;
using Duroslight.Storage.Devices;
using Duroslight.Storage.Volumes;

namespace Duroslight.Storage.Gftl;

/// <summary>
/// The store's state on its devices: the volume catalog and, after a graceful stop, the checkpoint. Two slots sit
/// after the last segment of device 0, mirrored on device 1 when the set has two or more devices. Each save writes
/// the next generation into the slot the previous one did not use, on every mirror in turn, each made durable
/// before the next: a torn save leaves the previous generation intact, so a start always finds the newest one
/// that was completely written. A slot is [header block | catalog JSON | checkpoint], the header carrying the
/// generation and checksums of itself, the catalog and the checkpoint (checked separately: a damaged checkpoint
/// only costs a scan). Runs on the control path, through the calling thread's <see cref="BlockIo"/>.
/// </summary>
internal sealed class DeviceMetadata
{
    public const int FormatVersion = 1;
    private const ulong Magic = 0x3154_454D_474C_5344; // "DSLGMET1"
    private const int HeaderSize = GftlLayout.BlockSize;
    private const int HeaderCrcAt = HeaderSize - 4;

    /// <summary>Room for the catalog JSON in a slot: about a thousand volumes.</summary>
    private const long CatalogCapacity = 256 << 10;

    /// <summary>Bytes a checkpoint takes per mapped block (LBA, location, sequence number).</summary>
    private const long CheckpointBytesPerBlock = 24;

    private readonly GftlDevice[] _mirrors;
    private readonly Guid _clusterId;
    private readonly long _offset;
    private readonly long _slotBytes;
    private long _generation;

    /// <param name="devices">The set in order; devices 0 and 1 (where present) hold the mirrors.</param>
    public DeviceMetadata(GftlDevice[] devices, Guid clusterId, long offset, long slotBytes)
    {
        _mirrors = devices[..Math.Min(2, devices.Length)];
        _clusterId = clusterId;
        _offset = offset;
        _slotBytes = slotBytes;
    }

    /// <summary>The generation last loaded or saved (0: none yet).</summary>
    public long Generation => _generation;

    /// <summary>The size of one slot for a set of <paramref name="deviceCount"/> devices of at least <paramref name="smallest"/> bytes each.</summary>
    public static long SlotBytesFor(long smallest, int deviceCount, int segmentBytes)
    {
        long blocks = deviceCount * (smallest / GftlLayout.BlockSize);
        long segments = deviceCount * (smallest / segmentBytes);
        return Align(HeaderSize + CatalogCapacity + 64 + (4 * segments) + (CheckpointBytesPerBlock * blocks));
    }

    public sealed record Loaded(long Generation, byte[] Catalog, byte[]? Checkpoint, long LastSeq, string CheckpointProblem);

    /// <summary>The newest completely written generation on any mirror, or null (with why) when no slot is intact.</summary>
    public Loaded? Load(out string problem)
    {
        Loaded? best = null;
        problem = "no metadata slot on the devices is intact";
        foreach (GftlDevice device in _mirrors)
        {
            for (int slot = 0; slot < 2; slot++)
            {
                Loaded? found = TryRead(device, slot, ref problem);
                if (found is not null && (best is null || found.Generation > best.Generation ||
                    (found.Generation == best.Generation && best.Checkpoint is null && found.Checkpoint is not null)))
                {
                    best = found;
                }
            }
        }

        _generation = best?.Generation ?? 0;
        return best;
    }

    /// <summary>Writes the next generation (the catalog and, optionally, a checkpoint) durably to every mirror.</summary>
    public void Save(ReadOnlySpan<byte> catalog, ReadOnlySpan<byte> checkpoint, long lastSeq)
    {
        if (catalog.Length > CatalogCapacity)
        {
            throw new VolumeStoreException($"GFTL catalog of {catalog.Length} bytes exceeds the {CatalogCapacity} bytes the device metadata holds (too many volumes).");
        }

        if (HeaderSize + Align(catalog.Length) + checkpoint.Length > _slotBytes)
        {
            throw new VolumeStoreException("GFTL checkpoint does not fit the device metadata slot.");
        }

        long generation = _generation + 1;
        long catalogAt = HeaderSize, checkpointAt = HeaderSize + Align(catalog.Length);
        using var buffer = new NativeBuffer((int)Align(checkpointAt + checkpoint.Length));
        Span<byte> span = buffer.GetSpan();
        catalog.CopyTo(span[(int)catalogAt..]);
        checkpoint.CopyTo(span[(int)checkpointAt..]);
        Span<byte> header = span[..HeaderSize];
        BinaryPrimitives.WriteUInt64LittleEndian(header, Magic);
        BinaryPrimitives.WriteInt32LittleEndian(header[8..], FormatVersion);
        BinaryPrimitives.WriteInt64LittleEndian(header[16..], generation);
        _clusterId.TryWriteBytes(header[24..40]);
        BinaryPrimitives.WriteInt64LittleEndian(header[40..], catalog.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(header[48..], Crc32C.Compute(catalog));
        BinaryPrimitives.WriteInt64LittleEndian(header[56..], checkpoint.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(header[64..], Crc32C.Compute(checkpoint));
        BinaryPrimitives.WriteInt64LittleEndian(header[72..], lastSeq);
        BinaryPrimitives.WriteUInt32LittleEndian(header[HeaderCrcAt..], Crc32C.Compute(header[..HeaderCrcAt]));
        foreach (GftlDevice device in _mirrors)
        {
            long offset = SlotOffset((int)(generation & 1));
            int written = BlockIo.Current.WriteAsync(device.Handle, buffer.Memory, offset).GetAwaiter().GetResult();
            if (written != buffer.Length || BlockIo.Current.SyncAsync(device.Handle).GetAwaiter().GetResult() != 0)
            {
                throw new VolumeStoreException($"Cannot write the GFTL metadata on device {device.Index} '{device.Path}' (result {written}).");
            }
        }

        _generation = generation;
    }

    private Loaded? TryRead(GftlDevice device, int slot, ref string problem)
    {
        using var header = new NativeBuffer(HeaderSize);
        if (BlockIo.Current.ReadAsync(device.Handle, header.Memory, SlotOffset(slot)).GetAwaiter().GetResult() != HeaderSize)
        {
            return null;
        }

        ReadOnlySpan<byte> h = header.GetSpan();
        if (BinaryPrimitives.ReadUInt64LittleEndian(h) != Magic)
        {
            return null; // never written, or torn at its first sector
        }

        int version = BinaryPrimitives.ReadInt32LittleEndian(h[8..]);
        if (version != FormatVersion)
        {
            throw new VolumeStoreException(
                $"GFTL device {device.Index} '{device.Path}' holds metadata of format version {version}; this build reads version {FormatVersion}.");
        }

        long catalogLength = BinaryPrimitives.ReadInt64LittleEndian(h[40..]);
        long checkpointLength = BinaryPrimitives.ReadInt64LittleEndian(h[56..]);
        if (BinaryPrimitives.ReadUInt32LittleEndian(h[HeaderCrcAt..]) != Crc32C.Compute(h[..HeaderCrcAt]) ||
            new Guid(h[24..40]) != _clusterId || catalogLength < 0 || catalogLength > CatalogCapacity || checkpointLength < 0 ||
            HeaderSize + Align(catalogLength) + checkpointLength > _slotBytes)
        {
            problem = $"metadata slot {slot} of device {device.Index} is damaged";
            return null;
        }

        long bodyBytes = Align(Align(catalogLength) + checkpointLength);
        using var body = new NativeBuffer((int)Math.Max(bodyBytes, GftlLayout.BlockSize));
        if (bodyBytes > 0 && BlockIo.Current.ReadAsync(device.Handle, body.Memory[..(int)bodyBytes], SlotOffset(slot) + HeaderSize).GetAwaiter().GetResult() != bodyBytes)
        {
            return null;
        }

        ReadOnlySpan<byte> catalog = body.GetSpan()[..(int)catalogLength];
        if (BinaryPrimitives.ReadUInt32LittleEndian(h[48..]) != Crc32C.Compute(catalog))
        {
            problem = $"metadata slot {slot} of device {device.Index} is torn";
            return null;
        }

        ReadOnlySpan<byte> checkpoint = body.GetSpan().Slice((int)Align(catalogLength), (int)checkpointLength);
        bool checkpointIntact = checkpointLength > 0 && BinaryPrimitives.ReadUInt32LittleEndian(h[64..]) == Crc32C.Compute(checkpoint);
        return new Loaded(
            BinaryPrimitives.ReadInt64LittleEndian(h[16..]),
            catalog.ToArray(),
            checkpointIntact ? checkpoint.ToArray() : null,
            BinaryPrimitives.ReadInt64LittleEndian(h[72..]),
            checkpointLength == 0 ? "no checkpoint (the last stop was not graceful)" : checkpointIntact ? "" : "checkpoint is torn");
    }

    private long SlotOffset(int slot) => _offset + (slot * _slotBytes);

    private static long Align(long bytes) => (bytes + GftlLayout.BlockSize - 1) & ~(long)(GftlLayout.BlockSize - 1);
}
