using System.Text.Json.Serialization;

namespace Duroslight.Server.Cluster;

// The JSON values under /duroslight/CLUSTER/ (docs/ARCHITECTURE.md, "Cluster state in etcd"). snake_case on the wire.

/// <summary>nodes/NN: what a node is and where it listens; persistent, so a dead node is still listed (as down).</summary>
public sealed record NodeRecord(int Index, string Io, string Discovery, string ControlSocket);

/// <summary>alive/NN: bound to the node's lease, so it disappears when the node stops renewing it (dies).</summary>
public sealed record AliveRecord(int Index, string State, long Lease, int Pid);

/// <summary>
/// volumes/UUID: one replicated volume. NSID is the cluster's (every node exposes the volume under it, with the UUID
/// as NGUID). Placement lists the nodes holding a replica; Primary is the one serving hosts (-1 until placed);
/// InSync the replicas that hold every acknowledged write. Generation counts the record's changes; every change
/// is a transaction that compares the key's mod revision, so two writers never overwrite each other. Hosts is the
/// volume's host list (namespace masking; null, or absent in older records: any host the subsystem admits).
/// </summary>
public sealed record VolumeRecord(Guid Id, string Name, long SizeBytes, int BlockSize, uint Nsid, int Replicas,
    IReadOnlyList<int> Placement, int Primary, IReadOnlyList<int> InSync, long Generation, IReadOnlyList<string>? Hosts = null);

/// <summary>hosts/POOL: the host access list of subsystem pool POOL (0 = default, N = aux-N) on every node.</summary>
public sealed record HostsRecord(int Pool, bool AllowAny, IReadOnlyList<string> Hosts)
{
    public Protocol.Subsystems.HostAccess ToAccess() =>
        AllowAny ? Protocol.Subsystems.HostAccess.AllowAny : Protocol.Subsystems.HostAccess.Only(Hosts);
}

/// <summary>
/// replicas/UUID/NN: a node opened its replica and exposes it; bound to that node's lease. Primary: the node whose
/// forwarded writes the replica applies (the volume's primary as that node last read it; -1 in older records), so a
/// new primary forwards to it only once it follows the promotion. Incarnation: the local replica's identity, made
/// when it was created and kept with its data (empty in older records: unknown), so a primary tells a replica that
/// came back with its data from a new or wiped one.
/// </summary>
public sealed record ReplicaRecord(int Node, string State, uint Nsid, int Primary = -1, Guid Incarnation = default);

/// <summary>
/// syncpoints/UUID/NN: the chunks replica NN (outside the in-sync set) misses, as the primary last saved them:
/// <see cref="Replication.DirtyMapCodec"/> bytes in base64 for a map of Chunks chunks, relative to the replica's
/// Incarnation (another one gets a full copy); Full: the copy under way is a full one. Persistent; the primary writes
/// it (only while its lease holds) before a change that makes a chunk dirty starts, on a rebuild's progress about
/// every second, and before it hands the volume over; the transaction that adds NN back to the in-sync set deletes it.
/// </summary>
public sealed record SyncPointRecord(int Node, Guid Incarnation, bool Full, long Chunks, string Map, int WrittenBy);

/// <summary>
/// moves/UUID: the volume's last move (`ctl volumes move`), kept after it ended so move-status can report it. Phase:
/// copying (To placed, outside the in-sync set until its rebuild joins it), cutover (From was the primary: it released
/// the volume and left the in-sync set; the new primary drops it), then done, failed (Error) or cancelled. The
/// progress fields are the primary's, published every few seconds while it copies.
/// </summary>
public sealed record MoveRecord(Guid Volume, int From, int To, string Phase, DateTime Started, DateTime? Finished = null, string? Error = null,
    long ChunksTotal = 0, long ChunksLeft = 0, long BytesCopied = 0, double MibPerSecond = 0, double EtaSeconds = -1)
{
    public const string Copying = "copying", CutOver = "cutover", Done = "done", Failed = "failed", Cancelled = "cancelled";

    /// <summary>Copying or cutting over: the volume's placement is not what it was and not yet what it will be.</summary>
    public bool Running => Phase is Copying or CutOver;

    /// <summary>The move ends (done, failed or cancelled) now.</summary>
    public MoveRecord Ended(string phase, string? error = null) => this with { Phase = phase, Finished = DateTime.UtcNow, Error = error, EtaSeconds = phase == Done ? 0 : -1 };
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(NodeRecord))]
[JsonSerializable(typeof(AliveRecord))]
[JsonSerializable(typeof(VolumeRecord))]
[JsonSerializable(typeof(ReplicaRecord))]
[JsonSerializable(typeof(HostsRecord))]
[JsonSerializable(typeof(MoveRecord))]
[JsonSerializable(typeof(SyncPointRecord))]
public sealed partial class ClusterJson : JsonSerializerContext;
