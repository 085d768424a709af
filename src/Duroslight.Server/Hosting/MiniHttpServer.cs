using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;

namespace Duroslight.Server.Hosting;

/// <summary>One HTTP/1.1 request: method, path (without the query), query string and body.</summary>
public sealed record HttpRequest(string Method, string Path, string Query, string Body);

/// <summary>One HTTP/1.1 response; every connection closes after it.</summary>
public sealed record HttpResponse(int Status, string ContentType, string Body)
{
    public static HttpResponse Text(int status, string body) => new(status, "text/plain; charset=utf-8", body);
}

/// <summary>
/// A minimal HTTP/1.1 server (one request per connection, Content-Length bodies only) on an already bound
/// listening socket, TCP or Unix. Used by the metrics endpoint and the control API; both are low-rate control
/// traffic, never the I/O path. Clients are served concurrently, each with a time limit.
/// </summary>
public sealed class MiniHttpServer(Socket listener, Func<HttpRequest, Task<HttpResponse>> handler, ILogger logger) : IAsyncDisposable
{
    private const int MaxHeadBytes = 8192, MaxBodyBytes = 1 << 20;
    private static readonly TimeSpan ClientTimeout = TimeSpan.FromSeconds(30);
    private readonly CancellationTokenSource _stop = new();
    private Task _accept = Task.CompletedTask;

    public void Start() => _accept = AcceptLoopAsync();

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        listener.Dispose();
        await _accept.ConfigureAwait(false);
        _stop.Dispose();
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException e)
            {
                logger.LogDebug("http accept failed: {Error}", e.Message);
                continue;
            }
            _ = ServeClientAsync(client);
        }
    }

    private async Task ServeClientAsync(Socket client)
    {
        using var _ = client;
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
            timeout.CancelAfter(ClientTimeout);
            var response = await ReadRequestAsync(client, timeout.Token).ConfigureAwait(false) is { } request
                ? await handler(request).ConfigureAwait(false)
                : HttpResponse.Text(400, "bad request: expected an HTTP/1.1 request with a Content-Length body\n");
            await WriteAsync(client, response, timeout.Token).ConfigureAwait(false);
            client.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException or ObjectDisposedException)
        {
            logger.LogDebug("http client failed: {Error}", e.Message);
        }
    }

    private static async Task<HttpRequest?> ReadRequestAsync(Socket client, CancellationToken token)
    {
        var buffer = new byte[MaxHeadBytes];
        int filled = 0, headEnd = -1;
        while (headEnd < 0 && filled < buffer.Length)
        {
            int n = await client.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None, token).ConfigureAwait(false);
            if (n == 0) return null;
            filled += n;
            headEnd = buffer.AsSpan(0, filled).IndexOf("\r\n\r\n"u8);
        }
        if (headEnd < 0) return null;
        string[] lines = Encoding.ASCII.GetString(buffer, 0, headEnd).Split("\r\n");
        string[] requestLine = lines[0].Split(' ');
        if (requestLine.Length != 3 || !requestLine[2].StartsWith("HTTP/1.", StringComparison.Ordinal)) return null;
        int length = ContentLength(lines);
        if (length is < 0 or > MaxBodyBytes) return null;
        var body = new byte[length];
        int have = Math.Min(length, filled - headEnd - 4);
        buffer.AsSpan(headEnd + 4, have).CopyTo(body);
        while (have < length)
        {
            int n = await client.ReceiveAsync(body.AsMemory(have), SocketFlags.None, token).ConfigureAwait(false);
            if (n == 0) return null;
            have += n;
        }
        string target = requestLine[1];
        int q = target.IndexOf('?', StringComparison.Ordinal);
        return new HttpRequest(requestLine[0], q < 0 ? target : target[..q], q < 0 ? "" : target[(q + 1)..], Encoding.UTF8.GetString(body));
    }

    /// <summary>The Content-Length header's value, 0 without one, -1 when malformed or chunked.</summary>
    private static int ContentLength(string[] lines)
    {
        int length = 0;
        for (int i = 1; i < lines.Length; i++)
        {
            int colon = lines[i].IndexOf(':', StringComparison.Ordinal);
            if (colon < 0) return -1;
            string name = lines[i][..colon].Trim();
            if (name.Equals("Transfer-Encoding", StringComparison.OrdinalIgnoreCase)) return -1;
            if (name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase) && !int.TryParse(lines[i][(colon + 1)..].Trim(), out length)) return -1;
        }
        return length;
    }

    private static async Task WriteAsync(Socket client, HttpResponse response, CancellationToken token)
    {
        byte[] payload = Encoding.UTF8.GetBytes(response.Body);
        string head = $"HTTP/1.1 {response.Status} {Reason(response.Status)}\r\nContent-Type: {response.ContentType}\r\n" +
                      $"Content-Length: {payload.Length}\r\nConnection: close\r\n\r\n";
        await client.SendAsync(Encoding.ASCII.GetBytes(head), SocketFlags.None, token).ConfigureAwait(false);
        await client.SendAsync(payload, SocketFlags.None, token).ConfigureAwait(false);
    }

    private static string Reason(int status) => status switch
    {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Error",
    };
}
