using Duroslight.Protocol.Engine;
using Duroslight.Protocol.Nvme;
using Duroslight.Protocol.Subsystems;

namespace Duroslight.Protocol.Tests.Engine;

/// <summary>Executes the engine's storage requests against one byte array per volume.</summary>
internal sealed class MemoryStorage
{
    private readonly Dictionary<Guid, byte[]> _volumes = [];

    public int Flushes { get; private set; }

    public List<StorageRequestRecord> Log { get; } = [];

    /// <summary>Adds a namespace; <paramref name="reservation"/> is the state a restart restored (PTPL).</summary>
    public NamespaceInfo AddVolume(Target target, uint nsid, long blocks, int blockSize, Guid? volumeId = null,
        Duroslight.Protocol.Reservations.ReservationState? reservation = null, LeaseFence? fence = null, bool sharedReservation = false)
    {
        var ns = new NamespaceInfo(nsid, volumeId ?? Guid.NewGuid(), blocks, blockSize)
        {
            Reservation = reservation ?? Duroslight.Protocol.Reservations.ReservationState.Empty,
            Fence = fence,
            ReservationShared = sharedReservation,
        };
        _volumes.Add(ns.VolumeId, new byte[blocks * blockSize]);
        target.AddNamespace(ns);
        return ns;
    }

    public byte[] Volume(Guid id) => _volumes[id];

    public NvmeStatus Execute(StorageRequest r)
    {
        Log.Add(new StorageRequestRecord(r.Op, r.VolumeId, r.Offset, r.Length, r.ForceUnitAccess, r.MayDeallocate,
            r.Ranges.AsSpan(0, r.RangeCount).ToArray()));
        switch (r.Op)
        {
            case StorageOp.Read:
                _volumes[r.VolumeId].AsSpan((int)r.Offset, (int)r.Length).CopyTo(r.Buffer.Span);
                break;
            case StorageOp.Write:
                r.Buffer.Span[..(int)r.Length].CopyTo(_volumes[r.VolumeId].AsSpan((int)r.Offset));
                break;
            case StorageOp.WriteZeroes:
                _volumes[r.VolumeId].AsSpan((int)r.Offset, (int)r.Length).Clear();
                break;
            case StorageOp.Deallocate:
                foreach (var range in r.Ranges.AsSpan(0, r.RangeCount))
                    _volumes[r.VolumeId].AsSpan((int)range.Offset, (int)range.Length).Clear();
                break;
            case StorageOp.Flush:
                Flushes++;
                break;
        }
        return NvmeStatus.Success;
    }
}

internal sealed record StorageRequestRecord(StorageOp Op, Guid VolumeId, long Offset, long Length, bool Fua, bool MayDeallocate,
    ByteRange[] Ranges);

internal sealed class TestSignal : IConnectionSignal
{
    private int _wakes;

    public int Wakes => Volatile.Read(ref _wakes);

    public void Wake() => Interlocked.Increment(ref _wakes);
}
