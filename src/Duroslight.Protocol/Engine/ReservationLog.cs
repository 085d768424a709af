using System.Buffers.Binary;
using Duroslight.Protocol.Reservations;

namespace Duroslight.Protocol.Engine;

/// <summary>
/// One controller's Reservation Notification log (page 80h, NVMe Base 2.0 section 5 "Reservation Notification",
/// rules in 8.19 "Reservation Notifications"): entries queue up, each read of the page takes the oldest, and the
/// Log Page Count grows by one per entry. At most <see cref="Capacity"/> wait; older ones are dropped (the count
/// still moves, so the host can tell). Any thread: the target adds, the admin connection reads.
/// </summary>
internal sealed class ReservationLog
{
    public const int PageBytes = 64;
    private const int Capacity = 255;

    private readonly Queue<(ulong Count, ReservationNoticeType Type, uint Nsid)> _entries = new();
    private readonly Dictionary<uint, uint> _masks = [];
    private ulong _count;

    /// <summary>Reservation Notification Mask (feature 82h) bits 3:1: the notice types the host does not want.</summary>
    public const uint MaskBits = 0b1110;

    /// <summary>Sets the mask of one namespace, or of every one (NSID FFFFFFFFh, kept as the default).</summary>
    public void SetMask(uint nsid, uint mask)
    {
        lock (_entries)
        {
            if (nsid == uint.MaxValue) _masks.Clear();
            _masks[nsid] = mask & MaskBits;
        }
    }

    public uint MaskOf(uint nsid)
    {
        lock (_entries) return _masks.TryGetValue(nsid, out uint m) ? m : _masks.GetValueOrDefault(uint.MaxValue);
    }

    public int Pending
    {
        get { lock (_entries) return _entries.Count; }
    }

    /// <summary>Queues a notice; false when the host masked this type (feature 82h), and then nothing is queued.</summary>
    public bool Add(uint nsid, ReservationNoticeType type, uint mask)
    {
        if ((mask & (1u << (int)type)) != 0) return false;
        lock (_entries)
        {
            _count = _count == ulong.MaxValue ? 1 : _count + 1;
            if (_entries.Count == Capacity) _entries.Dequeue();
            _entries.Enqueue((_count, type, nsid));
        }
        return true;
    }

    /// <summary>Writes the oldest entry (or an empty one) into the 64-byte page and removes it.</summary>
    public void Take(Span<byte> page)
    {
        page[..PageBytes].Clear();
        lock (_entries)
        {
            if (!_entries.TryDequeue(out var e)) return;
            BinaryPrimitives.WriteUInt64LittleEndian(page, e.Count);
            page[8] = (byte)e.Type;
            page[9] = (byte)Math.Min(_entries.Count, 255); // available log pages after this one
            BinaryPrimitives.WriteUInt32LittleEndian(page[12..], e.Nsid);
        }
    }
}
