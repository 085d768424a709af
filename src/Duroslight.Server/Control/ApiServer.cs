using System.Net;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Duroslight.Server.Cli;
using Duroslight.Server.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;

namespace Duroslight.Server.Control;

/// <summary>
/// The control API for remote callers (orchestrators): the same routes as the Unix socket (<see cref="ControlApi"/>)
/// over HTTPS on a TCP port, each request authenticated by a bearer token before routing runs its handler, so a
/// request without a valid token gets 401 and changes nothing. TLS 1.2/1.3 only, with the configured certificate;
/// small request limits, as the caller is on the network.
/// </summary>
public sealed class ApiServer(NodeHost node, ILoggerFactory loggers) : IAsyncDisposable
{
    /// <summary>Bodies are a few hundred bytes of JSON; anything near this is not a control request.</summary>
    public const long MaxBodyBytes = 64 * 1024;

    private readonly ILogger _logger = loggers.CreateLogger("duroslight");
    private WebApplication? _app;

    public void Start(ApiSettings settings)
    {
        if (settings.Listen is not { } endPoint) return;
        var tokens = ApiTokens.Load(settings.Tokens ?? throw new UsageException("api.tokens is required with api.listen"));
        var certificate = LoadCertificate(settings.Certificate ?? throw new UsageException("api.certificate is required with api.listen"));
        var api = new ControlApi(node, _logger);
        var app = HttpSurface.Create(loggers, o => Listen(o, endPoint, certificate), a =>
        {
            a.Use((context, next) => Authenticate(tokens, context, next));
            api.Map(a);
        });
        _app = app;
        try
        {
            app.StartAsync().GetAwaiter().GetResult();
        }
        catch (IOException e)
        {
            throw new IOException($"api endpoint {endPoint}: {e.InnerException?.Message ?? e.Message} (api.listen / --api-listen)", e);
        }
        _logger.LogInformation("control API on https://{Endpoint} ({Tokens} tokens)", endPoint, tokens.Count);
    }

    public async ValueTask DisposeAsync()
    {
        if (_app is null) return;
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }

    private static void Listen(KestrelServerOptions o, IPEndPoint endPoint, X509Certificate2 certificate)
    {
        o.Limits.MaxRequestBodySize = MaxBodyBytes;
        o.Limits.MaxRequestHeadersTotalSize = 16 * 1024;
        o.Limits.MaxRequestHeaderCount = 32;
        o.Limits.MaxRequestLineSize = 4 * 1024;
        o.Limits.MaxConcurrentConnections = 256;
        o.Limits.KeepAliveTimeout = TimeSpan.FromSeconds(60);
        o.Listen(endPoint, l => l.UseHttps(h =>
        {
            h.ServerCertificate = certificate;
            h.SslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13;
        }));
    }

    /// <summary>401 with the one refusal shape before anything else runs; the body is never read.</summary>
    private async Task Authenticate(ApiTokens tokens, HttpContext context, RequestDelegate next)
    {
        if (tokens.IsAuthorized(context.Request.Headers.Authorization))
        {
            await next(context).ConfigureAwait(false);
            return;
        }
        _logger.LogWarning("api: unauthenticated {Method} {Path} from {Peer} refused", context.Request.Method, context.Request.Path,
            context.Connection.RemoteIpAddress);
        context.Response.StatusCode = 401;
        context.Response.Headers.WWWAuthenticate = "Bearer";
        await context.Response.WriteAsJsonAsync(new ErrorResponse(401, "a valid bearer token is required (Authorization: Bearer TOKEN)"),
            ControlJson.Default.ErrorResponse).ConfigureAwait(false);
    }

    /// <summary>A PKCS#12 file (.pfx/.p12, no password) or PEM with the certificate and its private key in one file.</summary>
    private static X509Certificate2 LoadCertificate(string path)
    {
        if (!File.Exists(path)) throw new UsageException($"api certificate '{path}' does not exist");
        try
        {
            return Path.GetExtension(path).ToLowerInvariant() is ".pfx" or ".p12"
                ? X509CertificateLoader.LoadPkcs12FromFile(path, null)
                : X509Certificate2.CreateFromPemFile(path);
        }
        catch (System.Security.Cryptography.CryptographicException e)
        {
            throw new UsageException($"api certificate '{path}' cannot be loaded (PEM with certificate and key, or .pfx/.p12): {e.Message}");
        }
    }
}
