using System.Net;
using System.Net.Sockets;
using Duroslight.Server.Cli;
using Duroslight.Server.Control;
using Duroslight.Server.Hosting;
using Microsoft.Extensions.Logging.Abstractions;

namespace Duroslight.Server.Tests;

/// <summary>A whole node in this process on free loopback ports, with in-memory volumes.</summary>
public sealed class NodeFixture : IAsyncDisposable
{
    public NodeFixture(Func<ServeSettings, ServeSettings>? configure = null)
    {
        for (int attempt = 1; ; attempt++)
        {
            var settings = new ServeSettings
            {
                Listen = new IPEndPoint(IPAddress.Loopback, FreePort()),
                Discovery = new IPEndPoint(IPAddress.Loopback, FreePort()),
                Metrics = new IPEndPoint(IPAddress.Loopback, FreePort()),
                InMemory = true,
                DefaultVolumeBytes = 64L << 20,
                DrainTimeout = TimeSpan.FromSeconds(5),
                ControlSocket = Path.Combine(TempDir, "control.sock"),
            };
            Settings = configure?.Invoke(settings) ?? settings;
            Node = new NodeHost(Settings, NullLoggerFactory.Instance);
            try
            {
                Node.Start();
                return;
            }
            catch (Exception e) when (attempt < 3 && e.ToString().Contains("already in use", StringComparison.OrdinalIgnoreCase))
            {
                // Another process took a picked port between the check and the bind: pick again.
                Node.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
        }
    }

    /// <summary>A private directory for this node (control socket, Prometheus files); removed on dispose.</summary>
    public string TempDir { get; } = Directory.CreateTempSubdirectory("dsl-node-").FullName;

    public ServeSettings Settings { get; private set; } = null!;
    public NodeHost Node { get; private set; } = null!;
    public int IoPort => Settings.Listen.Port;
    public int DiscoveryPort => Settings.Discovery.Port;

    public async Task<string> ScrapeAsync()
    {
        using var http = new HttpClient();
        return await http.GetStringAsync($"http://{Settings.Metrics}/metrics");
    }

    /// <summary>A control API client on the node's socket.</summary>
    public ControlClient Control() => new(Settings.ControlSocketPath);

    public async ValueTask DisposeAsync()
    {
        await Node.DisposeAsync();
        try
        {
            Directory.Delete(TempDir, recursive: true);
        }
        catch (IOException)
        {
            // A straggling file (e.g. Prometheus still closing) must not fail the test.
        }
    }

    /// <summary>
    /// A free loopback port below the kernel's ephemeral range (32768 and up on Linux), so the client sockets that
    /// every test and process on the machine opens cannot take it between this check and the server's bind; chosen
    /// at random so parallel test processes rarely try the same one (the starts retry when one does).
    /// </summary>
    public static int FreePort()
    {
        while (true)
        {
            int port = Random.Shared.Next(20000, 32000);
            using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                s.Bind(new IPEndPoint(IPAddress.Loopback, port));
                return port;
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse)
            {
                // Taken: try another.
            }
        }
    }
}
