using System.Net.Sockets;
using Duroslight.Server.Hosting;
using Microsoft.Extensions.Logging;

namespace Duroslight.Server.Control;

/// <summary>
/// The control API on a Unix domain socket with mode 0600: only the node's own user (and root) may drive it.
/// A stale socket file from a killed process is replaced; a live one (another node) is an error.
/// </summary>
public sealed class ControlServer(NodeHost node, ILogger logger) : IAsyncDisposable
{
    private MiniHttpServer? _http;
    private string? _path;

    public void Start(string path)
    {
        string full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        RemoveStale(full);
        var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            listener.Bind(new UnixDomainSocketEndPoint(full));
            // Before listen(): nobody can connect until the mode is 0600.
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(full, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            listener.Listen(16);
        }
        catch
        {
            listener.Dispose();
            throw;
        }
        _path = full;
        var api = new ControlApi(node, logger);
        _http = new MiniHttpServer(listener, api.HandleAsync, logger);
        _http.Start();
        logger.LogInformation("control API on unix:{Path}", full);
    }

    public async ValueTask DisposeAsync()
    {
        if (_http is not null) await _http.DisposeAsync().ConfigureAwait(false);
        if (_path is not null) File.Delete(_path);
    }

    private static void RemoveStale(string path)
    {
        if (!File.Exists(path) && !Directory.Exists(path)) return;
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
        }
        catch (SocketException)
        {
            File.Delete(path);
            return;
        }
        throw new InvalidOperationException($"control socket {path} is in use by another process (another duroslight node?)");
    }
}
