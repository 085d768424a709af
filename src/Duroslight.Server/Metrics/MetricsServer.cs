using System.Net;
using Duroslight.Server.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Duroslight.Server.Metrics;

/// <summary>GET /metrics in the Prometheus text format on a TCP port (default :9180), served by Kestrel.</summary>
public sealed class MetricsServer(NodeHost node, ILoggerFactory loggers) : IAsyncDisposable
{
    private readonly NodeMetrics _metrics = new(node);
    private WebApplication? _app;

    /// <summary>Starts listening; a port already in use fails the start with the address in the message.</summary>
    public void Start(IPEndPoint endPoint)
    {
        var app = HttpSurface.Create(loggers, o => o.Listen(endPoint), a =>
        {
            a.MapGet("/metrics", ScrapeAsync);
            a.MapFallback(c =>
            {
                c.Response.StatusCode = 404;
                return c.Response.WriteAsync("not found: try GET /metrics\n");
            });
        });
        _app = app;
        try
        {
            app.StartAsync().GetAwaiter().GetResult();
        }
        catch (IOException e)
        {
            throw new IOException($"metrics endpoint {endPoint}: {e.InnerException?.Message ?? e.Message} (use --metrics ADDR:PORT or --metrics off)", e);
        }
        loggers.CreateLogger("duroslight").LogInformation("metrics on http://{Endpoint}/metrics", endPoint);
    }

    public Task<string> RenderAsync() => _metrics.RenderAsync();

    public async ValueTask DisposeAsync()
    {
        if (_app is not null)
        {
            await _app.StopAsync().ConfigureAwait(false);
            await _app.DisposeAsync().ConfigureAwait(false);
        }
    }

    private async Task ScrapeAsync(HttpContext context)
    {
        context.Response.ContentType = NodeMetrics.ContentType;
        await _metrics.ExportAsync(context.Response.Body, context.RequestAborted).ConfigureAwait(false);
    }
}
