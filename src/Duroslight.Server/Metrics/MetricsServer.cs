using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Duroslight.Server.Hosting;
using Microsoft.Extensions.Logging;

namespace Duroslight.Server.Metrics;

/// <summary>
/// A minimal HTTP/1.1 endpoint serving GET /metrics in the Prometheus text format. Scrapes read control-plane
/// snapshots only; nothing here touches the I/O path.
/// </summary>
public sealed class MetricsServer(NodeHost node, ILogger logger) : IAsyncDisposable
{
    private const int MaxRequestBytes = 8192;
    private readonly CancellationTokenSource _stop = new();
    private Socket? _listener;
    private Task _accept = Task.CompletedTask;

    public void Start(IPEndPoint endPoint)
    {
        _listener = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        _listener.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        _listener.Bind(endPoint);
        _listener.Listen(64);
        _accept = AcceptLoopAsync(_listener);
        logger.LogInformation("metrics on http://{Endpoint}/metrics", _listener.LocalEndPoint);
    }

    public string Render()
    {
        var text = new PrometheusText();
        var target = node.Target;
        text.Family("lightbox_fe_ctrl_id_used", "gauge", "Controller IDs in use per subsystem pool (0 = default, N = aux-N) and shard.");
        foreach (var s in target.Subsystems)
            text.Sample("lightbox_fe_ctrl_id_used", target.ControllersInUse(s.PoolId, 0),
                ("pool_id", s.PoolId.ToString(CultureInfo.InvariantCulture)), ("shard", "0"), ("type", "counter"));
        text.Family("duroslight_state", "gauge", "Lifecycle state: 1 for the current state, 0 for the others.");
        foreach (var state in Enum.GetValues<NodeState>())
            text.Sample("duroslight_state", state == node.State ? 1 : 0, ("state", state.ToString().ToLowerInvariant()));
        text.Family("duroslight_connections", "gauge", "Open NVMe/TCP connections (queues).");
        text.Sample("duroslight_connections", node.ConnectionCount);
        text.Family("duroslight_controllers", "gauge", "Live controllers, I/O and discovery.");
        text.Sample("duroslight_controllers", target.ListControllers().Count);
        text.Family("duroslight_volume_size_bytes", "gauge", "Logical size of each volume.");
        foreach (var v in node.Volumes) text.Sample("duroslight_volume_size_bytes", v.SizeBytes, ("volume", v.Id.ToString()));
        text.Family("duroslight_volume_allocated_bytes", "gauge", "Physically allocated bytes of each volume (thin provisioning).");
        foreach (var v in node.Volumes) text.Sample("duroslight_volume_allocated_bytes", v.AllocatedBytes, ("volume", v.Id.ToString()));
        GftlMetrics.Render(text, node);
        return text.ToString();
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _listener?.Dispose();
        await _accept.ConfigureAwait(false);
        _stop.Dispose();
    }

    private async Task AcceptLoopAsync(Socket listener)
    {
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                using var client = await listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
                await ServeAsync(client).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (Exception e) when (e is SocketException or IOException)
            {
                logger.LogDebug("metrics client failed: {Error}", e.Message);
            }
        }
    }

    private async Task ServeAsync(Socket client)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        timeout.CancelAfter(TimeSpan.FromSeconds(5));
        string request = await ReadRequestHeadAsync(client, timeout.Token).ConfigureAwait(false);
        bool isMetrics = request.StartsWith("GET /metrics ", StringComparison.Ordinal) || request.StartsWith("GET /metrics?", StringComparison.Ordinal);
        string body = isMetrics ? Render() : "not found: try /metrics\n";
        string status = isMetrics ? "200 OK" : "404 Not Found";
        string contentType = isMetrics ? PrometheusText.ContentType : "text/plain";
        byte[] payload = Encoding.UTF8.GetBytes(body);
        string head = $"HTTP/1.1 {status}\r\nContent-Type: {contentType}\r\nContent-Length: {payload.Length}\r\nConnection: close\r\n\r\n";
        await client.SendAsync(Encoding.ASCII.GetBytes(head), SocketFlags.None, timeout.Token).ConfigureAwait(false);
        await client.SendAsync(payload, SocketFlags.None, timeout.Token).ConfigureAwait(false);
        client.Shutdown(SocketShutdown.Both);
    }

    private static async Task<string> ReadRequestHeadAsync(Socket client, CancellationToken token)
    {
        var buffer = new byte[MaxRequestBytes];
        int filled = 0;
        while (filled < buffer.Length)
        {
            int n = await client.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None, token).ConfigureAwait(false);
            if (n == 0) break;
            filled += n;
            if (buffer.AsSpan(0, filled).IndexOf("\r\n\r\n"u8) >= 0) break;
        }
        return Encoding.ASCII.GetString(buffer, 0, filled);
    }
}
