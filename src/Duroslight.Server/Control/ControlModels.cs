using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Duroslight.Server.Control;

// The control API's bodies (README "Control API"). Property names are snake_case on the wire; the order here is
// the order `ctl` prints key=value pairs in.

public sealed record StateResponse(string State, int NodeIndex, string Cluster, string Nqn, int AuxCount, int Pid, long UptimeS,
    int Volumes, int Namespaces, int Controllers, int Connections, ulong Genctr, string Listen, string Discovery, string Metrics,
    int DevicesFailed);

/// <summary>`ctl devices`: a device under the volumes (kind gftl: one of the set; sparse: one volume's file) and its health.</summary>
public sealed record DeviceResponse(string Device, string Kind, string State, long Errors, int InFlight, string? Reason, DateTime? FailedAt);

/// <param name="AllowAnyHost">No host list: every host the subsystem admits sees it (Hosts is then empty).</param>
public sealed record VolumeResponse(string Id, string Name, long SizeBytes, int BlockSize, uint Nsid, long AllocatedBytes,
    bool AllowAnyHost, IReadOnlyList<string> Hosts);

/// <summary>A cluster volume (`ctl volumes show` in a cluster): placement, primary, in-sync set and each replica's state.</summary>
public sealed record ClusterVolumeResponse(string Id, string Name, long SizeBytes, uint Nsid, int Replicas, IReadOnlyList<int> Placement,
    int Primary, IReadOnlyList<int> InSync, IReadOnlyDictionary<string, string> ReplicaStates, long Generation, bool Local,
    IReadOnlyList<string>? Hosts, IReadOnlyDictionary<string, RebuildResponse>? Rebuild = null,
    IReadOnlyDictionary<string, RebuildResultResponse>? LastRebuild = null);

/// <summary>
/// A replica the answering node (its primary) is rebuilding: chunks of 128 KiB to copy, bytes written to it so far,
/// the pace in MiB/s of chunks handled and the seconds left at that pace (-1 until the first chunk is done); Kind
/// "dirty" (only the chunks it missed) or "full" (a new or wiped replica); Resumed: started from a sync point in etcd.
/// </summary>
public sealed record RebuildResponse(long ChunksTotal, long ChunksLeft, long BytesCopied, double MibPerSecond, double EtaSeconds,
    string Kind, bool Resumed);

/// <summary>The last rebuild of a replica that ended on the answering node (its primary): what it copied and whether the replica joined.</summary>
public sealed record RebuildResultResponse(string Kind, bool Resumed, long ChunksTotal, long ChunksCopied, long BytesCopied, bool Joined);

/// <summary>
/// `ctl volumes move|move-status|move-cancel`: a volume's last move. Phase copying, cutover, done, failed (error says
/// why) or cancelled; the copy's chunks of 128 KiB, bytes written to the new replica, MiB/s of chunks handled and the
/// seconds left (-1: not known yet) while it copies (live when asked of the primary, else as it last published them);
/// once done, MiB/s over the whole move.
/// </summary>
public sealed record MoveResponse(string Volume, int From, int To, string Phase, string? Error, DateTime Started, DateTime? Finished,
    double ElapsedSeconds, long ChunksTotal, long ChunksLeft, long BytesCopied, double MibPerSecond, double EtaSeconds);

/// <summary>POST /v1/volumes/{vol}/move: the node to move a replica to and, optionally, the node it leaves.</summary>
public sealed record MoveRequest(int? To = null, int? From = null);

/// <summary>`ctl nodes list`: a node of the cluster; state "Down" once its lease expired.</summary>
public sealed record NodeResponse(int Index, string Io, string Discovery, string State, bool Leader, IReadOnlyList<string> Volumes);

public sealed record SubsystemResponse(int Pool, string Nqn, bool AllowAnyHost, IReadOnlyList<string> Hosts);

public sealed record ControllerResponse(ushort Cntlid, int Pool, string Subsystem, string Host, int IoQueues, int Shard, string Peer, bool Discovery);

public sealed record ReferralResponse(string Address, string Port);

public sealed record DeletedResponse(string Deleted);

public sealed record DisconnectedResponse(ushort Disconnected, int Pool);

public sealed record ShutdownResponse(string State, string Shutdown);

/// <summary>Every refusal: the HTTP status again and a message for the operator.</summary>
public sealed record ErrorResponse(int Status, string Error);

/// <summary>
/// POST /v1/volumes and the volume actions: "name", "size" as bytes or a string such as "10G", "hosts" (create and
/// hosts: the host NQNs that may see the volume; absent or null for any host), "host" (attach, detach) and
/// "replicas" (a cluster's create, 1..3).
/// </summary>
public sealed record VolumeRequest(string? Name = null, [property: JsonConverter(typeof(NumberOrStringConverter))] string? Size = null,
    IReadOnlyList<string?>? Hosts = null, string? Host = null, int? Replicas = null);

/// <summary>The hosts actions: one "host" (allow, deny) or the whole "hosts" list (set).</summary>
public sealed record HostsRequest(string? Host = null, IReadOnlyList<string?>? Hosts = null);

public sealed record ReferralRequest(string? Address = null);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(StateResponse))]
[JsonSerializable(typeof(VolumeResponse))]
[JsonSerializable(typeof(List<VolumeResponse>))]
[JsonSerializable(typeof(List<SubsystemResponse>))]
[JsonSerializable(typeof(ClusterVolumeResponse))]
[JsonSerializable(typeof(List<ClusterVolumeResponse>))]
[JsonSerializable(typeof(List<NodeResponse>))]
[JsonSerializable(typeof(List<ControllerResponse>))]
[JsonSerializable(typeof(List<ReferralResponse>))]
[JsonSerializable(typeof(List<DeviceResponse>))]
[JsonSerializable(typeof(DeletedResponse))]
[JsonSerializable(typeof(DisconnectedResponse))]
[JsonSerializable(typeof(ShutdownResponse))]
[JsonSerializable(typeof(ErrorResponse))]
[JsonSerializable(typeof(VolumeRequest))]
[JsonSerializable(typeof(HostsRequest))]
[JsonSerializable(typeof(ReferralRequest))]
[JsonSerializable(typeof(MoveResponse))]
[JsonSerializable(typeof(MoveRequest))]
public sealed partial class ControlJson : JsonSerializerContext;

/// <summary>A JSON number or string, kept as its text (sizes may be 1073741824 or "1G").</summary>
public sealed class NumberOrStringConverter : JsonConverter<string>
{
    public override string? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => reader.TokenType switch
    {
        JsonTokenType.String => reader.GetString(),
        JsonTokenType.Number when reader.TryGetInt64(out long n) => n.ToString(CultureInfo.InvariantCulture),
        JsonTokenType.Null => null,
        _ => throw new JsonException("expected bytes (a whole number) or a string such as \"10G\""),
    };

    public override void Write(Utf8JsonWriter writer, string value, JsonSerializerOptions options) => writer.WriteStringValue(value);
}
