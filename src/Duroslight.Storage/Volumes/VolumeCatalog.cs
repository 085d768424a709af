using System.Text.Json;
using System.Text.Json.Serialization;
using Duroslight.Core;

namespace Duroslight.Storage.Volumes;

/// <summary>
/// The persisted list of volumes (volumes.json). Saves are atomic (<see cref="DurableFile.Replace"/>): a crash
/// leaves either the old or the new catalog, never a torn one.
/// </summary>
internal static partial class VolumeCatalog
{
    private const int FormatVersion = 1;

    /// <summary>The volumes in the catalog, or none when it does not exist yet.</summary>
    public static List<VolumeDescriptor> Load(string path)
    {
        if (!File.Exists(path))
        {
            return [];
        }

        CatalogDocument? document;
        try
        {
            document = JsonSerializer.Deserialize(File.ReadAllBytes(path), CatalogJsonContext.Default.CatalogDocument);
        }
        catch (JsonException e)
        {
            throw new VolumeStoreException($"Volume catalog '{path}' is not valid JSON: {e.Message}");
        }

        if (document is null || document.FormatVersion != FormatVersion || document.Volumes is null)
        {
            throw new VolumeStoreException($"Volume catalog '{path}' has an unknown format (expected formatVersion {FormatVersion}).");
        }

        foreach (VolumeDescriptor? volume in document.Volumes)
        {
            if (!IsPlausible(volume))
            {
                throw new VolumeStoreException($"Volume catalog '{path}' has an invalid entry: {volume?.ToString() ?? "null"}.");
            }
        }

        return [.. document.Volumes];
    }

    public static void Save(string path, List<VolumeDescriptor> volumes) =>
        DurableFile.Replace(path, JsonSerializer.SerializeToUtf8Bytes(
            new CatalogDocument(FormatVersion, volumes.ToArray()), CatalogJsonContext.Default.CatalogDocument));

    /// <summary>Catches hand edits and truncation that still parse as JSON: a bad entry would otherwise fail later and less clearly.</summary>
    private static bool IsPlausible(VolumeDescriptor? volume) =>
        volume is not null && volume.Id != Guid.Empty && !string.IsNullOrWhiteSpace(volume.Name) &&
        volume.BlockSize >= 512 && int.IsPow2(volume.BlockSize) &&
        volume.SizeBytes > 0 && volume.SizeBytes % volume.BlockSize == 0;

    /// <summary>A save interrupted before its rename leaves a temp file behind; it holds nothing of value.</summary>
    public static void DeleteLeftovers(string path) => DurableFile.DeleteLeftovers(path);

    internal sealed record CatalogDocument(int FormatVersion, VolumeDescriptor[]? Volumes);

    [JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
    [JsonSerializable(typeof(CatalogDocument))]
    internal sealed partial class CatalogJsonContext : JsonSerializerContext;
}
