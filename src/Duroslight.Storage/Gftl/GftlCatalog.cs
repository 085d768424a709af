using System.Text.Json;
using System.Text.Json.Serialization;
using Duroslight.Storage.Volumes;

namespace Duroslight.Storage.Gftl;

/// <summary>
/// The store's identity and volume list, kept in the device metadata (<see cref="DeviceMetadata"/>) as JSON. The
/// volume bytes and maps live in the log; this says which volumes exist, since when (<see cref="Entry.CreatedSeq"/>:
/// older records of a reused id are ignored) and what they derive from.
/// </summary>
internal static partial class GftlCatalog
{
    /// <summary>Where format 1 kept the catalog: in the data directory. Its presence means an old store.</summary>
    public const string LegacyFileName = "gftl.json";
    private const int FormatVersion = 1;

    /// <param name="BaseSeq">For a snapshot or clone: it holds its parent's records older than this sequence number.</param>
    /// <param name="Hidden">Deleted, but kept while snapshots or clones still read through it.</param>
    public sealed record Entry(Guid Id, string Name, long SizeBytes, bool ReadOnly, Guid? ParentId, long BaseSeq, long CreatedSeq, bool Hidden)
    {
        /// <summary>The host access list (null: any host); absent from catalogs written before it existed.</summary>
        [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
        public string[]? Hosts { get; init; }

        /// <summary>The PTPL reservation record (null: none); absent from catalogs written before it existed.</summary>
        [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
        public byte[]? Reservation { get; init; }

        /// <summary>See <see cref="VolumeDescriptor.Incarnation"/>; absent from catalogs written before it existed.</summary>
        [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
        public Guid? Incarnation { get; init; }

        public VolumeDescriptor Descriptor =>
            new(Id, Name, SizeBytes, GftlLayout.BlockSize) { ReadOnly = ReadOnly, ParentId = ParentId, Hosts = Hosts, Reservation = Reservation, Incarnation = Incarnation };
    }

    public sealed record Document(int FormatVersion, Guid ClusterId, List<Entry> Volumes);

    public static byte[] Serialize(Guid clusterId, List<Entry> volumes) =>
        JsonSerializer.SerializeToUtf8Bytes(new Document(FormatVersion, clusterId, volumes), JsonContext.Default.Document);

    public static Document Parse(ReadOnlySpan<byte> json, Guid clusterId)
    {
        Document? document;
        try
        {
            document = JsonSerializer.Deserialize(json, JsonContext.Default.Document);
        }
        catch (JsonException e)
        {
            throw new VolumeStoreException($"GFTL catalog on the devices is not valid JSON: {e.Message}");
        }

        if (document is null || document.FormatVersion != FormatVersion || document.Volumes is null || document.ClusterId != clusterId)
        {
            throw new VolumeStoreException($"GFTL catalog on the devices has an unknown format (expected formatVersion {FormatVersion}, cluster {clusterId}).");
        }

        return document;
    }

    [JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
    [JsonSerializable(typeof(Document))]
    internal sealed partial class JsonContext : JsonSerializerContext;
}
