using System.Net;
using Duroslight.Server.Hosting;
using Microsoft.Extensions.Logging;

namespace Duroslight.Server.Metrics;

/// <summary>GET /metrics in the Prometheus text format on a TCP port (default :9180).</summary>
public sealed class MetricsServer(NodeHost node, ILogger logger) : IAsyncDisposable
{
    private MiniHttpServer? _http;

    public void Start(IPEndPoint endPoint)
    {
        var listener = ListenSocket.Open(endPoint, "metrics", 64);
        _http = new MiniHttpServer(listener, Handle, logger);
        _http.Start();
        logger.LogInformation("metrics on http://{Endpoint}/metrics", listener.LocalEndPoint);
    }

    public string Render() => MetricsRenderer.Render(node);

    public async ValueTask DisposeAsync()
    {
        if (_http is not null) await _http.DisposeAsync().ConfigureAwait(false);
    }

    private Task<HttpResponse> Handle(HttpRequest request) => Task.FromResult(
        request is { Method: "GET", Path: "/metrics" }
            ? new HttpResponse(200, PrometheusText.ContentType, Render())
            : HttpResponse.Text(404, "not found: try GET /metrics\n"));
}
