namespace Duroslight.Tests.Shared;

/// <summary>A temporary directory, removed with everything in it on Dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("dsl-test-").FullName;

    public void Dispose() => Directory.Delete(Path, recursive: true);
}
