using Duroslight.Core.Interop;

namespace Duroslight.Core;

/// <summary>
/// Replaces a small file so that a crash leaves either the old or the new content, never a torn one: write a
/// temporary file beside it, fsync it, rename it over the target, fsync the directory (so the rename survives).
/// </summary>
public static class DurableFile
{
    /// <summary>The temporary a replace in progress writes; one left by a crash holds nothing of value.</summary>
    public static string TemporaryPathOf(string path) => path + ".tmp";

    public static void Replace(string path, ReadOnlySpan<byte> content)
    {
        string temporaryPath = TemporaryPathOf(path);
        using (var stream = new FileStream(temporaryPath, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            stream.Write(content);
            stream.Flush(flushToDisk: true);
        }

        File.Move(temporaryPath, path, overwrite: true);
        LibC.SyncDirectoryOrThrow(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }

    /// <summary>Deletes what a replace interrupted before its rename left behind.</summary>
    public static void DeleteLeftovers(string path) => File.Delete(TemporaryPathOf(path));
}
