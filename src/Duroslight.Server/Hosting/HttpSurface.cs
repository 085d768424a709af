using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Duroslight.Server.Hosting;

/// <summary>
/// A Kestrel application for one low-rate control-plane surface (the control API's Unix socket, or /metrics):
/// the empty builder (no configuration sources, so no ASPNETCORE_URLS can add a listener), routing only, the
/// node's loggers, and no lifetime of its own (the process's host owns signals). Kestrel runs on the .NET thread
/// pool, never on the reactor's pinned shards.
/// </summary>
internal static class HttpSurface
{
    private const long MaxBodyBytes = 1 << 20;

    public static WebApplication Create(ILoggerFactory loggers, Action<KestrelServerOptions> listen, Action<WebApplication> map)
    {
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore().ConfigureKestrel(o =>
        {
            o.AddServerHeader = false;
            o.Limits.MaxRequestBodySize = MaxBodyBytes;
            o.Limits.RequestHeadersTimeout = TimeSpan.FromSeconds(30);
            listen(o);
        });
        builder.WebHost.UseSockets(o => o.CreateBoundListenSocket = BindPrivate);
        builder.Services.AddRoutingCore();
        builder.Services.AddSingleton(loggers);
        builder.Services.AddSingleton<IHostLifetime, NoLifetime>();
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(5));
        var app = builder.Build();
        map(app);
        return app;
    }

    /// <summary>
    /// Kestrel's own bind, plus mode 0600 on a Unix socket before Kestrel calls listen(): nobody but the node's
    /// user (and root) can ever connect to the control API.
    /// </summary>
    private static Socket BindPrivate(System.Net.EndPoint endPoint)
    {
        var socket = SocketTransportOptions.CreateDefaultBoundListenSocket(endPoint);
        if (endPoint is UnixDomainSocketEndPoint unix && !OperatingSystem.IsWindows())
            File.SetUnixFileMode(unix.ToString(), UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return socket;
    }

    /// <summary>The surface starts and stops with the node; signals belong to the process's host.</summary>
    private sealed class NoLifetime : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
