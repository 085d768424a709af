using System.Net.Sockets;
using Duroslight.Server.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging;

namespace Duroslight.Server.Control;

/// <summary>
/// The control API on a Unix domain socket with mode 0600 (Kestrel, <see cref="HttpSurface"/>): only the node's own
/// user (and root) may drive it. A stale socket file from a killed process is replaced; a live one (another node)
/// is an error.
/// </summary>
public sealed class ControlServer(NodeHost node, ILoggerFactory loggers) : IAsyncDisposable
{
    private readonly ILogger _logger = loggers.CreateLogger("duroslight");
    private WebApplication? _app;
    private string? _path;

    public void Start(string path)
    {
        string full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        RemoveStale(full);
        var api = new ControlApi(node, _logger);
        var app = HttpSurface.Create(loggers, o => o.ListenUnixSocket(full), api.Map);
        _path = full;
        _app = app;
        app.StartAsync().GetAwaiter().GetResult();
        _logger.LogInformation("control API on unix:{Path}", full);
    }

    public async ValueTask DisposeAsync()
    {
        if (_app is not null)
        {
            await _app.StopAsync().ConfigureAwait(false);
            await _app.DisposeAsync().ConfigureAwait(false);
        }
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
