using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json.Nodes;
using Duroslight.Server.Cli;
using Duroslight.Server.Control;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace Duroslight.Server.Tests;

/// <summary>
/// The control API as an orchestrator reaches it: HTTPS with a bearer token on a TCP port (the real process), idempotent
/// creates, per-volume host lists that persist, and docs/openapi.json held to the routes the node really serves.
/// </summary>
public sealed class RemoteApiTests : IDisposable
{
    private const string HostA = "nqn.2014-08.org.nvmexpress:uuid:aaaaaaaa-0000-0000-0000-00000000000a";
    private const string HostB = "nqn.2014-08.org.nvmexpress:uuid:bbbbbbbb-0000-0000-0000-00000000000b";
    private const string Token = "s3cret-token-for-tests-0123456789";
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);

    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("dsl-api-");
    private readonly X509Certificate2 _certificate;

    public RemoteApiTests()
    {
        // A self-signed server certificate for 127.0.0.1, as an operator's own CA would issue one.
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=duroslight-test", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(san.Build());
        _certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        File.WriteAllBytes(CertificatePath, _certificate.Export(X509ContentType.Pfx));
        WriteTokens(TokensPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
    }

    private string CertificatePath => Path.Combine(_dir.FullName, "api.pfx");
    private string TokensPath => Path.Combine(_dir.FullName, "tokens");
    private string DataDir => Path.Combine(_dir.FullName, "data");
    private string Socket => Path.Combine(_dir.FullName, "ctl.sock");

    public void Dispose()
    {
        _certificate.Dispose();
        _dir.Delete(recursive: true);
    }

    [Fact]
    public async Task Https_needs_a_valid_token_creates_are_idempotent_and_host_lists_survive_a_restart()
    {
        int port = NodeFixture.FreePort();
        string[] args = ["--store", "sparse", "--data-dir", DataDir, "--volume-size", "16M", "--control-socket", Socket,
            "--api-listen", $"127.0.0.1:{port}", "--api-certificate", CertificatePath, "--api-tokens", TokensPath];
        using (var server = await ServerProcess.StartAsync(args))
        {
            using var http = Client(port, Token);
            using var anonymous = Client(port, null);
            using var wrong = Client(port, Token[..^1] + "X");

            // No token, a wrong one: 401 and nothing changes (checked with a good token after).
            foreach (var client in new[] { anonymous, wrong })
            {
                var refused = await client.PostAsync("v1/volumes", Json(new JsonObject { ["name"] = "x", ["size"] = "8M" }));
                Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
                Assert.Equal("Bearer", refused.Headers.WwwAuthenticate.Single().Scheme);
                Assert.Equal(HttpStatusCode.Unauthorized, (await client.GetAsync("v1/state")).StatusCode);
                Assert.Equal(HttpStatusCode.Unauthorized, (await client.PostAsync("v1/shutdown", null)).StatusCode);
            }
            var (status, body) = await Send(http, HttpMethod.Get, "v1/volumes");
            Assert.Equal(200, status);
            Assert.Equal(["default"], body!.AsArray().Select(v => v!["name"]!.GetValue<string>()));

            // Create, retried create (same answer), conflicting create.
            var create = new JsonObject { ["name"] = "vm-1", ["size"] = "8M", ["hosts"] = new JsonArray(HostA) };
            (status, var first) = await Send(http, HttpMethod.Post, "v1/volumes", create);
            Assert.Equal(200, status);
            Assert.False(first!["allow_any_host"]!.GetValue<bool>());
            (status, var again) = await Send(http, HttpMethod.Post, "v1/volumes", create.DeepClone().AsObject());
            Assert.Equal(200, status);
            Assert.Equal(first["id"]!.GetValue<string>(), again!["id"]!.GetValue<string>());
            Assert.Equal(first["nsid"]!.GetValue<uint>(), again["nsid"]!.GetValue<uint>());
            (status, var conflict) = await Send(http, HttpMethod.Post, "v1/volumes", new JsonObject { ["name"] = "vm-1", ["size"] = "16M", ["hosts"] = new JsonArray(HostA) });
            Assert.Equal(409, status);
            Assert.Contains("exists with size 8388608", conflict!["error"]!.GetValue<string>());

            // Attach B, detach A; an open volume refuses attach; a bad NQN is 400.
            Assert.Equal(200, (await Send(http, HttpMethod.Post, "v1/volumes/vm-1/attach", new JsonObject { ["host"] = HostB })).Status);
            (status, var detached) = await Send(http, HttpMethod.Post, "v1/volumes/vm-1/detach", new JsonObject { ["host"] = HostA });
            Assert.Equal(200, status);
            Assert.Equal([HostB], detached!["hosts"]!.AsArray().Select(h => h!.GetValue<string>()));
            Assert.Equal(409, (await Send(http, HttpMethod.Post, "v1/volumes/default/attach", new JsonObject { ["host"] = HostB })).Status);
            Assert.Equal(400, (await Send(http, HttpMethod.Post, "v1/volumes/vm-1/attach", new JsonObject { ["host"] = "not an nqn" })).Status);

            // Request limits: a body over 64 KiB is refused before it is read whole. The client asks first (Expect:
            // 100-continue), as careful clients do: sending the body regardless races the server's close after its 413
            // (a broken pipe on the client's write instead of the status, seen as a rare failure of this test).
            var huge = new HttpRequestMessage(HttpMethod.Post, "v1/volumes")
            {
                Content = new StringContent("{\"name\":\"" + new string('a', 100_000) + "\",\"size\":\"8M\"}", Encoding.UTF8, "application/json"),
            };
            huge.Headers.ExpectContinue = true;
            Assert.Equal(HttpStatusCode.RequestEntityTooLarge, (await http.SendAsync(huge)).StatusCode);

            // ctl on the Unix socket: create --hosts, attach, detach.
            var (code, stdout, stderr) = await Cli("ctl", "--socket", Socket, "volumes", "create", "vm-2", "8M", "--hosts", $"{HostA},{HostB}");
            Assert.True(code == 0, stderr);
            Assert.Contains($"hosts=[\"{HostA}\",\"{HostB}\"]", stdout);
            (code, _, stderr) = await Cli("ctl", "--socket", Socket, "volumes", "detach", "vm-2", HostA);
            Assert.True(code == 0, stderr);
            (code, stdout, stderr) = await Cli("ctl", "--socket", Socket, "volumes", "attach", "default", HostA);
            Assert.Equal(1, code);
            Assert.Contains("error 409", stderr);
            Assert.Equal(0, await server.StopAsync(15));
        }

        using (await ServerProcess.StartAsync(args))
        {
            using var http = Client(port, Token);
            var (status, list) = await Send(http, HttpMethod.Get, "v1/volumes");
            Assert.Equal(200, status);
            var hosts = list!.AsArray().ToDictionary(v => v!["name"]!.GetValue<string>(), v => v!["hosts"]!.AsArray().Select(h => h!.GetValue<string>()).ToArray());
            Assert.Equal([HostB], hosts["vm-1"]);
            Assert.Equal([HostB], hosts["vm-2"]);
            Assert.Empty(hosts["default"]);
        }
    }

    [Theory]
    [InlineData(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead, "chmod 600")]
    [InlineData(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead, "chmod 600")]
    public async Task A_token_file_others_can_read_stops_the_start(UnixFileMode mode, string hint)
    {
        WriteTokens(TokensPath, mode);
        var (code, output) = await ServerProcess.RunToExitAsync("--memory", "--data-dir", DataDir, "--control-socket", Socket,
            "--api-listen", $"127.0.0.1:{NodeFixture.FreePort()}", "--api-certificate", CertificatePath, "--api-tokens", TokensPath);
        Assert.Equal(1, code);
        Assert.Contains("accessible to group or others", output);
        Assert.Contains(hint, output);
    }

    [Fact]
    public async Task Api_listen_without_certificate_or_tokens_is_a_usage_error()
    {
        var (code, output) = await ServerProcess.RunToExitAsync("--memory", "--data-dir", DataDir, "--api-listen", "127.0.0.1:1");
        Assert.Equal(2, code);
        Assert.Contains("--api-listen needs --api-certificate and --api-tokens", output);
    }

    [Fact]
    public void The_config_file_takes_api_as_one_mapping_and_flags_override_it()
    {
        string path = Path.Combine(_dir.FullName, "c.yaml");
        File.WriteAllText(path, "api:\n  listen: 0.0.0.0:8443\n  certificate: /etc/d/api.pem\n  tokens: /etc/d/tokens\n");
        var s = CommandLine.ParseServe(["--config", path, "--api-tokens", "/other"]);
        Assert.Equal(new ApiSettings(IPEndPoint.Parse("0.0.0.0:8443"), "/etc/d/api.pem", "/other"), s.Api);
        Assert.Null(CommandLine.ParseServe([]).Api.Listen); // off by default
        File.WriteAllText(path, "api:\n  listen: 0.0.0.0:8443\n");
        var e = Assert.Throws<UsageException>(() => CommandLine.ParseServe(["--config", path]));
        Assert.Contains(":2: key 'api': api.listen needs api.certificate and api.tokens", e.Message);
        File.WriteAllText(path, "api:\n  port: 1\n");
        Assert.Contains("key 'api.port': unknown key", Assert.Throws<UsageException>(() => CommandLine.ParseServe(["--config", path])).Message);
    }

    [Fact]
    public void Tokens_match_whole_and_only_as_bearer()
    {
        var tokens = ApiTokens.Load(TokensPath);
        Assert.True(tokens.IsAuthorized("Bearer " + Token));
        Assert.True(tokens.IsAuthorized("bearer " + Token + " "));
        Assert.False(tokens.IsAuthorized(Token));
        Assert.False(tokens.IsAuthorized("Bearer " + Token[..^1]));
        Assert.False(tokens.IsAuthorized("Bearer " + Token + "x"));
        Assert.False(tokens.IsAuthorized("Basic " + Token));
        Assert.False(tokens.IsAuthorized(null));
        File.WriteAllText(TokensPath, "short\n");
        Assert.Throws<UsageException>(() => ApiTokens.Load(TokensPath));
    }

    /// <summary>Every route the node maps is in docs/openapi.json with its method, and the document has no other.</summary>
    [Fact]
    public async Task The_openapi_document_lists_exactly_the_routes_of_the_api()
    {
        await using var node = new NodeFixture();
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore(); // never started: the routes are read, not served
        builder.Services.AddRoutingCore();
        await using var app = builder.Build();
        new ControlApi(node.Node, NullLogger.Instance).Map(app);
        var served = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var source in ((IEndpointRouteBuilder)app).DataSources)
            foreach (var endpoint in source.Endpoints.OfType<RouteEndpoint>())
                foreach (string method in endpoint.Metadata.GetMetadata<HttpMethodMetadata>()!.HttpMethods)
                    served.Add($"{method} {endpoint.RoutePattern.RawText}");

        var document = JsonNode.Parse(File.ReadAllText(Path.Combine(RepoRoot(), "docs", "openapi.json")))!;
        var documented = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var (path, operations) in document["paths"]!.AsObject())
            foreach (var (method, _) in operations!.AsObject())
                documented.Add($"{method.ToUpperInvariant()} {path}");

        Assert.True(served.Count >= 20, string.Join('\n', served));
        Assert.Equal(served, documented);
    }

    /// <summary>
    /// Every schema of docs/openapi.json that names a body (X for XResponse or XRequest) lists exactly the JSON
    /// properties the node writes or reads for it, so a field added to a record cannot go undocumented.
    /// </summary>
    [Fact]
    public void The_openapi_schemas_list_exactly_the_fields_of_the_bodies()
    {
        var document = JsonNode.Parse(File.ReadAllText(Path.Combine(RepoRoot(), "docs", "openapi.json")))!;
        var assembly = typeof(ControlJson).Assembly;
        int checkedSchemas = 0;
        foreach (var (name, schema) in document["components"]!["schemas"]!.AsObject())
        {
            var type = assembly.GetType($"Duroslight.Server.Control.{name}Response") ?? assembly.GetType($"Duroslight.Server.Control.{name}");
            Assert.True(type is not null, $"schema {name} names no body record");
            var fields = new SortedSet<string>(ControlJson.Default.GetTypeInfo(type!)!.Properties.Select(p => p.Name), StringComparer.Ordinal);
            var documented = new SortedSet<string>(schema!["properties"]!.AsObject().Select(p => p.Key), StringComparer.Ordinal);
            Assert.True(fields.SetEquals(documented), $"schema {name}: documented [{string.Join(", ", documented)}], body [{string.Join(", ", fields)}]");
            checkedSchemas++;
        }
        Assert.True(checkedSchemas >= 19, $"{checkedSchemas} schemas");
    }

    private void WriteTokens(string path, UnixFileMode mode)
    {
        File.WriteAllText(path, $"# orchestrator\n{Token}\nanother-token-0123456789abcdef\n");
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, mode);
    }

    /// <summary>An HTTPS client that trusts exactly the node's certificate (pinned), with or without a token.</summary>
    private HttpClient Client(int port, string? token)
    {
        var handler = new SocketsHttpHandler();
        handler.SslOptions.RemoteCertificateValidationCallback = (_, cert, _, _) => cert is not null && cert.GetCertHashString() == _certificate.GetCertHashString();
        var client = new HttpClient(handler) { BaseAddress = new Uri($"https://127.0.0.1:{port}/"), Timeout = Limit };
        if (token is not null) client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return client;
    }

    private static StringContent Json(JsonObject body) => new(body.ToJsonString(), Encoding.UTF8, "application/json");

    private static async Task<(int Status, JsonNode? Body)> Send(HttpClient http, HttpMethod method, string path, JsonObject? body = null)
    {
        using var request = new HttpRequestMessage(method, path) { Content = body is null ? null : Json(body) };
        using var response = await http.SendAsync(request);
        string text = await response.Content.ReadAsStringAsync();
        return ((int)response.StatusCode, text.Length == 0 ? null : JsonNode.Parse(text));
    }

    private static Task<(int Code, string Stdout, string Stderr)> Cli(params string[] args) => DuroslightCli.RunAsync(Limit, args);

    private static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Duroslight.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("no Duroslight.sln above the test binaries");
    }
}
