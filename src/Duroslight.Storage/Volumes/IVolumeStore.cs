using System.Text.Json.Serialization;

namespace Duroslight.Storage.Volumes;

/// <summary>What the node knows about one volume; persisted by the store.</summary>
public sealed record VolumeDescriptor(Guid Id, string Name, long SizeBytes, int BlockSize)
{
    /// <summary>A snapshot: reads only, its contents frozen at the moment it was taken.</summary>
    public bool ReadOnly { get; init; }

    /// <summary>The volume a snapshot or clone was taken from, or null.</summary>
    public Guid? ParentId { get; init; }

    /// <summary>
    /// The host NQNs that may see the volume (namespace masking), or null for any host the subsystem admits.
    /// Kept sorted and without duplicates (<see cref="VolumeRequests.NormalizeHosts"/>).
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string[]? Hosts { get; init; }

    /// <summary>
    /// The namespace's reservation record while Persist Through Power Loss is set (NVMe reservations; the target's
    /// <c>ReservationCodec</c> format, opaque here), or null. Absent from catalogs written before it existed.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public byte[]? Reservation { get; init; }

    /// <summary>
    /// Made when the volume is created and kept with its data: a cluster replica's identity, so a primary tells a
    /// replica that came back with its data (copy the chunks it missed) from a new or wiped one under the same volume
    /// ID (copy every chunk). Null in catalogs written before it existed (treated as unknown: a full copy).
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public Guid? Incarnation { get; init; }
}

/// <summary>Why a control-plane request on a store was refused.</summary>
public sealed class VolumeStoreException(string message) : Exception(message);

/// <summary>
/// A persistent set of volumes. Control-plane calls (create, delete, resize) are rare and may block;
/// they throw <see cref="VolumeStoreException"/> with a clear message for bad requests.
/// </summary>
public interface IVolumeStore : IDisposable
{
    IReadOnlyList<VolumeDescriptor> List();

    /// <param name="hosts">The host access list it starts with (null: any host), in the same catalog write.</param>
    VolumeDescriptor Create(string name, long sizeBytes, Guid? id = null, IReadOnlyList<string>? hosts = null);

    void Delete(Guid id);

    /// <summary>Grows a volume (shrinking is refused).</summary>
    VolumeDescriptor Resize(Guid id, long newSizeBytes);

    /// <summary>A read-only, stable point-in-time copy of a volume. Stores without copy-on-write refuse.</summary>
    VolumeDescriptor Snapshot(Guid sourceId, string name) =>
        throw new VolumeStoreException("Snapshots need a copy-on-write store (GFTL).");

    /// <summary>A writable copy of a volume or snapshot, independent of its source afterwards. Stores without copy-on-write refuse.</summary>
    VolumeDescriptor Clone(Guid sourceId, string name) =>
        throw new VolumeStoreException("Clones need a copy-on-write store (GFTL).");

    /// <summary>
    /// Replaces the volume's host access list (null: any host), persisted like the rest of the descriptor. The
    /// store keeps the list; the node's target enforces it.
    /// </summary>
    VolumeDescriptor SetHosts(Guid id, IReadOnlyList<string>? hosts);

    /// <summary>
    /// Replaces the volume's reservation record (null: none), durable when this returns: a reservation command on a
    /// namespace with PTPL completes only after it.
    /// </summary>
    VolumeDescriptor SetReservation(Guid id, byte[]? record);

    /// <summary>The open volume; the store owns it and disposes it with itself or on Delete.</summary>
    IBlockVolume Open(Guid id);

    /// <summary>The devices under the volumes, as <see cref="DeviceHealth"/> tracks them (none for memory).</summary>
    IReadOnlyList<DeviceHealth> Devices => [];
}
