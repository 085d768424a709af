using System.Text.Json;
using System.Text.Json.Serialization;
using Duroslight.Storage.Interop;
using Duroslight.Storage.Volumes;

namespace Duroslight.Storage.Gftl;

/// <summary>
/// The store's identity and volume list (gftl.json in the data directory), saved atomically (temp file, fsync,
/// rename, fsync directory). The volume bytes and maps live on the devices; this file says which volumes exist,
/// since when (<see cref="Entry.CreatedSeq"/>: older records of a reused id are ignored) and what they derive from.
/// </summary>
internal static partial class GftlCatalog
{
    public const string FileName = "gftl.json";
    private const int FormatVersion = 1;

    /// <param name="BaseSeq">For a snapshot or clone: it holds its parent's records older than this sequence number.</param>
    /// <param name="Hidden">Deleted, but kept while snapshots or clones still read through it.</param>
    public sealed record Entry(Guid Id, string Name, long SizeBytes, bool ReadOnly, Guid? ParentId, long BaseSeq, long CreatedSeq, bool Hidden)
    {
        public VolumeDescriptor Descriptor => new(Id, Name, SizeBytes, GftlLayout.BlockSize) { ReadOnly = ReadOnly, ParentId = ParentId };
    }

    public sealed record Document(int FormatVersion, Guid ClusterId, List<Entry> Volumes);

    public static Document? Load(string path)
    {
        if (!File.Exists(path))
        {
            return null;
        }

        Document? document;
        try
        {
            document = JsonSerializer.Deserialize(File.ReadAllBytes(path), JsonContext.Default.Document);
        }
        catch (JsonException e)
        {
            throw new VolumeStoreException($"GFTL catalog '{path}' is not valid JSON: {e.Message}");
        }

        if (document is null || document.FormatVersion != FormatVersion || document.Volumes is null || document.ClusterId == Guid.Empty)
        {
            throw new VolumeStoreException($"GFTL catalog '{path}' has an unknown format (expected formatVersion {FormatVersion}).");
        }

        return document;
    }

    public static void Save(string path, Document document)
    {
        string temporaryPath = path + ".tmp";
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(document, JsonContext.Default.Document);
        using (var stream = new FileStream(temporaryPath, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            stream.Write(json);
            stream.Flush(flushToDisk: true);
        }

        File.Move(temporaryPath, path, overwrite: true);
        LibC.SyncDirectoryOrThrow(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }

    [JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
    [JsonSerializable(typeof(Document))]
    internal sealed partial class JsonContext : JsonSerializerContext;
}
